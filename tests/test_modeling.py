"""The PerLM head and PertForPreTraining: exact loss, masking, learning, and the Hugging Face folder format."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertModel

from pert.convert.hf import load_pretraining_model, save_model_folder
from pert.modeling import PerlmHead, PertForPreTraining, preset_config
from pert.objectives import ObjectiveConfig, perlm_corrupt
from pert.presets import PRESETS


def tiny_config(**kw) -> BertConfig:
    return BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=16, **kw)


def test_head_loss_equals_hand_computed_value():
    config = BertConfig(hidden_size=2, max_position_embeddings=4, layer_norm_eps=0.0, hidden_act="relu")
    head = PerlmHead(config)
    with torch.no_grad():
        head.transform.dense.weight.copy_(torch.eye(2))
        head.transform.dense.bias.zero_()
        head.transform.LayerNorm.weight.fill_(1.0)
        head.transform.LayerNorm.bias.zero_()
        head.position_bias.copy_(torch.tensor([0.0, 0.5, 0.0, 0.0]))
    hidden = torch.tensor([[[3.0, 1.0], [1.0, 2.0], [2.0, 0.0]]])
    logits = head(hidden, torch.tensor([[0]]), torch.tensor([[1, 1, 1]]))
    # query = LayerNorm(relu([3, 1])) = [1, -1]; keys . query = [2, -1, 2]; x 1/sqrt(2); + bias [0, .5, 0]
    s = 2 ** -0.5
    expected = torch.tensor([2 * s, -s + 0.5, 2 * s])
    assert torch.allclose(logits[0, 0], expected, atol=1e-6)
    loss = torch.nn.functional.cross_entropy(logits[0], torch.tensor([1]))
    hand = -((-s + 0.5) - math.log(2 * math.exp(2 * s) + math.exp(-s + 0.5)))
    assert loss.item() == pytest.approx(hand, abs=1e-6)


def test_padding_positions_get_zero_probability():
    torch.manual_seed(0)
    model = PertForPreTraining(tiny_config()).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    out = model(ids, torch.tensor([[1, 2]]), torch.tensor([[2, 1]]), mask)
    probs = out.logits.softmax(-1)
    assert torch.all(probs[..., 5:] == 0)
    assert torch.allclose(probs.sum(-1), torch.ones(1, 2))
    assert torch.isfinite(out.loss)


def test_a_tiny_model_overfits_one_batch():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    B, L = 8, 16
    ids = rng.integers(5, 60, size=(B, L))
    ids[:, 0], ids[:, -1] = 2, 3
    special = np.isin(ids, [0, 2, 3])
    ws = ~special
    batch = perlm_corrupt(ids, ws, special, rng, ObjectiveConfig(select_ratio=0.3, scope="global"), cap=6)
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    kinds = tensors.pop("kinds")
    model = PertForPreTraining(tiny_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        out = model(**tensors)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    shuffled = kinds == 1
    assert out.correct[shuffled].float().mean().item() > 0.97
    assert out.loss.item() < 0.1


def test_export_loads_in_plain_transformers_and_reload_restores_the_head(tmp_path, minilm_dir):
    torch.manual_seed(0)
    config = tiny_config()
    config.vocab_size = 30522  # the MiniLM tokenizer's
    config.pert_mlm_head = True
    model = PertForPreTraining(config).eval()
    with torch.no_grad():
        model.perlm_head.position_bias.normal_()  # make the head distinguishable from a fresh one
    from pert.text.tokenizer import load_tokenizer

    folder = save_model_folder(model, load_tokenizer(minilm_dir), tmp_path / "model")
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    ours = model.bert(ids).last_hidden_state
    bert = BertModel.from_pretrained(folder).eval()
    assert torch.equal(bert(ids).last_hidden_state, ours)
    mlm = BertForMaskedLM.from_pretrained(folder).eval()
    assert torch.equal(mlm.cls.predictions.transform.dense.weight, model.cls.predictions.transform.dense.weight)
    again = load_pretraining_model(folder).eval()
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


def test_a_plain_bert_folder_initialises_pretraining_with_a_random_head(minilm_dir, caplog):
    model = load_pretraining_model(minilm_dir)
    assert "no PerLM head" in caplog.text
    plain = BertModel.from_pretrained(minilm_dir).eval()
    ids = torch.tensor([[101, 7592, 2088, 102]])
    assert torch.equal(model.eval().bert(ids).last_hidden_state, plain(ids).last_hidden_state)


def test_presets_have_the_published_shapes():
    base = preset_config("base", 21128)
    assert (base.num_hidden_layers, base.hidden_size, base.num_attention_heads, base.intermediate_size) == \
        (12, 768, 12, 3072)
    large = preset_config("large", 21128)
    assert (large.num_hidden_layers, large.hidden_size, large.num_attention_heads, large.intermediate_size) == \
        (24, 1024, 16, 4096)
    # every preset keeps BERT's 4 x hidden feed-forward layer except the demo's mini (2 x: docs/perlm.md)
    assert {name: preset_config(name, 100).intermediate_size / preset_config(name, 100).hidden_size
            for name in PRESETS} == {**{name: 4 for name in PRESETS}, "mini": 2}
    n = sum(p.numel() for p in BertModel(base).parameters())
    assert 100e6 < n < 110e6  # BERT-base with the Chinese vocabulary: about 102M
