"""Hugging Face folders in and out: real MiniLM weights through pert and back into plain transformers."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoTokenizer,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
)

from pert.cli import main
from pert.convert.hf import load_pretraining_model, save_model_folder
from pert.convert.info import model_info

EN_TEXT = Path("en/wikitext-2/valid.txt")
MINILM_PARAMS = 22_713_216  # BertModel of all-MiniLM-L6-v2 with its pooler (its model card: 22.7M)


def english(shared_data: Path, n: int = 4) -> list[str]:
    out = []
    with open(shared_data / EN_TEXT, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if len(line) > 40 and not line.startswith("="):
                out.append(line[:200])
                if len(out) == n:
                    return out
    return out


def hidden(model_dir: Path, batch) -> torch.Tensor:
    with torch.no_grad():
        return BertModel.from_pretrained(model_dir).eval()(**batch).last_hidden_state


def test_minilm_through_pert_is_unchanged(minilm_dir, shared_data, tmp_path, capsys):
    """Real weights: init from the MiniLM folder, one PerLM step at lr 0, export; transformers sees the
    original model."""
    from pert.objectives.config import ObjectiveConfig
    from pert.objectives.perlm import perlm_corrupt
    from pert.text import load_tokenizer

    tok = load_tokenizer(minilm_dir)
    assert tok.tokenize("Hello World") == ["hello", "world"]  # do_lower_case from tokenizer_config.json
    texts = english(shared_data)
    batch = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=64,
                return_special_tokens_mask=True)
    special = batch.pop("special_tokens_mask").numpy().astype(bool)
    ids = batch["input_ids"].numpy()
    starts = np.array([[not t.startswith("##") for t in tok.convert_ids_to_tokens(row)] for row in ids])
    corrupt = perlm_corrupt(ids, starts, special, np.random.default_rng(0), ObjectiveConfig())

    model = load_pretraining_model(minilm_dir, "perlm")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.01)
    out = model(torch.from_numpy(corrupt["input_ids"]), torch.from_numpy(corrupt["positions"]),
                torch.from_numpy(corrupt["labels"]), batch["attention_mask"])
    out.loss.backward()
    assert model.perlm_head.transform.dense.weight.grad.abs().sum() > 0
    optimizer.step()
    folder = save_model_folder(model, tok, tmp_path / "minilm-pert",
                               {"objective": "perlm", "steps": 1, "data": [str(shared_data / EN_TEXT)],
                                "eval": {"acc_shuffled": 0.25, "acc_kept": 0.5}})

    plain = {k: v for k, v in batch.items()}
    torch.testing.assert_close(hidden(folder, plain), hidden(minilm_dir, plain), rtol=0, atol=0)
    auto = AutoTokenizer.from_pretrained(folder)
    assert auto.tokenize("Hello World") == ["hello", "world"]
    again = auto(texts, return_tensors="pt", padding=True, truncation=True, max_length=64)
    assert torch.equal(again["input_ids"], batch["input_ids"])
    assert (folder / "vocab.txt").read_text() == (minilm_dir / "vocab.txt").read_text()

    card = (folder / "README.md").read_text()
    assert "pre-trained with PERT's permuted language model (PerLM)" in card
    assert "- steps: 1" in card and "- data: valid.txt" in card and "| eval | acc_shuffled | 0.2500 |" in card
    assert "language: en" in card and "30,522 WordPiece tokens, uncased" in card
    assert str(shared_data) not in card  # no local paths in a published card

    assert main(["info", str(folder)]) == 0
    text = capsys.readouterr().out
    head_params = sum(p.numel() for p in model.perlm_head.parameters())
    assert f"parameters    22.9M ({MINILM_PARAMS + head_params:,}; encoder {MINILM_PARAMS:,})" in text
    assert "BERT encoder, 6 layers, hidden 384, 12 attention heads, intermediate 1536, max positions 512" \
        in text
    assert "30,522 WordPiece tokens, uncased (tokenizer_config.json), language en" in text
    assert "heads         PerLM: yes; MLM: no; QA: no; classification: no" in text
    assert "dtype         float32" in text
    assert "trained       objective perlm; steps 1; eval: acc_shuffled 0.25, acc_kept 0.5" in text


def _bin_folder(model, tokenizer_dir: Path, out: Path, architectures: list[str]) -> Path:
    """A folder as old BERT uploads are: config.json, pytorch_model.bin (LayerNorm gamma/beta), vocab.txt."""
    out.mkdir()
    model.config.architectures = architectures
    model.config.to_json_file(out / "config.json")
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in model.state_dict().items()}
    assert sum(".gamma" in k for k in legacy) == 1 + 2 * 6 + 1
    torch.save(legacy, out / "pytorch_model.bin")
    shutil.copy(tokenizer_dir / "vocab.txt", out / "vocab.txt")
    return out


def test_bin_only_masked_lm_folder_loads(minilm_dir, shared_data, tmp_path):
    torch.manual_seed(0)
    mlm = BertForMaskedLM.from_pretrained(minilm_dir).eval()
    folder = _bin_folder(mlm, minilm_dir, tmp_path / "bin_only", ["BertForMaskedLM"])
    assert sorted(os.listdir(folder)) == ["config.json", "pytorch_model.bin", "vocab.txt"]

    model = load_pretraining_model(folder, "mlm").eval()
    batch = AutoTokenizer.from_pretrained(minilm_dir)(english(shared_data), return_tensors="pt", padding=True)
    with torch.no_grad():
        want = mlm(**batch).logits
        got_hidden = model.bert(**batch).last_hidden_state
        got = model.cls(got_hidden)
    torch.testing.assert_close(got_hidden, hidden(minilm_dir, batch), rtol=0, atol=0)
    torch.testing.assert_close(got, want, rtol=0, atol=0)

    info = model_info(folder)
    assert info.weight_files == ["pytorch_model.bin"] and info.architectures == ["BertForMaskedLM"]
    assert info.heads == {"MLM": ""} and not info.pooler and info.lowercase is True
    assert info.casing_source == "inferred from vocab.txt"


class _Exploit:
    def __reduce__(self):
        return (os.system, (f"touch {_Exploit.marker}",))


def test_malicious_pickle_is_refused(minilm_dir, tmp_path, capsys):
    folder = tmp_path / "evil"
    folder.mkdir()
    shutil.copy(minilm_dir / "config.json", folder / "config.json")
    _Exploit.marker = tmp_path / "pwned"
    state = dict(BertModel.from_pretrained(minilm_dir).state_dict())
    state["embeddings.extra"] = _Exploit()
    torch.save(state, folder / "pytorch_model.bin")

    with pytest.raises(ValueError, match=r"evil/pytorch_model\.bin: refused to load: the pickle holds "
                                         r"objects other than tensors \(.*posix\.system"):
        load_pretraining_model(folder)
    assert main(["info", str(folder)]) == 2
    assert "refused to load" in capsys.readouterr().err
    assert not _Exploit.marker.exists()


def test_corrupt_and_mismatched_folders_are_named(minilm_dir, tmp_path, capsys):
    def folder(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        for f in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
            shutil.copy(minilm_dir / f, d / f)
        return d

    d = folder("truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated/model\.safetensors: not a readable safetensors file "
                                         r"\(truncated or corrupt\?\)"):
        load_pretraining_model(d)

    d = folder("truncated_bin")
    torch.save(BertModel.from_pretrained(minilm_dir).state_dict(), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    data = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match=r"truncated_bin/pytorch_model\.bin: not a readable PyTorch "
                                         r"checkpoint"):
        load_pretraining_model(d)

    d = folder("wider")
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 2048
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"wider/model\.safetensors: tensor encoder\.layer\.0\.intermediate"
                                         r"\.dense\.bias has shape \[1536\] but config\.json .* implies "
                                         r"\[2048\]"):
        load_pretraining_model(d)

    d = folder("vocab_mismatch")
    with open(d / "vocab.txt", "a", encoding="utf-8") as f:
        f.write("[extra1]\n[extra2]\n")
    with pytest.raises(ValueError, match=r"vocab_mismatch/vocab\.txt: 30524 tokens but config\.json has "
                                         r"vocab_size=30522"):
        load_pretraining_model(d)

    d = folder("no_weights")
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"no weights \(expected model.safetensors or "
                                                r"pytorch_model.bin\)"):
        load_pretraining_model(d)
    (d / "tf_model.h5").write_bytes(b"\x89HDF")
    assert main(["info", str(d)]) == 2
    err = capsys.readouterr().err
    assert "only TensorFlow 2 (Keras h5) weights (tf_model.h5)" in err and "Traceback" not in err


def test_task_models_load_in_plain_transformers(minilm_dir, shared_data, tmp_path):
    """Folders pert writes for fine-tuned models: the matching transformers class loads every weight."""
    from pert.text import load_tokenizer

    tok = load_tokenizer(minilm_dir)
    batch = tok(english(shared_data, 2), return_tensors="pt", padding=True)
    torch.manual_seed(0)
    qa = BertForQuestionAnswering.from_pretrained(minilm_dir).eval()
    folder = save_model_folder(qa, tok, tmp_path / "qa", {"task": "cmrc2018", "best_step": 40,
                                                          "dev": {"em": 61.5, "f1": 80.25}})
    with torch.no_grad():
        want = qa(**batch)
        got = BertForQuestionAnswering.from_pretrained(folder).eval()(**batch)
    torch.testing.assert_close(got.start_logits, want.start_logits, rtol=0, atol=0)
    torch.testing.assert_close(got.end_logits, want.end_logits, rtol=0, atol=0)
    info = model_info(folder)
    assert info.heads == {"QA": "span start/end"}
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and "BertForQuestionAnswering.from_pretrained" in card
    assert ", fine-tuned for cmrc2018" in card and "| dev | f1 | 80.2500 |" in card

    clf = BertForSequenceClassification.from_pretrained(minilm_dir, num_labels=3).eval()
    folder = save_model_folder(clf, tok, tmp_path / "clf")
    with torch.no_grad():
        torch.testing.assert_close(BertForSequenceClassification.from_pretrained(folder).eval()(**batch).logits,
                                   clf(**batch).logits, rtol=0, atol=0)
    info = model_info(folder)
    assert info.heads == {"classification": "sequence, 3 outputs"}
    assert info.parameters == MINILM_PARAMS + 384 * 3 + 3
    assert "Not recorded (the folder has no pert_training.json)" in (folder / "README.md").read_text()
