"""Reports: max (avg) cells, per-seed tables and the merged models x tasks table, on hand-made results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pert.report import cell, merge_runs, summarize, write_run_report


def _record(task: str, model: str, main: str) -> dict:
    return {"task": task, "model_name": model, "main_metric": main, "task_options": {}, "config": {"lr": 2e-5},
            "versions": {"pert": "test"}}


def _seed(seed: int, **splits: dict) -> dict:
    return {"seed": seed, "best_step": 10 * seed, "steps": 30, "train_seconds": 1.0, **splits}


def test_cell_is_max_then_average() -> None:
    assert cell([94.0, 95.25, 93.5]) == "95.2 (94.2)"
    assert cell([80.0, 86.0], digits=2) == "86.00 (83.00)"
    assert cell([77.7]) == "77.7"
    with pytest.raises(ValueError):
        cell([])


def test_run_report_tables(tmp_path: Path) -> None:
    seeds = [_seed(1, dev={"f1": 90.0, "accuracy": 85.0}, test={"f1": 88.0, "accuracy": 84.0}),
             _seed(2, dev={"f1": 86.0, "accuracy": 87.0}, test={"f1": 89.0, "accuracy": 83.0})]
    result = write_run_report(tmp_path, _record("mrpc", "pert-base", "f1"), seeds)
    assert result["summary"] == summarize(seeds)
    assert result["summary"]["dev"]["f1"] == {"max": 90.0, "avg": 88.0, "values": [90.0, 86.0]}
    md = (tmp_path / "results.md").read_text()
    assert "| dev | f1 | 90.0 (88.0) | 90.00 | 86.00 |" in md
    assert "| test | accuracy | 84.0 (83.5) | 84.00 | 83.00 |" in md
    assert json.loads((tmp_path / "results.json").read_text())["seeds"][1]["best_step"] == 20


def test_merge_runs_models_by_tasks(tmp_path: Path) -> None:
    runs = {
        "bert-mrpc": ("mrpc", "bert", "f1", [{"f1": 88.0, "accuracy": 84.0}, {"f1": 87.0, "accuracy": 82.0}]),
        "pert-mrpc": ("mrpc", "pert", "f1", [{"f1": 90.0, "accuracy": 86.0}, {"f1": 89.0, "accuracy": 85.0}]),
        "pert-cola": ("cola", "pert", "mcc", [{"mcc": 60.0, "accuracy": 82.0}, {"mcc": 58.0, "accuracy": 81.0}]),
    }
    for name, (task, model, main, devs) in runs.items():
        (tmp_path / "all" / name).mkdir(parents=True)
        write_run_report(tmp_path / "all" / name, _record(task, model, main),
                         [_seed(i + 1, dev=d) for i, d in enumerate(devs)])
    markdown, data = merge_runs([tmp_path / "all"])
    lines = markdown.splitlines()
    assert lines[0] == "| model | mrpc dev (f1) | cola dev (mcc) |"
    assert "| bert | 88.0 (87.5) | - |" in lines
    assert "| pert | 90.0 (89.5) | 60.0 (59.0) |" in lines
    assert data["models"]["pert"]["cola dev (mcc)"]["values"] == [60.0, 58.0]
    # a run folder named twice, directly and through its parent, counts once
    again, _ = merge_runs([tmp_path / "all", tmp_path / "all" / "pert-cola", f"{tmp_path}/all/pert-cola/"])
    assert again == markdown
    markdown, _ = merge_runs([tmp_path / "all"], metric="accuracy")
    assert "| pert | 86.0 (85.5) | 82.0 (81.5) |" in markdown.splitlines()
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        merge_runs([tmp_path / "nothing-here"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no results.json"):
        merge_runs([tmp_path / "empty"])


def test_default_model_name_of_generic_folders() -> None:
    from pert.tasks.loop import default_model_name

    assert default_model_name("runs/pert-tiny/final") == "pert-tiny/final"
    assert default_model_name("run/checkpoints/step_00001000") == "checkpoints/step_00001000"
    assert default_model_name("models/pert-base") == "pert-base"
