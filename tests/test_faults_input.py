"""Faults on the input side: bad vocabularies, corpora and segmenters, workers that fail, a full disk, two runs
into one folder, hostile config.json. Each must end in one line naming the cause, never a hang, a traceback
or an output that looks complete. (docs/reliability.md maps each fault to its test here.)"""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pert.cli import main
from pert.corpus.dataset import PreparedCorpus
from pert.corpus.prepare import PrepareConfig, prepare
from pert.lock import OutputInUseError, lock_file, output_lock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vocab(shared_data) -> Path:
    return shared_data / "vocab" / "bert-base-chinese" / "vocab.txt"


@pytest.fixture(scope="module")
def pd_text(peoples_daily_tagged) -> list[str]:
    """The first 1,000 lines of People's Daily 1998-01, words without their tags."""
    lines = peoples_daily_tagged.read_text(encoding="utf-8").splitlines()[:1000]
    return ["".join(tok.rsplit("/", 1)[0] for tok in line.split()) for line in lines]


@pytest.fixture
def corpus(tmp_path, pd_text) -> Path:
    path = tmp_path / "pd.txt"
    path.write_text("\n".join(pd_text[:200]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def segmenters(tmp_path, monkeypatch) -> str:
    """A module of misbehaving segmenters on sys.path (spawned workers inherit it)."""
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "seg_only_parent.py").write_text(textwrap.dedent("""
        import multiprocessing
        if multiprocessing.parent_process() is not None:
            raise RuntimeError("the segmenter's model cannot load in a worker")
        def cut(text):
            return list(text)
    """))
    (mods / "seg_import_fails.py").write_text("raise RuntimeError('broken at import')\n")
    (mods / "seg_bad.py").write_text(textwrap.dedent("""
        import os, signal
        def none(text):
            return None
        def boom(text):
            if "江泽民" in text:
                raise RuntimeError("cannot segment this")
            return list(text)
        def die(text):
            os.kill(os.getpid(), signal.SIGKILL)
        def slow(text):
            import time
            time.sleep(60)
            return list(text)
    """))
    monkeypatch.syspath_prepend(str(mods))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(mods), os.environ.get("PYTHONPATH", "")]))
    return str(mods)


def cfg(out: Path, vocab: Path | str, *inputs: Path, **kw) -> PrepareConfig:
    return PrepareConfig(out=str(out), vocab=str(vocab), inputs=[str(i) for i in inputs], **kw)


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and "Traceback" not in "\n".join(err)
    return err[-1]


def assert_nothing_written(out: Path) -> None:
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(out.name)) == []


# --- vocabularies -------------------------------------------------------------------------------------------

def test_text_file_as_vocab_fails_at_once_with_default_workers(tmp_path, corpus, capsys):
    """Before: each worker failed while starting and multiprocessing.Pool restarted them forever."""
    out = tmp_path / "out"
    assert main(["prepare", str(corpus), "--vocab", str(corpus), "--out", str(out)]) == 2
    assert one_line(capsys) == (f"pert prepare: error: {corpus}: not a BERT vocab.txt: lacks the special token(s) "
                                "[PAD] [UNK] [CLS] [SEP] [MASK] (a BERT vocabulary has [PAD] [UNK] [CLS] [SEP] "
                                "[MASK], one token a line)")
    assert_nothing_written(out)


def test_binary_and_incomplete_vocabularies_are_named(tmp_path, vocab, corpus):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=rf"^{binary}: a binary file, not a vocab\.txt"):
        prepare(cfg(tmp_path / "out", binary, corpus))
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("[PAD]\n[UNK]\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^{latin1}:3: not UTF-8 text"):
        prepare(cfg(tmp_path / "out", latin1, corpus))
    # transformers 5 would add a missing [MASK] at a new id silently: the file itself is checked
    no_mask = tmp_path / "no_mask.txt"
    no_mask.write_text("".join(t + "\n" for t in vocab.read_text("utf-8").splitlines() if t != "[MASK]"))
    with pytest.raises(ValueError, match=rf"^{no_mask}: not a BERT vocab\.txt: lacks the special token\(s\) "
                                         r"\[MASK\] "):
        prepare(cfg(tmp_path / "out", no_mask, corpus))
    assert_nothing_written(tmp_path / "out")


# --- segmenters and workers ---------------------------------------------------------------------------------

def test_worker_that_cannot_start_stops_the_run_at_once(tmp_path, vocab, corpus, segmenters):
    """The segmenter imports in the parent but not in the workers: one error, no restart loop."""
    out = tmp_path / "out"
    with pytest.raises(ValueError) as e:
        prepare(cfg(out, vocab, corpus, segmenter="seg_only_parent:cut", workers=2))
    assert str(e.value) == ("a tokenising process could not start: segmenter 'seg_only_parent:cut': cannot import "
                            "cut from seg_only_parent: RuntimeError: the segmenter's model cannot load in a worker")
    assert_nothing_written(out)


def test_killed_worker_stops_the_run_with_one_line(tmp_path, vocab, corpus, segmenters):
    """A worker dies of SIGKILL (as the OOM killer does) on its first document."""
    out = tmp_path / "out"
    with pytest.raises(ChildProcessError, match=r"^a tokenising process died \(killed, or out of memory\?\); "
                                                r"nothing was written$"):
        prepare(cfg(out, vocab, corpus, segmenter="seg_bad:die", workers=2))
    assert_nothing_written(out)


def test_segmenter_failures_name_the_segmenter_and_file_line(tmp_path, vocab, corpus, segmenters, capsys):
    out = tmp_path / "out"
    line = next(i for i, text in enumerate(corpus.read_text("utf-8").splitlines(), 1) if "江泽民" in text)
    with pytest.raises(ValueError, match=rf"^{corpus}:{line}: segmenter 'seg_bad:boom' failed on this document: "
                                         r"RuntimeError: cannot segment this$"):
        prepare(cfg(out, vocab, corpus, segmenter="seg_bad:boom", workers=1))
    with pytest.raises(ValueError, match=rf"^{corpus}:1: segmenter 'seg_bad:none' failed on this document: "
                                         r"TypeError: returned NoneType, not a list of words$"):
        prepare(cfg(out, vocab, corpus, segmenter="seg_bad:none", workers=1))
    assert main(["prepare", str(corpus), "--vocab", str(vocab), "--out", str(out),
                 "--segmenter", "seg_import_fails:cut"]) == 2
    assert one_line(capsys) == ("pert prepare: error: segmenter 'seg_import_fails:cut': cannot import cut from "
                                "seg_import_fails: RuntimeError: broken at import")
    assert_nothing_written(out)


# --- corpora ------------------------------------------------------------------------------------------------

def test_unreadable_corpus_files_are_named(tmp_path, vocab, corpus, pd_text, monkeypatch, capsys):
    out = tmp_path / "out"
    truncated = tmp_path / "cut.txt.gz"
    truncated.write_bytes(gzip.compress("\n".join(pd_text).encode())[:4000])
    with pytest.raises(ValueError, match=rf"^{truncated}: truncated \.gz file \(Compressed file ended before"):
        prepare(cfg(out, vocab, corpus, truncated, workers=1))
    not_gzip = tmp_path / "plain.txt.gz"
    not_gzip.write_bytes(b"plain text, not gzip\n")
    with pytest.raises(ValueError, match=rf"^{not_gzip}: cannot read it: Not a gzipped file"):
        prepare(cfg(out, vocab, not_gzip, workers=1))
    fifo = tmp_path / "pipe.txt"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=rf"^{fifo}: not a regular file"):
        prepare(cfg(out, vocab, fifo, workers=1))
    # tests run as root, where chmod 000 does not stop a read: the PermissionError is injected into open()
    import pert.corpus.read as read

    def denied(path, mode="r", *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(read, "open", denied, raising=False)
    assert main(["prepare", str(corpus), "--vocab", str(vocab), "--out", str(out), "--workers", "1"]) == 2
    assert one_line(capsys) == f"pert prepare: error: {corpus}: cannot read it: Permission denied"
    assert_nothing_written(out)


def test_empty_corpus_is_refused_and_empty_prepared_folder_too(tmp_path, vocab, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"\n   \n\x00\x01\x02\x03\n\n")
    out = tmp_path / "out"
    assert main(["prepare", str(empty), "--vocab", str(vocab), "--out", str(out), "--workers", "1"]) == 2
    assert one_line(capsys) == (f"pert prepare: error: {empty}: no document with any token to prepare (binary "
                                f"skipped: 1, empty document skipped: 3); nothing written to {out}")
    assert_nothing_written(out)
    # a folder an older pert wrote from an empty corpus: pretrain says so instead of "cannot mmap an empty file"
    old = tmp_path / "old"
    old.mkdir()
    (old / "tokens.bin").write_bytes(b"")
    (old / "word_starts.bin").write_bytes(b"")
    (old / "manifest.json").write_text(json.dumps({"format_version": 1, "tokens": 0, "dtype": "uint16"}))
    assert main(["pretrain", "--data", str(old), "--out", str(tmp_path / "run"), "--max-steps", "1"]) == 2
    assert one_line(capsys) == (f"pert pretrain: error: {old}: the prepared corpus holds no tokens; prepare it "
                                "again from text with documents in it")
    (old / "manifest.json").write_text(json.dumps({"format_version": 1, "tokens": 10, "dtype": "uint16"}))
    with pytest.raises(ValueError, match=rf"^{old}/tokens\.bin: 0 bytes where manifest\.json implies 20 "):
        PreparedCorpus(old)


# --- full disk ----------------------------------------------------------------------------------------------

def test_full_disk_injected_is_one_line_and_leaves_no_temporary_folder(tmp_path, vocab, corpus, monkeypatch,
                                                                      capsys):
    import pert.text.tokenizer

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pert.text.tokenizer, "save_tokenizer", full)
    out = tmp_path / "out"
    assert main(["prepare", str(corpus), "--vocab", str(vocab), "--out", str(out), "--workers", "1"]) == 2
    assert one_line(capsys) == (f"pert prepare: error: [Errno 28] No space left on device: writing {out}; "
                                "nothing was written")
    assert_nothing_written(out)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and mount; skipped otherwise)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root (the injected-ENOSPC test covers the rest)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_full_disk_on_a_real_small_filesystem(small_disk, tmp_path, vocab, pd_text):
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("\n".join(pd_text[:100]) + "\n", encoding="utf-8")
    big.write_text("\n".join(pd_text) + "\n", encoding="utf-8")
    out = small_disk / "corpus"
    before = prepare(cfg(out, vocab, small, workers=1))
    with pytest.raises(OSError, match=rf"^\[Errno 28\] No space left on device: writing {out}; nothing was "
                                      r"written$"):
        prepare(cfg(out, vocab, big, workers=1))
    assert sorted(os.listdir(small_disk)) == ["corpus"]  # no corpus.tmp, no corpus.lock
    assert PreparedCorpus(out).manifest == before  # the previous output is untouched


# --- one run per output folder ------------------------------------------------------------------------------

def test_second_run_into_one_folder_is_refused_and_a_dead_holder_is_taken_over(tmp_path, vocab, corpus,
                                                                               segmenters, capsys):
    """Two real `pert prepare` processes into one --out; then kill -9 of the holder and a clean re-run."""
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "pert.cli", "prepare", str(corpus), "--vocab", str(vocab),
                              "--out", str(out), "--workers", "1", "--segmenter", "seg_bad:slow"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not (out.with_name("out.tmp").exists() and lock_file(out).read_text().strip()):
            assert first.poll() is None and time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.2)
        assert main(["prepare", str(corpus), "--vocab", str(vocab), "--out", str(out), "--workers", "1"]) == 2
        assert one_line(capsys) == (f"pert prepare: error: {out} is in use by another pert run (PID {first.pid}, "
                                    f"lock {lock_file(out)}); wait for it to end or choose another --out")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert lock_file(out).read_text().strip() == str(first.pid)  # left behind by the dead process
    manifest = prepare(cfg(out, vocab, corpus, workers=1))
    assert manifest["documents"] == 200 and not lock_file(out).exists()
    assert not out.with_name("out.tmp").exists()
    clean = prepare(cfg(tmp_path / "clean", vocab, corpus, workers=1))
    for name in ("tokens.bin", "word_starts.bin", "doc_offsets.npy"):
        assert (out / name).read_bytes() == (tmp_path / "clean" / name).read_bytes()
    assert manifest["fingerprint"] == clean["fingerprint"]


def test_pretrain_and_finetune_take_the_lock_too(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    with output_lock(out):
        # the lock is checked before anything else, so no data or model is needed to see the refusal
        assert main(["pretrain", "--data", str(tmp_path), "--out", str(out)]) == 2
        assert f"{out} is in use by another pert run (PID {os.getpid()}," in one_line(capsys)
        assert main(["finetune", "--task", "chnsenticorp", "--model", str(tmp_path), "--data", str(tmp_path),
                     "--out", str(out)]) == 2
        assert f"{out} is in use by another pert run (PID {os.getpid()}," in one_line(capsys)
        with pytest.raises(OutputInUseError), output_lock(out):
            pass
        monkeypatch.setenv("RANK", "1")  # a second rank of the same multi-process run: no lock of its own
        with output_lock(out):
            pass
    assert not lock_file(out).exists()


# --- hostile config.json ------------------------------------------------------------------------------------

def _folder(minilm_dir: Path, path: Path, **config) -> Path:
    path.mkdir()
    for f in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(minilm_dir / f, path / f)
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(config)
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_hostile_configs_are_refused_before_building_the_model(minilm_dir, tmp_path, capsys):
    from safetensors.torch import load_file, save_file
    from transformers import BertForSequenceClassification

    from pert.convert.hf import load_pretraining_model
    from pert.tasks.base import load_model_with_head

    deep = _folder(minilm_dir, tmp_path / "deep", num_hidden_layers=100000)
    message = f"{deep}/model.safetensors: the weights hold encoder layers 0-5 but config.json has " \
              "num_hidden_layers=100000"
    with pytest.raises(ValueError, match=f"^{message}$"):
        load_pretraining_model(deep)
    with pytest.raises(ValueError, match=f"^{message}$"):  # the path of finetune, evaluate and qa
        load_model_with_head(BertForSequenceClassification, deep, labels=["0", "1"])
    assert main(["qa", "--model", str(deep), "--context", "x", "--question", "y"]) == 2
    assert one_line(capsys) == f"pert qa: error: {message}"
    # finetune checks the folder before it reads any data (here there is none)
    assert main(["finetune", "--task", "sst2", "--model", str(deep), "--data", str(tmp_path),
                 "--out", str(tmp_path / "run")]) == 2
    assert one_line(capsys) == f"pert finetune: error: {message}"

    huge = _folder(minilm_dir, tmp_path / "huge", vocab_size=10**9)
    weights = load_file(huge / "model.safetensors")
    del weights["embeddings.word_embeddings.weight"]
    save_file(weights, huge / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=rf"^{huge}/model\.safetensors: no word embeddings \(embeddings\."
                                         r"word_embeddings\.weight\) for config\.json's vocab_size=1000000000, "
                                         r"hidden_size=384$"):
        load_pretraining_model(huge)

    # pert info describes such a folder, flags every mismatch and exits 1
    assert main(["info", str(deep)]) == 1
    assert ("MISMATCH      the weights hold encoder layers 0-5 but config.json has num_hidden_layers=100000; the "
            "folder will not load") in capsys.readouterr().out
    assert main(["info", str(_folder(minilm_dir, tmp_path / "fine", num_hidden_layers=6))]) == 0
    assert "MISMATCH" not in capsys.readouterr().out


def test_memory_estimate_is_exact_and_refuses_a_model_that_does_not_fit(minilm_dir, tmp_path, monkeypatch):
    import torch
    from transformers import BertConfig

    import pert.convert.weights as weights
    from pert.convert.hf import load_pretraining_model
    from pert.modeling import PertForPreTraining

    config = BertConfig.from_pretrained(minilm_dir)
    config.pert_mlm_head = True
    with torch.device("meta"):
        model = PertForPreTraining(config)
    n = weights.estimated_parameters(config)
    # minilm's 22,713,216 (encoder and pooler) + PerLM head (transform, position bias) + MLM head (transform, bias)
    assert n == sum(p.numel() for p in model.parameters()) == 22_713_216 + (384 * 384 + 3 * 384 + 512) \
        + (384 * 384 + 3 * 384 + 30522)
    monkeypatch.setattr(weights, "available_memory", lambda: 64 * 2**20)
    folder = _folder(minilm_dir, tmp_path / "m")
    with pytest.raises(ValueError, match=rf"^{folder}/config\.json: the model it describes has about 23M "
                                         r"parameters, 88 MiB as float32, more than the 64 MiB of memory available$"):
        load_pretraining_model(folder)


@pytest.mark.parametrize("value", ["many", None, 4.0, True, "256", [6], -1])
def test_config_fields_of_the_wrong_type_are_refused_in_one_line(minilm_dir, tmp_path, capsys, value):
    folder = _folder(minilm_dir, tmp_path / "typed", num_hidden_layers=value)
    message = f"{folder}/config.json: field 'num_hidden_layers' must be a positive integer, got {value!r}"
    for verb, argv in (("info", ["info", str(folder)]),
                       ("qa", ["qa", "--model", str(folder), "--context", "x", "--question", "y"]),
                       ("finetune", ["finetune", "--task", "sst2", "--model", str(folder), "--data", str(tmp_path),
                                     "--out", str(tmp_path / "run")])):
        assert main(argv) == 2, verb
        assert one_line(capsys) == f"pert {verb}: error: {message}"


def test_a_config_that_is_not_an_object_is_refused_in_one_line(minilm_dir, tmp_path, capsys):
    folder = _folder(minilm_dir, tmp_path / "list")
    (folder / "config.json").write_text("[]")
    assert main(["info", str(folder)]) == 2
    assert one_line(capsys) == (f"pert info: error: {folder}/config.json: expected a JSON object of config fields, "
                                "got list")
