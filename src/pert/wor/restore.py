"""Restore the word order of sentences with a fine-tuned WOR model: ``restore(texts, model_dir)``.

    from pert.wor.restore import restore
    restore(["我们今天北京去开会。"], "runs/wor/seed-1/best")   # -> ["我们今天去北京开会。"]

The model scores, for every position, where in the input the token that belongs there stands; an
assignment solver turns the scores into a permutation of the input tokens, and the text is rebuilt from
the input's own characters (``pert.wor.decode.render``), so the output holds exactly the input's
characters, reordered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pert.wor.decode import decode_batch, moved_spans, render

log = logging.getLogger(__name__)


@dataclass
class Restoration:
    """A restored sentence, its tokens in output order, and the character spans (in ``text``) that moved."""

    text: str
    tokens: list[str]
    moved: list[tuple[int, int]] = field(default_factory=list)


class Restorer:
    """A WOR model folder loaded once for many calls."""

    def __init__(self, model_dir: str | Path, device: str | None = None, batch_size: int = 32,
                 max_seq_len: int | None = None):
        from pert.convert.hf import load_pretraining_model
        from pert.text.tokenizer import load_tokenizer

        self.model_dir = Path(model_dir)
        self.tokenizer = load_tokenizer(self.model_dir)
        self.model = load_pretraining_model(self.model_dir, "perlm")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        limit = self.model.config.max_position_embeddings
        self.max_seq_len = min(max_seq_len or limit, limit)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size

    @torch.no_grad()
    def restore(self, texts: Sequence[str]) -> list[Restoration]:
        """Restorations of ``texts``, in order. Tokens past ``max_seq_len - 2`` are kept where they are."""
        tok = self.tokenizer
        out: list[Restoration] = []
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start:start + self.batch_size])
            for t in chunk:
                if not isinstance(t, str):
                    raise ValueError(f"restore: expected strings, got {type(t).__name__}")
            enc = tok(chunk, add_special_tokens=False, return_offsets_mapping=True)
            keep = self.max_seq_len - 2
            ids = [x[:keep] for x in enc["input_ids"]]
            if any(len(x) > keep for x in enc["input_ids"]):
                log.warning("texts over %d tokens: only their first %d tokens are restored", keep, keep)
            width = max(len(x) for x in ids) + 2
            input_ids = torch.full((len(ids), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for b, x in enumerate(ids):
                input_ids[b, :len(x) + 2] = torch.tensor([tok.cls_token_id, *x, tok.sep_token_id])
                mask[b, :len(x) + 2] = 1
            logits = self.model.position_logits(input_ids.to(self.device), mask.to(self.device))
            perms = decode_batch(logits, [len(x) for x in ids])
            for b, text in enumerate(chunk):
                tokens = tok.convert_ids_to_tokens(enc["input_ids"][b])
                offsets = [tuple(o) for o in enc["offset_mapping"][b]]
                perm = [int(k) for k in perms[b]] + list(range(len(ids[b]), len(tokens)))
                restored, spans = render(text, tokens, offsets, perm)
                out.append(Restoration(restored, [tokens[k] for k in perm], moved_spans(perm, spans)))
        return out


def restore(texts: Sequence[str], model_dir: str | Path, return_moves: bool = False,
            **kwargs) -> list[str] | list[Restoration]:
    """Restored sentences (or ``Restoration`` objects with the moved spans when ``return_moves``)."""
    results = Restorer(model_dir, **kwargs).restore(texts)
    return results if return_moves else [r.text for r in results]
