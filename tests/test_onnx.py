"""`pert export onnx` and `--runtime onnx` for word-order restoration, and the errors of both.

A tiny PERT (2 layers, seeded random weights, the bert-base-chinese vocabulary) is exported and must give the
torch model's pointer logits and restorations. The QA model (MiniLM fine-tuned on SQuAD) is tested in
test_mrc_finetune.py, which shares that fine-tune.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pert.cli import main

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")

SENTENCES = ["我们今天北京去开会。", "他昨天图书馆在看书，很晚才回家。", "这是一个没有被打乱的句子。",
             "经济发展人民生活水平提高了。"]


@pytest.fixture(scope="module")
def wor_model(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    from transformers import BertConfig

    from pert.convert.hf import save_model_folder
    from pert.modeling import PertForPreTraining
    from pert.text import load_tokenizer

    tokenizer = load_tokenizer(shared_data / "vocab" / "bert-base-chinese" / "vocab.txt")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=64)
    torch.manual_seed(0)
    model = PertForPreTraining(config)
    with torch.no_grad():  # a pointer bias that is not all zeros, so its slicing by length is exercised
        model.perlm_head.position_bias.normal_(0.0, 1.0)
    return save_model_folder(model, tokenizer, tmp_path_factory.mktemp("wor") / "tiny-pert", {"task": "wor"})


@pytest.fixture(scope="module")
def wor_exports(wor_model: Path) -> dict[str, Path]:
    out = wor_model.parent
    assert main(["export", "onnx", str(wor_model), "--out", str(out / "fp32")]) == 0
    assert main(["export", "onnx", str(wor_model), "--out", str(out / "int8"), "--quantize", "int8"]) == 0
    return {"fp32": out / "fp32", "int8": out / "int8"}


def test_export_folder_and_record(wor_exports: dict[str, Path]) -> None:
    for precision, folder in wor_exports.items():
        record = json.loads((folder / "pert_onnx.json").read_text(encoding="utf-8"))
        assert record["task"] == "wor" and record["precision"] == precision
        assert record["inputs"] == ["input_ids", "attention_mask"] and record["outputs"] == ["position_logits"]
        assert record["max_abs_diff_fp32"] < 1e-4
        assert {"model.onnx", "config.json", "vocab.txt", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
        assert not list(folder.parent.glob("*.tmp-export"))
    assert ((wor_exports["int8"] / "model.onnx").stat().st_size
            < 0.5 * (wor_exports["fp32"] / "model.onnx").stat().st_size)


def test_pointer_logits_match_torch(wor_model: Path, wor_exports: dict[str, Path]) -> None:
    from pert.convert.hf import load_pretraining_model
    from pert.runtime import OnnxModel
    from pert.text import load_tokenizer

    tok = load_tokenizer(wor_model)
    enc = tok(SENTENCES, padding="longest", return_tensors="pt")  # other lengths than the export's trace
    model = load_pretraining_model(wor_model).eval()
    with torch.inference_mode():
        expected = model.position_logits(enc["input_ids"], enc["attention_mask"]).numpy()
    got = OnnxModel(wor_exports["fp32"], "wor").run(enc)[0]
    assert got.shape == expected.shape
    assert np.array_equal(np.isinf(got), np.isinf(expected))  # padding masked out the same way
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], atol=1e-4, rtol=1e-4)


def test_restore_cli_same_output_on_both_runtimes(wor_model: Path, wor_exports: dict[str, Path], capsys) -> None:
    outputs = {}
    for name, folder, runtime in (("torch", wor_model, "torch"), ("fp32", wor_exports["fp32"], "onnx"),
                                  ("int8", wor_exports["int8"], None)):  # None: chosen by the folder
        args = ["restore", "--model", str(folder), "--show-moves", *SENTENCES]
        assert main(args + (["--runtime", runtime] if runtime else [])) == 0
        outputs[name] = capsys.readouterr().out
    assert outputs["fp32"] == outputs["torch"]
    lines = outputs["int8"].splitlines()[::2]
    assert [sorted(a) for a in lines] == [sorted(s) for s in SENTENCES]  # a permutation of each input


def test_errors_are_one_line(wor_model: Path, wor_exports: dict[str, Path], tmp_path: Path, capsys) -> None:
    cases = [
        (["restore", "--model", str(wor_model), "--runtime", "onnx", "x"], "not an ONNX export"),
        (["restore", "--model", str(wor_exports["fp32"]), "--runtime", "torch", "x"], "holds no torch weights"),
        (["restore", "--model", str(wor_exports["fp32"]), "--precision", "bf16", "x"], "precision chosen at export"),
        (["qa", "--model", str(wor_exports["fp32"]), "--context", "c", "--question", "q"], "not 'qa'"),
        (["export", "onnx", str(wor_model), "--out", str(wor_exports["fp32"])], "not empty"),
        (["export", "onnx", str(tmp_path / "missing"), "--out", str(tmp_path / "o")], "missing"),
        (["export", "onnx", str(wor_model), "--task", "qa", "--out", str(tmp_path / "o")],
         "no trained question-answering head"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.splitlines()
        assert message in err[-1] and sum("error" in line for line in err) == 1, err
    assert not (tmp_path / "o").exists()
