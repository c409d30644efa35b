"""Models in every form a user holds: Hub ids (offline cache), transformers-5 folders (tokenizer.json only),
MRC folders; vocabularies written byte for byte; tokenizers that know the model's length."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForQuestionAnswering, BertTokenizer, pipeline

from pert.cli import main
from pert.convert.hf import save_model_folder
from pert.modeling import PertForPreTraining
from pert.text.tokenizer import load_tokenizer, vocab_sha256

ZH_VOCAB = Path("vocab/bert-base-chinese/vocab.txt")
ZH_TEXT = Path("zh/pretrain_corpus/clue_corpus_small_sample/CLUECorpusSmall_sampled.txt")
SHA = "0123456789abcdef0123456789abcdef01234567"


def tiny_config(max_positions: int = 128) -> BertConfig:
    return BertConfig(vocab_size=21128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=max_positions)


def chinese(shared_data: Path, n: int = 8) -> list[str]:
    out = []
    with open(shared_data / ZH_TEXT, encoding="utf-8") as f:
        for line in f:
            if len(line.strip()) > 30:
                out.append(line.strip()[:150])
                if len(out) == n:
                    break
    return out


@pytest.fixture(scope="module")
def hf5_folder(tmp_path_factory, shared_data) -> Path:
    """What plain transformers 5 writes for an MRC model: config.json, model.safetensors, tokenizer.json and
    tokenizer_config.json (no vocab.txt)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf5") / "qa"
    BertForQuestionAnswering(tiny_config()).save_pretrained(folder)
    BertTokenizer(str(shared_data / ZH_VOCAB)).save_pretrained(folder)
    assert not (folder / "vocab.txt").exists() and (folder / "tokenizer.json").is_file()
    return folder


def hub_cache(root: Path, repo: str, folder: Path) -> Path:
    """``folder`` laid out as huggingface_hub caches ``repo`` at commit SHA, ``refs/main`` pointing at it."""
    import shutil

    base = root / "hub" / ("models--" + repo.replace("/", "--"))
    shutil.copytree(folder, base / "snapshots" / SHA)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(SHA)
    return base / "snapshots" / SHA


def test_written_vocab_is_byte_identical_to_googles(shared_data, tmp_path):
    """Google's Chinese vocabulary has two U+2028 tokens (lines 344 and 13503) that the tokenizer reads as
    "" and "##"; the folder keeps the file as it was, so its hash matches a corpus prepared with it."""
    source = shared_data / ZH_VOCAB
    lines = source.read_bytes().split(b"\n")
    assert lines[343] == "\u2028".encode() and lines[13502] == "##\u2028".encode()
    tok = load_tokenizer(source)
    folder = save_model_folder(PertForPreTraining(tiny_config()), tok, tmp_path / "m")
    assert (folder / "vocab.txt").read_bytes() == source.read_bytes()
    assert vocab_sha256(load_tokenizer(folder)) == vocab_sha256(tok)
    # a tokenizer changed after loading is written from its own vocabulary
    tok.add_tokens(["[NEW]"])
    bigger = PertForPreTraining(BertConfig(**{**tiny_config().to_dict(), "vocab_size": 21129}))
    lines = (save_model_folder(bigger, tok, tmp_path / "m2") / "vocab.txt").read_text("utf-8").split("\n")
    assert len(lines) == 21130 and lines[-2] == "[NEW]" and lines[343] == ""


def test_init_from_a_pert_folder_accepts_the_corpus_of_its_vocabulary(shared_data, tmp_path):
    """`pert pretrain --init-from run/final --data P` for P prepared with the very vocabulary of the run."""
    from pert.corpus.prepare import PrepareConfig, prepare
    from pert.training.config import PretrainConfig
    from pert.training.loop import pretrain

    text = tmp_path / "zh.txt"
    text.write_text("\n".join(chinese(shared_data, 60)) + "\n", encoding="utf-8")
    prepare(PrepareConfig(out=str(tmp_path / "P"), vocab=str(shared_data / ZH_VOCAB), inputs=[str(text)],
                          segmenter="char", workers=1))
    common = dict(data=str(tmp_path / "P"), preset="tiny", max_seq_len=32, batch_size=2, max_steps=1, lr=1e-4,
                  warmup_steps=0, save_every=0, eval_every=0, eval_sequences=2, precision="fp32", num_workers=0)
    pretrain(PretrainConfig(out=str(tmp_path / "run"), **common))
    assert (tmp_path / "run" / "final" / "vocab.txt").read_bytes() == (shared_data / ZH_VOCAB).read_bytes()
    summary = pretrain(PretrainConfig(out=str(tmp_path / "run2"), init_from=str(tmp_path / "run" / "final"),
                                      **common))
    assert summary["steps"] == 1


def test_saved_tokenizer_knows_the_model_length(shared_data, tmp_path):
    """A 302-token input through pipeline("feature-extraction", truncation) fits a 128-position model."""
    folder = save_model_folder(PertForPreTraining(tiny_config(128)), load_tokenizer(shared_data / ZH_VOCAB),
                               tmp_path / "m")
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 128
    extract = pipeline("feature-extraction", model=str(folder))
    out = extract("中" * 300, tokenize_kwargs={"truncation": True})
    assert len(out[0]) == 128
    assert load_tokenizer(folder).model_max_length == 128


def test_transformers5_folder_loads_everywhere(hf5_folder, shared_data, capsys):
    """tokenizer.json only: AutoTokenizer, tokenising exactly as BertTokenizer on Google's vocab.txt."""
    from pert.qa import QuestionAnswerer

    tok = load_tokenizer(hf5_folder)
    ref = load_tokenizer(shared_data / ZH_VOCAB)
    texts = chinese(shared_data) + ["Hello World，１９９８年 iPhone"]
    assert tok(texts)["input_ids"] == ref(texts)["input_ids"]
    assert vocab_sha256(tok) != vocab_sha256(ref)  # its vocab.txt would hold "" where Google's has U+2028
    assert main(["info", str(hf5_folder)]) == 0
    printed = capsys.readouterr().out
    assert "QA: yes (span start/end)" in printed and "21,128 WordPiece tokens" in printed
    answer = QuestionAnswerer(hf5_folder, device="cpu")([("谁写的？", texts[0])])[0]
    assert answer.text == texts[0][answer.start:answer.end]


def test_a_non_wordpiece_tokenizer_is_refused_in_one_line(tmp_path, capsys):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "bpe"
    BertForQuestionAnswering(BertConfig(vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                        intermediate_size=8)).save_pretrained(folder)
    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.BPE())).save_pretrained(folder)
    capsys.readouterr()
    assert main(["qa", "--model", str(folder), "--context", "a", "--question", "b"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "tokenizer.json: a BPE tokenizer; pert needs BERT's WordPiece" in err


def test_hub_ids_resolve_offline_from_the_cache(hf5_folder, tmp_path, monkeypatch, capsys):
    """HF_HUB_OFFLINE with a cache laid out as huggingface_hub does: every verb takes the id."""
    from huggingface_hub import constants

    snapshot = hub_cache(tmp_path, "hfl/chinese-pert-base", hf5_folder)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    from pert.hub import resolve_model

    capsys.readouterr()
    assert resolve_model("hfl/chinese-pert-base") == snapshot
    assert resolve_model("hfl/chinese-pert-base", revision=SHA) == snapshot
    assert main(["info", "hfl/chinese-pert-base"]) == 0
    assert "QA: yes" in capsys.readouterr().out
    assert main(["qa", "--model", "hfl/chinese-pert-base", "--device", "cpu", "--context", "今天北京下雨。",
                 "--question", "哪里下雨？"]) == 0
    assert json.loads(capsys.readouterr().out)["start"] >= 0
    # --vocab of prepare and wor-data
    text = tmp_path / "t.txt"
    text.write_text("我们今天去北京开会。\n明年的工作计划已经定了。\n", encoding="utf-8")
    assert main(["prepare", str(text), "--vocab", "hfl/chinese-pert-base", "--out", str(tmp_path / "P"),
                 "--segmenter", "char", "--workers", "1"]) == 0
    assert json.loads((tmp_path / "P" / "manifest.json").read_text())["tokenizer"]["vocab_size"] == 21128

    # not cached: one line saying so and how to fetch it
    capsys.readouterr()
    for argv in (["info", "hfl/chinese-pert-large"], ["info", "hfl/chinese-pert-base", "--revision", "v2"],
                 ["qa", "--model", "hfl/chinese-pert-large", "--context", "a", "--question", "b"],
                 ["prepare", str(text), "--vocab", "hfl/chinese-pert-large", "--out", str(tmp_path / "Q")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0, err
        assert "not in the Hugging Face cache" in err and "HF_HUB_OFFLINE" in err and "hf download hfl/" in err
        assert ("--revision v2" in err) == ("v2" in argv)


def test_hub_id_in_a_fresh_process(hf5_folder, tmp_path):
    """The environment variables a user sets (HF_HOME, HF_HUB_OFFLINE), read by a new `pert` process."""
    import os
    import subprocess
    import sys

    hub_cache(tmp_path, "hfl/chinese-pert-base", hf5_folder)
    env = {**os.environ, "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    run = subprocess.run([sys.executable, "-m", "pert.cli", "info", "hfl/chinese-pert-base", "--json"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["heads"] == {"QA": "span start/end"}


def test_local_paths_are_never_looked_up(tmp_path, capsys):
    from pert.hub import is_hub_id

    assert is_hub_id("hfl/chinese-pert-base") and is_hub_id("bert-base-chinese")
    assert not is_hub_id("runs/wor/seed-1/best") and not is_hub_id("vocab.txt") and not is_hub_id("./x")
    assert main(["info", str(tmp_path / "absent")]) == 2
    assert "not a model folder (no config.json)" in capsys.readouterr().err
