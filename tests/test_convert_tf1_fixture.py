"""`pert convert tf1` on a committed TF1 checkpoint in HFL's release layout (tests/data/tf1, written once by
TensorFlow with make_fixture.py beside it): no TensorFlow needed. Expected values are what TensorFlow itself read
back from the checkpoint when it wrote it (expected.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from pert.cli import main

FIXTURE = Path(__file__).parent / "data" / "tf1"
RELEASE = FIXTURE / "chinese_pert_tiny"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text(encoding="utf-8"))
SLOTS = ("adam_m", "adam_v")


def hf_key(tf_name: str) -> tuple[str, bool]:
    """(Hugging Face parameter name, transposed) of a Google BERT variable, written from BERT's naming."""
    if tf_name == "cls/predictions/output_bias":
        return "cls.predictions.bias", False
    *path, leaf = tf_name.split("/")
    path = [re.sub(r"^layer_(\d+)$", r"layer.\1", p) for p in path]
    if leaf.endswith("_embeddings"):
        return ".".join([*path, leaf, "weight"]), False
    return ".".join([*path, {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}[leaf]]), \
        leaf == "kernel"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("tf1") / "pert-tiny"
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["convert", "tf1", str(RELEASE), "--out", str(out), "--keep-mlm-head"]) == 0
    return out, printed.getvalue()


def test_conversion_report(converted):
    _, printed = converted
    weights = [n for n in EXPECTED["variables"] if not n.endswith(SLOTS) and "seq_relationship" not in n]
    assert f"converted {len(weights)} tensors" in printed
    assert "skipped 5 optimizer/step variables" in printed and f"global_step {EXPECTED['global_step']}" in printed
    assert "not converted (2): cls/seq_relationship/output_bias, cls/seq_relationship/output_weights" in printed


def test_every_tensor_equals_what_tensorflow_wrote(converted):
    from safetensors.torch import load_file

    out, _ = converted
    saved = load_file(out / "model.safetensors")
    keys = set()
    for name, want in EXPECTED["variables"].items():
        if name.endswith(SLOTS) or "seq_relationship" in name:
            continue
        key, transposed = hf_key(name)
        keys.add(key)
        got = saved[key].T if transposed else saved[key]
        assert list(got.shape) == want["shape"], name
        assert got.double().sum().item() == pytest.approx(want["sum"], rel=1e-9, abs=1e-12), name
        assert got.reshape(-1)[:4].tolist() == want["first"], name  # float32 values exactly
    assert set(saved) == keys  # nothing invented (no PerLM head: the checkpoint had none)


def test_folder_loads_in_plain_transformers(converted):
    from transformers import AutoTokenizer, BertForMaskedLM

    out, _ = converted
    model, info = BertForMaskedLM.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"]
    assert set(info["unexpected_keys"]) == {"bert.pooler.dense.weight", "bert.pooler.dense.bias"}  # MLM has none
    assert torch.equal(model.cls.predictions.decoder.weight, model.bert.embeddings.word_embeddings.weight)
    tok = AutoTokenizer.from_pretrained(out)
    texts = (FIXTURE / "sentences.txt").read_text(encoding="utf-8").splitlines()
    batch = tok(texts, return_tensors="pt", padding=True)
    assert tok.unk_token_id not in batch["input_ids"]  # the vocabulary covers the sentences, as written
    assert tok.vocab_size == json.loads((RELEASE / "pert_config.json").read_text())["vocab_size"]
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, tok.vocab_size) and torch.isfinite(logits).all()
