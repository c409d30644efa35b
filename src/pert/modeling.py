"""PERT's pre-training model: ``transformers.BertModel`` plus the PerLM position-pointer head.

The encoder keeps BERT's standard names (``bert.*``), so ``BertModel.from_pretrained`` loads a pert
folder with no missing encoder weights. The PerLM head is saved beside it as ``perlm_head.*``; the
optional MLM head keeps BERT's ``cls.predictions.*`` names so ``BertForMaskedLM`` loads it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertForMaskedLM, BertModel, BertPreTrainedModel
from transformers.models.bert.modeling_bert import BertOnlyMLMHead, BertPredictionHeadTransform

from pert.presets import PRESETS

log = logging.getLogger(__name__)

IGNORE = -100


def preset_config(name: str, vocab_size: int, max_position_embeddings: int = 512) -> BertConfig:
    """A BERT config of one of the presets for a vocabulary."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(PRESETS)}")
    layers, hidden, heads, intermediate = PRESETS[name]
    return BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, intermediate_size=intermediate,
                      max_position_embeddings=max_position_embeddings)


class PerlmHead(nn.Module):
    """Scores every position of the sequence for each selected position.

    Query = BERT's MLM transform (dense -> GELU -> LayerNorm) of the selected hidden state; key = the
    final hidden states of the permuted input; plus a learned bias per position. The dot product is
    scaled by 1/sqrt(hidden) as in attention: two LayerNorm'd vectors would otherwise give logits with a
    standard deviation of sqrt(hidden) and a saturated softmax at initialisation (the transform's
    LayerNorm gain can absorb the factor, so the head is exactly as expressive).
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.position_bias = nn.Parameter(torch.zeros(config.max_position_embeddings))
        self.scale = config.hidden_size ** -0.5

    def forward(self, hidden: torch.Tensor, positions: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (B, L, H), positions (B, P) -> logits (B, P, L); padding positions get -inf."""
        index = positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
        query = self.transform(torch.gather(hidden, 1, index))
        logits = torch.bmm(query, hidden.transpose(1, 2)) * self.scale + self.position_bias[: hidden.size(1)]
        if attention_mask is not None:
            logits = logits.masked_fill(~attention_mask.bool().unsqueeze(1), float("-inf"))
        return logits


@dataclass
class PretrainOutput:
    loss: torch.Tensor
    logits: torch.Tensor  # (B, P, L) for PerLM, (B, P, V) for MLM
    correct: torch.Tensor  # (B, P) bool: prediction equals label


class PertForPreTraining(BertPreTrainedModel):
    """BERT encoder with the PerLM head and, when ``config.pert_mlm_head`` is true, an MLM head."""

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=True)
        self.perlm_head = PerlmHead(config)
        if getattr(config, "pert_mlm_head", False):
            self.cls = BertOnlyMLMHead(config)
            # BERT's ties (decoder = word embeddings, decoder bias = head bias); only a model with that head has them
            self._tied_weights_keys = dict(BertForMaskedLM._tied_weights_keys)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, PerlmHead):
            with torch.no_grad():
                module.position_bias.zero_()

    def get_output_embeddings(self):
        return self.cls.predictions.decoder if hasattr(self, "cls") else None

    def set_output_embeddings(self, new_embeddings):
        self.cls.predictions.decoder = new_embeddings

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, objective: str = "perlm") -> PretrainOutput:
        """Loss over selected ``positions`` (B, P; -1 pads). ``labels`` (B, P; -100 pads) hold the
        source position of each selected token (PerLM) or its original token id (MLM)."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if objective == "perlm":
            logits = self.perlm_head(hidden, positions, attention_mask)
        elif objective == "mlm":
            index = positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
            logits = self.cls(torch.gather(hidden, 1, index))
        else:
            raise ValueError(f"unknown objective {objective!r}")
        if labels is None:
            labels = torch.full_like(positions, IGNORE)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
        correct = (logits.argmax(-1) == labels) & (labels != IGNORE)
        return PretrainOutput(loss=loss, logits=logits, correct=correct)

    def position_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pointer scores (B, L, L) for every position: where does the token that belongs here stand?"""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        positions = torch.arange(input_ids.size(1), device=input_ids.device).expand_as(input_ids)
        return self.perlm_head(hidden, positions, attention_mask)

