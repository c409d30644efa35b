"""`pert study` end to end in miniature (2 arms, a few pre-training steps, 1 task, 1 seed): records, resume, report."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest
import yaml

import pert.tasks.loop as task_loop
import pert.training.loop as train_loop
from pert.cli import main
from pert.config import ConfigError, build_config
from pert.lock import output_lock
from pert.study import StudyConfig, plan
from pert.study.corpus import Shingles, evaluation_texts
from pert.study.report import one_row_per_step
from pert.study.run import _run_pretrain, run_study


@pytest.fixture(scope="module")
def study_yaml(tmp_path_factory, shared_data, peoples_daily_tagged) -> Path:
    root = tmp_path_factory.mktemp("study")
    lines = ["".join(t.rsplit("/", 1)[0] for t in line.split()[1:])
             for line in peoples_daily_tagged.read_text(encoding="utf-8").splitlines()[:1500]]
    dev = (shared_data / "zh" / "chnsenticorp" / "dev.tsv").read_text("utf-8").splitlines()[1:3]
    contaminated = [row.split("\t", 1)[1] for row in dev]  # panel dev text slipped into the corpus
    (root / "pd.txt").write_text("\n".join([*lines, *contaminated]) + "\n", encoding="utf-8")
    cfg = {
        "name": "mini", "corpus": [str(root / "pd.txt")],
        "vocab": str(shared_data / "vocab" / "bert-base-chinese" / "vocab.txt"),
        "pretrain": {"preset": "tiny", "max_seq_len": 64, "batch_size": 8, "max_steps": 12, "lr": 1e-3,
                     "warmup_steps": 2, "eval_every": 6, "save_every": 6, "eval_sequences": 16, "log_every": 3,
                     "precision": "fp32", "num_workers": 0},
        "arms": {"perlm": {"objective": "perlm"}, "mlm": {"objective": "mlm"}},
        "tasks": {"chnsenticorp": {"report": "dev", "data": str(shared_data / "zh" / "chnsenticorp"),
                                   "lr": 1e-3, "batch_size": 16, "max_seq_len": 64, "max_steps": 8, "epochs": 1,
                                   "max_train_examples": 128, "max_eval_examples": 64, "splits": ["dev"]}},
        "seeds": [1],
        "notes": ["preset tiny: measured, not assumed"],
    }
    path = root / "mini.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def sigterm_at(make_bar, step: int):
    """A progress-bar factory whose bars send this process SIGTERM once they reach ``step`` (the end of a sitting)."""
    def make(*args, **kwargs):
        bar = make_bar(*args, **kwargs)
        update = bar.update

        def update_then_stop(n: int = 1) -> None:
            update(n)
            if bar.n == step:
                os.kill(os.getpid(), signal.SIGTERM)
        bar.update = update_then_stop
        return bar
    return make


def test_miniature_study_runs_resumes_and_reports(tmp_path, study_yaml, capsys, monkeypatch):
    out, work = tmp_path / "out", tmp_path / "work"
    assert main(["study", "run", str(study_yaml), "--out", str(out), "--work", str(work)]) == 0
    cfg = build_config(StudyConfig, study_yaml)
    cells = [c.id for c in plan(cfg)]
    assert cells == ["data", "pretrain/perlm", "pretrain/mlm", "finetune/perlm/chnsenticorp/seed-1",
                     "finetune/mlm/chnsenticorp/seed-1"]
    records = {json.loads(f.read_text())["cell"]: json.loads(f.read_text()) for f in (out / "records").glob("*.json")}
    assert set(records) == set(cells)
    data = records["data"]["corpus"]["sources"][cfg.corpus[0]]
    assert data["dropped_documents"] >= 2  # the two ChnSentiCorp dev reviews never reach pre-training
    pre = records["pretrain/perlm"]
    assert pre["summary"]["steps"] == 12 and pre["config"]["scope"] == "span"  # the spec's default
    assert {"own_shuffled", "neighbour_shuffled", "uniform_shuffled"} <= set(pre["summary"]["eval"])
    assert records["pretrain/mlm"]["config"]["objective"] == "mlm"
    assert {r["split"] for r in pre["curves"]} == {"train", "eval"}
    ft = records["finetune/perlm/chnsenticorp/seed-1"]
    assert 0 <= ft["scores"]["dev"]["accuracy"] <= 100 and ft["steps"] == 8
    assert ft["versions"]["torch"] and ft["seconds"] > 0
    # records are committed: no path of the machine that ran them, the work folder is "<work>"
    assert pre["config"]["data"] == "<work>/prepared" and ft["config"]["model"] == "<work>/pretrain/perlm/final"
    assert not any(str(tmp_path) in f.read_text() for f in (out / "records").glob("*.json"))

    # an interrupted pre-training continues from its last checkpoint and ends as the uninterrupted run did
    arm = work / "pretrain" / "perlm"
    shutil.rmtree(arm / "final")
    (arm / "summary.json").unlink()
    shutil.rmtree(arm / "checkpoints" / "step_00000012")
    resumed = _run_pretrain(cfg, work, "perlm")["summary"]
    assert resumed["steps"] == 12 and resumed["eval"] == pre["summary"]["eval"]

    # a pre-training stopped early (time budget, SIGTERM) is not a finished cell: it resumes on the next run
    early = build_config(StudyConfig, None, {**yaml.safe_load(study_yaml.read_text("utf-8")), "arms": {
        "perlm": {"objective": "perlm", "max_minutes": 1e-4}, "mlm": {"objective": "mlm"}}})
    (work / "early").mkdir()
    (work / "early" / "prepared").symlink_to(work / "prepared")
    with pytest.raises(KeyboardInterrupt):
        _run_pretrain(early, work / "early", "perlm")
    assert 0 < json.loads((work / "early" / "pretrain" / "perlm" / "summary.json").read_text())["steps"] < 12
    assert _run_pretrain(cfg, work / "early", "perlm")["summary"]["steps"] == 12

    # a re-run skips every finished cell; a lost record runs that cell (and only it) again; --cells picks which
    before = {f.name: f.read_text() for f in (out / "records").glob("*.json")}
    (out / "records" / "finetune__mlm__chnsenticorp__seed-1.json").unlink()
    (out / "records" / "finetune__perlm__chnsenticorp__seed-1.json").unlink()
    capsys.readouterr()
    run = ["study", "run", str(study_yaml), "--out", str(out), "--work", str(work)]
    assert main([*run, "--cells", "finetune/mlm/*", "data"]) == 0
    err = capsys.readouterr().err
    assert "finetune/mlm/chnsenticorp/seed-1: 3 of 5 cells done" in err and "pretrain/perlm:" not in err
    assert "finetune/perlm" not in err and "all 2 matching cells done (1 others left)" in err
    assert not (out / "records" / "finetune__perlm__chnsenticorp__seed-1.json").exists()
    assert main([*run, "--cells", "finetune/bert/*"]) == 2
    assert "--cells finetune/bert/*: no cell of study" in capsys.readouterr().err
    (out / "records" / "finetune__perlm__chnsenticorp__seed-1.json").write_text(
        before["finetune__perlm__chnsenticorp__seed-1.json"])
    after = {f.name: f.read_text() for f in (out / "records").glob("*.json")}
    assert {k: v for k, v in after.items() if "mlm__chnsenticorp" not in k} == \
           {k: v for k, v in before.items() if "mlm__chnsenticorp" not in k}

    # several workers share a study: a cell another worker holds is left to it, the rest run here, and this
    # worker waits for the held cell's record instead of running it twice
    records_dir = out / "records"
    files = {arm: records_dir / f"finetune__{arm}__chnsenticorp__seed-1.json" for arm in ("perlm", "mlm")}
    saved = {arm: f.read_text() for arm, f in files.items()}
    for f in files.values():
        f.unlink()
    other_worker_done = threading.Event()

    def other_worker() -> None:  # holds the perlm cell until this worker has run the mlm one, then "finishes" it
        with output_lock(work / "cells" / "finetune__perlm__chnsenticorp__seed-1"):
            started.set()
            deadline = time.monotonic() + 300
            while not files["mlm"].is_file() and time.monotonic() < deadline:
                time.sleep(0.05)
            files["perlm"].write_text(saved["perlm"])
        other_worker_done.set()

    started = threading.Event()
    thread = threading.Thread(target=other_worker)
    thread.start()
    started.wait()
    capsys.readouterr()
    run_study(cfg, out, work, poll_s=0.1)
    thread.join()
    err = capsys.readouterr().err
    assert "finetune/mlm/chnsenticorp/seed-1: 3 of 5 cells done" in err and "finetune/perlm" not in err
    assert other_worker_done.is_set()
    assert files["perlm"].read_text() == saved["perlm"]
    # same seed, same score, whichever worker runs it
    assert json.loads(files["mlm"].read_text())["scores"] == json.loads(saved["mlm"])["scores"]

    # a fine-tuning cell stopped by SIGTERM (the end of a sitting) keeps its checkpoint; the next run continues it
    # and ends exactly as the uninterrupted cell did
    real_bar = task_loop.progress_bar
    files["perlm"].unlink()
    monkeypatch.setattr(task_loop, "progress_bar", sigterm_at(real_bar, 4))
    assert main([*run, "--cells", "finetune/perlm/*"]) == 130 and not files["perlm"].exists()
    monkeypatch.setattr(task_loop, "progress_bar", real_bar)
    capsys.readouterr()
    assert main([*run, "--cells", "finetune/perlm/*"]) == 0
    resumed = json.loads(files["perlm"].read_text())
    assert resumed["resumed"] and resumed["steps"] == 8
    assert resumed["scores"] == json.loads(saved["perlm"])["scores"]
    assert resumed["config"] == json.loads(saved["perlm"])["config"]
    files["perlm"].write_text(saved["perlm"])

    # the report comes from the records alone: a copy without the work folder gives the same report
    assert main(["study", "report", str(out)]) == 0
    report = (tmp_path / "out.md").read_text("utf-8")
    alone = tmp_path / "copy" / "out"
    shutil.copytree(out, alone, ignore=shutil.ignore_patterns("*.png"))
    shutil.rmtree(work)
    assert main(["study", "report", str(alone)]) == 0
    assert (tmp_path / "copy" / "out.md").read_text("utf-8") == report
    acc = [records[f"finetune/{a}/chnsenticorp/seed-1"]["scores"]["dev"]["accuracy"] for a in ("perlm", "mlm")]
    assert f"| perlm | {acc[0]:.1f} ({acc[0]:.1f}) |" in report
    assert f"| chnsenticorp | {acc[0] - acc[1]:+.1f} |" in report
    assert "- preset tiny: measured, not assumed" in report
    # throughput is the median of the logged intervals: pauses between sittings do not count as slowness
    rates = [r["tokens_per_s"] for r in pre["curves"] if r["split"] == "train"]
    assert f" min | {statistics.median(rates):,.0f} | " in report  # the config's notes say why it is what it is
    assert (alone / "pretraining.png").is_file() and (alone / "downstream.png").is_file()
    ev = pre["summary"]["eval"]
    assert (f"- **pre-training, perlm** (PerLM, span scope): on held-out text it put {ev['acc_shuffled']:.1%} of "
            f"the moved tokens' answers at the right position, against {ev['uniform_shuffled']:.1%} for a uniform "
            f"guess over each sequence's tokens and {ev['neighbour_shuffled']:.1%} for the better neighbour guess "
            f"(the token beside me) on the same tokens; it answered 'own position' for {ev['own_shuffled']:.1%} of "
            "the moved tokens") in report
    assert f"| {100 * ev['neighbour_shuffled']:.1f}% | {100 * ev['own_shuffled']:.1f}% |" in report
    # a pre-training's time counts every sitting it ran in, not only the one that finished it
    rec_file = alone / "records" / "pretrain__perlm.json"
    rec = json.loads(rec_file.read_text("utf-8"))
    rec["seconds"], rec["summary"]["seconds"] = 1.0, 36000.0
    rec["versions"]["transformers"] = "0.0.1"  # cells of one study may run under different versions: all are listed
    rec_file.write_text(json.dumps(rec), encoding="utf-8")
    assert main(["study", "report", str(alone)]) == 0
    now = [json.loads(f.read_text("utf-8")) for f in (alone / "records").glob("*.json")]
    total = sum(r["summary"]["seconds"] if r["kind"] == "pretrain" else r["seconds"] for r in now)
    assert total > 36000
    report = (tmp_path / "copy" / "out.md").read_text("utf-8")
    assert f"Wall time of the finished cells, summed: {total / 3600:.1f} h." in report
    others = {r["versions"]["transformers"] for r in now} - {"0.0.1"}
    assert len(others) == 1
    assert f"transformers {others.pop()} ({len(now) - 1} of {len(now)} cells), 0.0.1 (1 of {len(now)} cells);" in report

    # records travel, work folders may not: in a new work folder the data cell's outputs are rebuilt (and checked
    # against its record), and so is an arm's model that a remaining cell needs: pre-trained again with the recorded
    # recipe, it must end at the recorded held-out loss, else the cell is refused in one line naming the way out
    (alone / "records" / "finetune__mlm__chnsenticorp__seed-1.json").unlink()
    mlm_file = alone / "records" / "pretrain__mlm.json"
    mlm_record = mlm_file.read_text("utf-8")
    tampered = json.loads(mlm_record)
    tampered["summary"]["eval"]["loss"] *= 1.5
    mlm_file.write_text(json.dumps(tampered), encoding="utf-8")
    capsys.readouterr()
    assert main(["study", "run", str(study_yaml), "--out", str(alone), "--work", str(tmp_path / "work2")]) == 2
    err = capsys.readouterr().err
    assert "lacks the data cell's outputs" in err and (tmp_path / "work2" / "prepared" / "manifest.json").is_file()
    assert "lacks the mlm arm's model (pretrain/mlm is recorded); making it again" in err
    assert f"{mlm_file}: the rebuilt mlm model ends at held-out loss" in err and "delete the record" in err
    assert not (tmp_path / "work2" / "pretrain" / "mlm").exists()  # the rejected model is not left to be used
    mlm_file.write_text(mlm_record, encoding="utf-8")
    # a rebuild stopped by SIGTERM leaves a checkpoint and a final/ of its last step: the next run resumes the
    # rebuild instead of fine-tuning that partial model
    real_progress = train_loop.progress
    monkeypatch.setattr(train_loop, "progress", sigterm_at(real_progress, 5))
    assert main(["study", "run", str(study_yaml), "--out", str(alone), "--work", str(tmp_path / "work2")]) == 130
    monkeypatch.setattr(train_loop, "progress", real_progress)
    partial = tmp_path / "work2" / "pretrain" / "mlm"
    assert json.loads((partial / "summary.json").read_text("utf-8"))["steps"] == 5
    assert (partial / "final" / "config.json").is_file()
    assert not (alone / "records" / "finetune__mlm__chnsenticorp__seed-1.json").exists()
    assert main(["study", "run", str(study_yaml), "--out", str(alone), "--work", str(tmp_path / "work2")]) == 0
    assert json.loads((partial / "summary.json").read_text("utf-8"))["steps"] == 12
    rebuilt = json.loads((tmp_path / "work2" / "pretrain" / "mlm" / "rebuilt.json").read_text("utf-8"))
    assert rebuilt["rebuilt_loss"] == pytest.approx(rebuilt["recorded_loss"], rel=0.02)
    assert mlm_file.read_text("utf-8") == mlm_record  # the record is not rewritten
    again = json.loads((alone / "records" / "finetune__mlm__chnsenticorp__seed-1.json").read_text())
    assert again["scores"] == records["finetune/mlm/chnsenticorp/seed-1"]["scores"]
    # the cell says that its encoder was a rebuild, and the report names it among the limits
    assert again["rebuilt_model"] == {k: rebuilt[k] for k in ("recorded_loss", "rebuilt_loss", "recorded_precision",
                                                               "rebuilt_precision")}
    assert "rebuilt_model" not in records["finetune/mlm/chnsenticorp/seed-1"]
    assert main(["study", "report", str(alone)]) == 0
    assert (f"mlm (chnsenticorp/seed-1): rebuilt in fp32, held-out loss {rebuilt['rebuilt_loss']:.4f}, recorded "
            f"{rebuilt['recorded_loss']:.4f} in fp32") in alone.with_suffix(".md").read_text("utf-8")


def test_bad_study_configs_name_the_field(tmp_path, study_yaml):
    base = yaml.safe_load(study_yaml.read_text("utf-8"))
    cases = [({"arms": {"perlm": {"objective": "perlm", "bogus": 1}, "mlm": {}}}, "arms.perlm: unknown option"),
             ({"corpus": ["nowhere:thing"]}, "is neither a path nor one of"),
             ({"tasks": {"chnsenticorp": {"data": "x"}}}, "needs report: dev or test"),
             ({"compare": ["perlm", "bert"]}, "--compare must name two or more distinct arms"),
             ({"pretrain": {**base["pretrain"], "max_seq_len": 4}}, "--max-seq-len must be between")]
    for change, message in cases:
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump({**base, **change}), encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            build_config(StudyConfig, path)


def test_a_task_under_a_second_name_is_held_out_once(tmp_path, study_yaml):
    base = yaml.safe_load(study_yaml.read_text("utf-8"))
    spec = base["tasks"]["chnsenticorp"]
    one = evaluation_texts(build_config(StudyConfig, None, base), tmp_path)
    both = evaluation_texts(build_config(StudyConfig, None, {**base, "tasks": {
        "chnsenticorp": spec, "chnsenticorp-long": {**spec, "task": "chnsenticorp", "max_steps": 16}}}), tmp_path)
    assert both == one and len(one["chnsenticorp"]) == 2400  # 1,200 dev and 1,200 test reviews


def test_shingles_find_shared_runs_only():
    held = Shingles(["今天北京的天气非常好，适合出门散步。"], 8)
    assert "据报道今天北京的天气非常好" in held
    assert "今天 北京的天 气非常好" in held  # whitespace does not hide a copy
    assert "今天上海的天气非常差" not in held


def test_a_task_no_arm_learned_is_said_to_separate_nothing():
    from pert.study.report import _reading, _verdict

    cfg = {"arms": {"perlm": {}, "mlm": {}, "random": {"init": "random"}}, "tasks": {"wor": {}, "ner": {}}}
    scores = {"wor": {"perlm": {1: 0.0, 2: 0.0}, "mlm": {1: 0.0, 2: 0.0}, "random": {1: 0.0}},
              "ner": {"perlm": {1: 3.0, 2: 5.0}, "mlm": {1: 10.0, 2: 12.0}, "random": {1: 14.0}}}
    lines = _reading(cfg, scores, "perlm", "mlm")
    assert lines[0] == ("- **wor**: every finished cell of every arm scores 0.0: within this budget no arm learned "
                        "the task, so it cannot tell the arms apart.")
    assert _verdict(cfg, scores, "perlm", "mlm") == (
        "**In short** (a side counts when it holds in every seed, at least two, by more than the seed-to-seed "
        "spread): perlm is below mlm on 1 of 2 tasks (ner); 1 of 2 (wor) does not separate them.")
    assert lines[1].startswith("- **ner**: perlm − mlm = -7.0 on average, positive in 0 of 2 seeds; the seed-to-seed "
                               "spread is 1.4, so the difference is larger than the noise of fine-tuning; over no "
                               "pre-training: perlm -10.0, mlm -3.0")
    # the compared arms tie while the floor arm scrapes a point: a tie, not a difference "within the noise"
    scores["wor"]["random"] = {1: 0.0, 2: 0.56}
    assert _reading(cfg, scores, "perlm", "mlm")[0] == (
        "- **wor**: perlm and mlm score the same in every seed (0.0), so the task does not separate them within "
        "this budget; the best cell of any arm scores 0.6 (random, seed 2).")


def test_records_rewrite_only_paths_inside_the_work_folder(tmp_path, monkeypatch):
    from pert.study.run import _portable

    monkeypatch.chdir(tmp_path)
    work = Path("work")
    record = {"num_workers": 0, "data": "work/prepared", "out": str(tmp_path / "work" / "pretrain"),
              "note": "a network at work", "inputs": ["work", "workshop/x", "../work/y"], "work": "homework"}
    assert _portable(record, work) == {"num_workers": 0, "data": "<work>/prepared", "out": "<work>/pretrain",
                                       "note": "a network at work", "inputs": ["<work>", "workshop/x", "../work/y"],
                                       "work": "homework"}


def test_report_refuses_records_that_do_not_belong_to_the_config(tmp_path, capsys):
    src = Path(__file__).parents[1] / "docs" / "study"
    out = tmp_path / "study"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("*.png"))
    assert main(["study", "report", str(out)]) == 0
    ft, pre = out / "records" / "finetune__mlm__chnsenticorp__seed-1.json", out / "records" / "pretrain__mlm.json"
    cases = [(pre, '"num_workers"', '"num_<work>ers"', "key 'num_<work>ers' holds a rewritten path"),
             (ft, '"lr": 0.0002', '"lr": 0.0003', "config field 'lr' is 0.0003, the study config says 0.0002"),
             (pre, '"scope": "global"', '"scope": "span"', None),  # an MLM record: scope is not its recipe
             (ft, '"cell": "finetune/mlm/chnsenticorp/seed-1"', '"cell": "finetune/mlm/chnsenticorp/seed-9"',
              "cell 'finetune/mlm/chnsenticorp/seed-9' is not in the plan")]
    for f, old, new, message in cases:
        good = f.read_text("utf-8")
        assert old in good
        f.write_text(good.replace(old, new), encoding="utf-8")
        capsys.readouterr()
        assert main(["study", "report", str(out)]) == (0 if message is None else 2)
        err = capsys.readouterr().err.strip()
        assert message is None or (message in err and len(err.splitlines()) == 1), err
        f.write_text(good, encoding="utf-8")


def test_an_arm_that_has_not_run_is_missing_not_a_tie():
    from pert.study.report import _verdict

    cfg = {"arms": {"perlm": {}, "mlm": {}}, "tasks": {"wor": {}, "ner": {}}}
    scores = {"wor": {"perlm": {}, "mlm": {1: 0.0, 2: 0.0}}, "ner": {"perlm": {}, "mlm": {1: 10.0, 2: 12.0}}}
    assert _verdict(cfg, scores, "perlm", "mlm") == ("**In short**: no task has finished cells of both perlm and mlm "
                                                     "yet; nothing to compare.")
    scores["ner"]["perlm"] = {1: 3.0, 2: 5.0}
    assert _verdict(cfg, scores, "perlm", "mlm").endswith("perlm is below mlm on 1 of 2 tasks (ner); 1 of 2 (wor) has "
                                                           "not run for both yet.")


def test_a_step_logged_twice_counts_once_the_later_row():
    rows = [{"split": "train", "step": 50, "loss": 5.0}, {"split": "train", "step": 100, "loss": 4.0},
            {"split": "train", "step": 150, "loss": 3.9},  # killed before the next checkpoint (step 100)
            {"split": "train", "step": 100, "loss": 4.1}, {"split": "eval", "step": 100, "loss": 4.2},
            {"split": "train", "step": 150, "loss": 3.8}]
    assert one_row_per_step(rows) == [rows[0], rows[3], rows[4], rows[5]]
