"""`pert pretrain` end to end on real text: resume equals an uninterrupted run, 2 processes agree, CLI."""

from __future__ import annotations

import json
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
from pert.text.vocab import build_vocab
from pert.training.config import PretrainConfig
from pert.training.loop import pretrain


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, peoples_daily_tagged) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    lines = ["".join(t.rsplit("/", 1)[0] for t in line.split())
             for line in peoples_daily_tagged.read_text(encoding="utf-8").splitlines()[:800]]
    text = root / "pd.txt"
    text.write_text("\n".join(lines) + "\n", encoding="utf-8")
    build_vocab(lines, root / "vocab.txt", vocab_size=3000)
    prepare(PrepareConfig(out=str(root / "prepared"), vocab=str(root / "vocab.txt"), inputs=[str(text)], workers=1))
    return root / "prepared"


def small_config(data: Path, out: Path, **kw) -> PretrainConfig:
    base = dict(data=str(data), out=str(out), preset="tiny", max_seq_len=32, batch_size=4, max_steps=6,
                lr=1e-3, warmup_steps=2, save_every=3, eval_every=3, log_every=1, eval_sequences=8,
                precision="fp32", num_workers=0)
    base.update(kw)
    return PretrainConfig(**base)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, corpus):
    full = pretrain(small_config(corpus, tmp_path / "full", num_workers=1))
    assert full["steps"] == 6
    # Resume from the step-3 checkpoint of the same run in a fresh folder.
    resumed_out = tmp_path / "resumed"
    (resumed_out / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step_00000003",
                    resumed_out / "checkpoints" / "step_00000003")
    resumed = pretrain(small_config(corpus, resumed_out, resume=True))
    assert resumed["steps"] == 6
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(resumed_out / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["eval"] == full["eval"]
    # the output holds what a user looks for
    for name in ("summary.json", "metrics.jsonl", "train_config.json", "final/config.json", "final/vocab.txt",
                 "final/pert_training.json"):
        assert (tmp_path / "full" / name).is_file(), name
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir()) == ["step_00000003",
                                                                                   "step_00000006"]
    # the realised shuffled/kept split is logged at every log step, in every evaluation and in the summary
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "eval"} and len([r for r in rows if r["split"] == "train"]) == 6
    for r in rows:
        assert r["share_shuffled"] + r["share_kept"] == pytest.approx(1.0)
    moved = sum(r["share_shuffled"] * r["predictions"] for r in rows) / sum(r["predictions"] for r in rows)
    # span scope (the default): 90% of the units shuffle, one-token units stay, so fewer than 90% of the tokens move
    assert json.loads((tmp_path / "full" / "train_config.json").read_text())["scope"] == "span"
    assert 0.5 < moved < 0.9  # a few hundred predictions with a 3,000-piece vocab (whole words as one piece)
    assert full["eval"]["share_kept"] > 0 and full["final_train"]["share_shuffled"] > 0
    # every held-out evaluation carries the collapse diagnostic and the baselines measured on the same tokens
    for r in [r for r in rows if r["split"] == "eval"] + [full["eval"]]:
        assert 0 <= r["own_shuffled"] <= 1 and r["neighbour_shuffled"] == max(r["left_shuffled"], r["right_shuffled"])
        assert 0 < r["uniform_shuffled"] < 1 and r["neighbour_shuffled"] > 0  # two-token words swap: a neighbour
    events = b"".join(p.read_bytes() for p in (tmp_path / "full" / "tensorboard").rglob("*") if p.is_file())
    assert b"train/share_kept" in events and b"eval/share_shuffled" in events and b"eval/own_shuffled" in events


def test_mlm_objective_runs_through_the_same_pipeline(tmp_path, corpus):
    summary = pretrain(small_config(corpus, tmp_path / "mlm", objective="mlm", max_steps=2, save_every=0,
                                    eval_every=0))
    assert summary["objective"] == "mlm" and summary["steps"] == 2
    from transformers import BertForMaskedLM

    BertForMaskedLM.from_pretrained(tmp_path / "mlm" / "final")  # the MLM head is BERT's


def test_two_processes_finish_with_identical_weights(tmp_path, corpus):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "pert.cli", "pretrain", "--data", str(corpus), "--out", str(tmp_path / "ddp"),
           "--preset", "tiny", "--max-seq-len", "32", "--batch-size", "4", "--max-steps", "4",
           "--save-every", "2", "--eval-every", "0", "--eval-sequences", "8", "--log-every", "1",
           "--precision", "fp32", "--num-workers", "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 4
    a, b = summary["replica_checksums"]
    assert a == b


def test_cli_help_and_config_errors(tmp_path, corpus, capsys):
    for verb in ("demo", "vocab", "prepare", "pretrain"):
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: 10\nlearning_rate: 0.1\n")
    assert main(["pretrain", "--config", str(bad), "--data", str(corpus), "--out", str(tmp_path / "o")]) == 2
    assert "unknown option(s) learning_rate" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(corpus), "--out", str(tmp_path / "o"), "--scope", "local"]) == 2
    assert "--scope must be span or global" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a prepared corpus" in capsys.readouterr().err


def test_dropout_is_set_in_the_model_and_saved_in_its_config(tmp_path, corpus, capsys):
    from pert.modeling import PertForPreTraining

    out = tmp_path / "d0"
    assert main(["pretrain", "--data", str(corpus), "--out", str(out), "--preset", "mini", "--dropout", "0",
                 "--max-seq-len", "32", "--batch-size", "4", "--max-steps", "2", "--eval-every", "0",
                 "--eval-sequences", "4", "--precision", "fp32", "--num-workers", "0"]) == 0
    config = json.loads((out / "final" / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["intermediate_size"]) == (2, 256, 4, 512)
    assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == 0.0
    model = PertForPreTraining.from_pretrained(out / "final")
    assert {m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    # without the option a new model keeps BERT's 0.1
    assert small_config(corpus, tmp_path / "x").dropout is None
    capsys.readouterr()
    assert main(["pretrain", "--data", str(corpus), "--out", str(tmp_path / "o"), "--dropout", "1"]) == 2
    assert "--dropout must be in [0, 1)" in capsys.readouterr().err


def test_shipped_pretraining_configs_are_valid():
    from pert.config import build_config

    files = sorted((Path(__file__).parents[1] / "configs" / "pretrain").glob("*.yaml"))
    assert files
    for f in files:
        cfg = build_config(PretrainConfig, f, {"data": "corpus", "out": "run"})
        assert cfg.max_seq_len <= 512


def test_a_second_run_into_the_same_folder_needs_resume(tmp_path, corpus):
    pretrain(small_config(corpus, tmp_path / "run", max_steps=1, warmup_steps=0, save_every=0, eval_every=0))
    with pytest.raises(ValueError, match="pass --resume"):
        pretrain(small_config(corpus, tmp_path / "run", max_steps=1, warmup_steps=0, save_every=0, eval_every=0))


@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGINT, False), (signal.SIGTERM, True)])
def test_a_signal_writes_a_checkpoint_that_resume_continues(tmp_path, corpus, sig, group):
    """A killed job (SIGTERM from a scheduler, Ctrl-C) loses no finished step: it checkpoints, then stops. Sent to
    the whole process group (pkill, a service manager), the data worker gets it too and must not end the run first."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pert.cli", "pretrain", "--data", str(corpus), "--out", str(out),
           "--preset", "tiny", "--max-seq-len", "32", "--batch-size", "4", "--max-steps", "100000",
           "--save-every", "0", "--eval-every", "0", "--eval-sequences", "8", "--log-every", "1",
           "--precision", "fp32", "--num-workers", "1" if group else "0"]
    # a shell that runs the tests in the background starts them with SIGINT ignored; the child gets the default back
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), start_new_session=group)
    try:
        metrics = out / "metrics.jsonl"
        deadline = time.time() + 300
        while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 3):
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()[-3000:] if proc.stderr else ""
            time.sleep(0.2)
        os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == (0 if sig == signal.SIGTERM else 130), err[-3000:]
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert len(ckpts) == 1
    step = int(ckpts[0].removeprefix("step_"))
    assert 3 <= step < 100000
    assert not list((out / "checkpoints").glob(".*"))  # no half-written checkpoint left behind
    resumed = pretrain(small_config(corpus, out, resume=True, max_steps=step + 2, save_every=0, eval_every=0,
                                    batch_size=4, warmup_steps=0))
    assert resumed["steps"] == step + 2


def test_position_baselines_on_a_hand_case():
    from accelerate import Accelerator

    from pert.objectives.perlm import KEPT, SHUFFLED
    from pert.training.loop import PositionBaselines

    # two sequences of 6 real tokens of 8 (mask), three moved tokens and one kept
    positions = torch.tensor([[2, 3, 5], [1, 4, -1]])
    labels = torch.tensor([[3, 2, 5], [2, 4, -100]])  # 2->3 right, 3->2 left; 1->2 right; kept at 4
    kinds = torch.tensor([[SHUFFLED, SHUFFLED, KEPT], [SHUFFLED, KEPT, 0]])
    mask = torch.tensor([[1] * 6 + [0] * 2, [1] * 6 + [0] * 2])
    # the model answers: own position for 2, the truth for 3, and own position again for the second row's 1
    logits = torch.full((2, 3, 8), -1.0)
    for b, p, answer in [(0, 0, 2), (0, 1, 2), (0, 2, 5), (1, 0, 1), (1, 1, 4), (1, 2, 0)]:
        logits[b, p, answer] = 1.0
    meter = PositionBaselines(torch.device("cpu"))
    meter.add(logits, positions, labels, kinds, mask)
    got = meter.read(Accelerator(cpu=True))
    assert got == pytest.approx({"own_shuffled": 2 / 3, "uniform_shuffled": 1 / 6, "left_shuffled": 1 / 3,
                                 "right_shuffled": 2 / 3, "neighbour_shuffled": 2 / 3})


def test_resume_of_a_finished_run_is_a_no_op_that_says_so(tmp_path, corpus, caplog):
    import logging

    out = tmp_path / "done"
    first = pretrain(small_config(corpus, out, max_steps=3, save_every=0, eval_every=0))
    files = {p: p.read_bytes() for p in [out / "summary.json", out / "metrics.jsonl", *(out / "final").iterdir()]}
    with caplog.at_level(logging.INFO, logger="pert.training.loop"):
        again = pretrain(small_config(corpus, out, max_steps=3, save_every=0, eval_every=0, resume=True))
    assert again == first and again["final_train"] is not None
    assert {p: p.read_bytes() for p in files} == files  # nothing rewritten
    assert any("finished at step 3 already: nothing to do" in r.getMessage() for r in caplog.records)
