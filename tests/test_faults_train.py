"""Faults in training and checkpointing: kill -9 then --resume, corrupted checkpoints, a full disk, and
reproducible fine-tuning (docs/reliability.md, "Training and checkpoints", points at these tests)."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from pert.cli import main
from pert.corpus.prepare import PrepareConfig, prepare
from pert.tasks import FinetuneConfig, finetune
from pert.text.vocab import build_vocab
from pert.training import checkpoint as ckpt_mod
from pert.training.checkpoint import checkpoint_dirs, verify_checkpoint
from pert.training.config import PretrainConfig
from pert.training.loop import pretrain

# One thread everywhere, in this process and in the runs it starts: a run continued here must compute as the
# killed one did (another thread count sums in another order), and tiny models gain nothing from more
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, peoples_daily_tagged) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    lines = ["".join(t.rsplit("/", 1)[0] for t in line.split())
             for line in peoples_daily_tagged.read_text(encoding="utf-8").splitlines()[:400]]
    text = root / "pd.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    build_vocab(lines, root / "vocab.txt", vocab_size=2000)
    prepare(PrepareConfig(out=str(root / "prepared"), vocab=str(root / "vocab.txt"), inputs=[str(text)], workers=1))
    return root / "prepared"


PRETRAIN_ARGS = dict(preset="tiny", max_seq_len=32, batch_size=4, max_steps=6, lr=1e-3, warmup_steps=2,
                     save_every=3, eval_every=0, log_every=1, eval_sequences=8, precision="fp32", num_workers=0,
                     keep_last=3)


def pt_config(data: Path, out: Path, **kw) -> PretrainConfig:
    return PretrainConfig(data=str(data), out=str(out), **{**PRETRAIN_ARGS, **kw})


def cli_args(args: dict) -> list[str]:
    out = []
    for k, v in args.items():
        flag = f"--{k.replace('_', '-')}"
        if isinstance(v, bool):
            out.append(flag if v else f"--no-{k.replace('_', '-')}")
        else:
            out += [flag, *(map(str, v) if isinstance(v, list) else [str(v)])]
    return out


def same_weights(a: Path, b: Path) -> None:
    x, y = load_file(a), load_file(b)
    assert x.keys() == y.keys()
    for k in x:
        assert torch.equal(x[k], y[k]), k


def kill9_when(cmd: list[str], ready, log: Path, timeout: float = 300) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds; fails if it ends first."""
    with open(log, "w") as err:  # a file, not a pipe: a full pipe would stall the child
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        try:
            deadline = time.time() + timeout
            while not ready():
                assert proc.poll() is None, f"ended before the kill: {log.read_text()[-2000:]}"
                assert time.time() < deadline, "timed out waiting to kill"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> tuple[Path, dict]:
    """An uninterrupted 6-step run: checkpoints at steps 3 and 6."""
    out = tmp_path_factory.mktemp("ref") / "run"
    return out, pretrain(pt_config(corpus, out))


def resume_from(reference_out: Path, out: Path, damage=None) -> Path:
    """Copy the reference's checkpoints into ``out``, let ``damage`` spoil the newest one."""
    shutil.copytree(reference_out / "checkpoints", out / "checkpoints")
    newest = checkpoint_dirs(out)[-1]
    if damage:
        damage(newest)
    return newest


# --- pre-training -------------------------------------------------------------------------------------------

def test_kill9_during_pretrain_then_resume_ends_bit_identical(corpus, tmp_path):
    steps = dict(PRETRAIN_ARGS, max_steps=20, save_every=2, warmup_steps=5)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "pert.cli", "pretrain", "--data", str(corpus), "--out", str(out),
           *cli_args(steps)]
    kill9_when(cmd, lambda: len(checkpoint_dirs(out)) >= 2, tmp_path / "stderr.txt")
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:  # a row logged after the last checkpoint
        f.write(json.dumps({"split": "train", "step": 19, "loss": 0.0}) + "\n")
    resumed = pretrain(pt_config(corpus, out, **{**steps, "resume": True}))
    full = pretrain(pt_config(corpus, tmp_path / "full", **steps))
    # the metrics log reads as one run: each step once, none left from the session that was killed
    rows = [[(r["split"], r["step"], r.get("loss")) for r in map(json.loads, (run / "metrics.jsonl").open())]
            for run in (out, tmp_path / "full")]
    assert rows[0] == rows[1] and len(rows[0]) == 21  # 20 train rows and the final evaluation
    same_weights(out / "final" / "model.safetensors", tmp_path / "full" / "final" / "model.safetensors")
    assert resumed["steps"] == 20 and resumed["eval"] == full["eval"]
    # summary.json counts the tokens of the whole run, not only those since the resume
    assert resumed["tokens"] == full["tokens"]
    assert json.loads((out / "summary.json").read_text())["tokens"] == full["tokens"]
    assert not list((out / "checkpoints").glob(".tmp*"))


def _truncate(folder: Path) -> None:
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _garbage_in_tensor_data(folder: Path) -> None:
    """4 KB of random bytes inside the tensor data: the file keeps its size and its header parses."""
    f = folder / "model.safetensors"
    data = bytearray(f.read_bytes())
    start = len(data) // 2
    data[start:start + 4096] = os.urandom(4096)
    f.write_bytes(bytes(data))


def _garbage_in_optimizer(folder: Path) -> None:
    f = folder / "trainer_state.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2:len(data) // 2 + 4096] = os.urandom(4096)
    f.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _garbage_in_tensor_data, _garbage_in_optimizer])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(corpus, reference, tmp_path, caplog, damage):
    ref_out, full = reference
    out = tmp_path / "run"
    newest = resume_from(ref_out, out, damage)
    assert verify_checkpoint(newest) is not None
    with caplog.at_level(logging.WARNING, logger="pert.training.checkpoint"):
        resumed = pretrain(pt_config(corpus, out, resume=True))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(newest) in warnings[0] and "damaged" in warnings[0], warnings
    # resumed from step 3, the run ends as the uninterrupted one did
    same_weights(out / "final" / "model.safetensors", ref_out / "final" / "model.safetensors")
    assert resumed["tokens"] == full["tokens"]


def test_no_valid_checkpoint_is_one_line(corpus, reference, tmp_path, capsys):
    out = tmp_path / "run"
    resume_from(reference[0], out)
    for folder in checkpoint_dirs(out):
        _garbage_in_tensor_data(folder)
    rc = main(["pretrain", "--data", str(corpus), "--out", str(out), "--resume", *cli_args(PRETRAIN_ARGS)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("pert pretrain: error: --resume: no valid checkpoint in"), err
    assert "Traceback" not in "\n".join(err)


def _assert_failed_save_left_previous(out: Path, message: str) -> None:
    assert "\n" not in message
    assert "could not write checkpoint" in message and str(out / "checkpoints") in message
    assert "No space left on device" in message
    assert not list((out / "checkpoints").glob(".tmp*"))
    kept = checkpoint_dirs(out)
    assert [p.name for p in kept] == ["step_00000003"]
    assert verify_checkpoint(kept[0]) is None
    assert f"the previous checkpoint {kept[0]} is intact" in message


def test_disk_full_while_saving_injected(corpus, reference, tmp_path, monkeypatch):
    """ENOSPC raised inside the second save: one line naming the path; step 3 stays and resumes."""
    real = ckpt_mod.save_model
    calls = []

    def full_disk(model, filename, *a, **kw):
        calls.append(filename)
        if len(calls) == 2:
            with open(filename, "wb") as f:
                f.write(b"\0" * 1000)  # half-written before the disk filled up
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)
        return real(model, filename, *a, **kw)

    monkeypatch.setattr(ckpt_mod, "save_model", full_disk)
    out = tmp_path / "run"
    with pytest.raises(ckpt_mod.CheckpointError) as e:
        pretrain(pt_config(corpus, out))
    _assert_failed_save_left_previous(out, str(e.value))
    monkeypatch.setattr(ckpt_mod, "save_model", real)
    pretrain(pt_config(corpus, out, resume=True))
    same_weights(out / "final" / "model.safetensors", reference[0] / "final" / "model.safetensors")


def test_disk_full_while_saving_on_a_small_tmpfs(corpus, reference, tmp_path):
    """A real full disk: a tmpfs with room for one checkpoint and not two (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; test_disk_full_while_saving_injected covers the code path")
    one = sum(p.stat().st_size for p in (reference[0] / "checkpoints" / "step_00000003").iterdir())
    mnt = tmp_path / "small"
    mnt.mkdir()
    size_kb = (one + one // 2) // 1024
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(mnt)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
    try:
        out = mnt / "run"
        cmd = [sys.executable, "-m", "pert.cli", "pretrain", "--data", str(corpus), "--out", str(out),
               *cli_args(PRETRAIN_ARGS)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("pert pretrain: error: could not write checkpoint"), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        _assert_failed_save_left_previous(out, last)
        shutil.copytree(out, tmp_path / "moved")  # the user frees space (here: moves the run) and resumes
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
    pretrain(pt_config(corpus, tmp_path / "moved", resume=True))
    same_weights(tmp_path / "moved" / "final" / "model.safetensors",
                 reference[0] / "final" / "model.safetensors")


# --- fine-tuning --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(minilm_dir: Path, tmp_path_factory) -> Path:
    """A tiny random PERT folder with a real vocabulary: fine-tuning it is fast."""
    from transformers import BertConfig

    from pert.convert.hf import save_model_folder
    from pert.modeling import PertForPreTraining
    from pert.text import load_tokenizer

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    out = tmp_path_factory.mktemp("tiny") / "tiny-pert"
    save_model_folder(PertForPreTraining(config), load_tokenizer(minilm_dir), out)
    return out


@pytest.fixture(scope="module")
def sst2_train(shared_data, tmp_path_factory) -> Path:
    """SST-2's training file alone: with no dev split a seed keeps its final state, so the tests below compare
    the weights after every step of training (a tiny random model's dev accuracy would not move from the
    majority class in a few steps, and the best state would be the first one)."""
    folder = tmp_path_factory.mktemp("sst2")
    shutil.copy(shared_data / "en/glue/SST-2/train.tsv", folder / "train.tsv")
    return folder


def ft_args(model: Path, data: Path, out: Path, **kw) -> dict:
    return dict(task="sst2", model=str(model), data=str(data), out=str(out), seeds=[1, 2], lr=1e-3,
                batch_size=8, max_seq_len=32, max_steps=24, eval_every=4, max_train_examples=256,
                log_every=4, **kw)


def seed_outcome(out: Path, seed: int) -> tuple[dict, dict]:
    metrics = json.loads((out / f"seed-{seed}" / "metrics.json").read_text())
    return ({k: metrics[k] for k in ("best_step", "steps", "replica_sha256")},
            load_file(out / f"seed-{seed}" / "best" / "model.safetensors"))


def assert_same_outcome(a: Path, b: Path, seed: int) -> None:
    (ma, wa), (mb, wb) = seed_outcome(a, seed), seed_outcome(b, seed)
    assert ma == mb and ma["steps"] == ma["best_step"] == 24
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def ft_reference(tiny_model, sst2_train, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ft") / "run"
    finetune(FinetuneConfig(**ft_args(tiny_model, sst2_train, out)))
    return out


def test_finetuning_is_bit_reproducible_on_cpu(tiny_model, sst2_train, shared_data, ft_reference, tmp_path):
    """Same seed, same result: identical weights (dropout on, shuffled data) and so identical scores."""
    from pert.tasks import evaluate

    finetune(FinetuneConfig(**ft_args(tiny_model, sst2_train, tmp_path / "again")))
    for seed in (1, 2):
        assert_same_outcome(ft_reference, tmp_path / "again", seed)
    a, b = seed_outcome(ft_reference, 1)[1], seed_outcome(ft_reference, 2)[1]
    assert any(not torch.equal(a[k], b[k]) for k in a)  # and the seed matters
    scores = [evaluate("sst2", run / "seed-1" / "best", shared_data / "en/glue/SST-2", max_eval_examples=64,
                       max_seq_len=32, device="cpu") for run in (ft_reference, tmp_path / "again")]
    assert scores[0] == scores[1]


def test_kill9_during_finetune_then_resume(tiny_model, sst2_train, ft_reference, tmp_path, caplog):
    """Killed while seed 2 trains: --resume skips seed 1 and continues seed 2 from its checkpoint; both
    end exactly as the uninterrupted run."""
    out = tmp_path / "run"
    args = ft_args(tiny_model, sst2_train, out)
    cmd = [sys.executable, "-m", "pert.cli", "finetune", *cli_args(args)]
    kill9_when(cmd, lambda: bool(checkpoint_dirs(out / "seed-2")), tmp_path / "stderr.txt")
    assert (out / "seed-1" / "metrics.json").is_file() and not (out / "seed-2" / "metrics.json").exists()
    with pytest.raises(ValueError, match="pass --resume"):
        finetune(FinetuneConfig(**args))
    with pytest.raises(ValueError, match=r"run.json was written with other options: lr=0.001 \(now 0.002\)"):
        finetune(FinetuneConfig(**{**args, "lr": 2e-3}, resume=True))
    with caplog.at_level(logging.INFO, logger="pert.tasks.loop"):
        result = finetune(FinetuneConfig(**args, resume=True))
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "seed 1 finished in an earlier session" in logs and "seed 2: resumed from" in logs
    assert [s["seed"] for s in result["seeds"]] == [1, 2]
    for seed in (1, 2):
        assert_same_outcome(ft_reference, out, seed)
    assert not (out / "seed-2" / "checkpoints").exists()  # removed once the seed finished


def test_two_process_finetune_ends_with_identical_weights(tiny_model, sst2_train, tmp_path):
    out = tmp_path / "ddp"
    args = ft_args(tiny_model, sst2_train, out, group_by_length=True)
    args.update(seeds=[1], max_steps=8, eval_every=4)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29541",
           "-m", "pert.cli", "finetune", *cli_args(args), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "seed-1" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 8
    a, b = metrics["replica_sha256"]
    assert a == b


def test_build_vocab_is_deterministic(peoples_daily_tagged, tmp_path):
    """The same texts give the same vocab.txt in separate processes (the tokenizers trainer alone does not:
    huggingface/tokenizers#1794), so that a pipeline that builds its vocabulary is repeatable."""
    lines = ["".join(t.rsplit("/", 1)[0] for t in line.split())
             for line in peoples_daily_tagged.read_text(encoding="utf-8").splitlines()[:3000]]
    (tmp_path / "pd.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name in ("a.txt", "b.txt"):
        proc = subprocess.run([sys.executable, "-m", "pert.cli", "vocab", str(tmp_path / "pd.txt"), "--out",
                               str(tmp_path / name), "--vocab-size", "3000"], capture_output=True, text=True,
                              env=ENV, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = (tmp_path / "a.txt").read_text("utf-8"), (tmp_path / "b.txt").read_text("utf-8")
    assert a == b
    assert any(t.startswith("##") for t in a.splitlines())  # continuation pieces are there to be ordered


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc")
def test_kill9_of_prepare_leaves_no_worker_behind(peoples_daily_tagged, tmp_path):
    lines = ["".join(t.rsplit("/", 1)[0] for t in line.split()) for line in
             peoples_daily_tagged.read_text(encoding="utf-8").splitlines()]
    (tmp_path / "pd.txt").write_text("\n".join(lines * 3) + "\n", encoding="utf-8")
    build_vocab(lines[:2000], tmp_path / "vocab.txt", vocab_size=2000)
    cmd = [sys.executable, "-m", "pert.cli", "prepare", str(tmp_path / "pd.txt"),
           "--vocab", str(tmp_path / "vocab.txt"), "--out", str(tmp_path / "prepared"), "--workers", "2"]
    children: list[int] = []
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=ENV)
        try:
            deadline = time.time() + 120
            while len(children) < 3:  # two tokenising workers and multiprocessing's resource tracker
                assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
                assert time.time() < deadline, "the workers did not start"
                time.sleep(0.05)
                children = _children(proc.pid)
            time.sleep(1.0)  # the workers are tokenising now
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            proc.kill()
    deadline = time.time() + 30
    while (alive := [p for p in children if Path(f"/proc/{p}").exists()
                     and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]) and \
            time.time() < deadline:
        time.sleep(0.1)
    assert not alive, f"processes outlived the killed prepare: {alive}"
    assert not (tmp_path / "prepared" / "manifest.json").exists()  # and nothing looks complete


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_malicious_trainer_state_is_refused_in_one_line_and_never_run(corpus, reference, tmp_path, capsys,
                                                                        monkeypatch):
    import pickle

    from pert.training.checkpoint import write_manifest

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    newest = resume_from(reference[0], out)
    for older in checkpoint_dirs(out)[:-1]:
        shutil.rmtree(older)
    (newest / "trainer_state.pt").write_bytes(pickle.dumps({"step": 3, "optimizer": _Payload(), "scheduler": {}}))
    write_manifest(newest)  # the attacker rewrote the checksums too
    rc = main(["pretrain", "--data", str(corpus), "--out", str(out), "--resume", *cli_args(PRETRAIN_ARGS)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not (tmp_path / "pwned").exists()
    assert err[-1].startswith(f"pert pretrain: error: {newest}/trainer_state.pt: refused, not a checkpoint state "
                              "that loads safely"), err
    assert "Traceback" not in "\n".join(err)
