"""configs/finetune/<task>.yaml carry exactly the defaults each task declares in code."""

from __future__ import annotations

from pathlib import Path

import pytest

from pert.config import build_config, load_yaml
from pert.tasks import FinetuneConfig, get_task

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "finetune"
FILES = sorted(CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_yaml_matches_task_defaults(path: Path) -> None:
    data = load_yaml(path)
    task = get_task(data["task"])
    assert data["task"] == path.stem
    d = task.defaults
    for key in ("lr", "epochs", "batch_size", "max_seq_len"):
        if key in data:
            assert data[key] == pytest.approx(getattr(d, key)), key
    cfg = build_config(FinetuneConfig, path, {"model": "m", "data": "d", "out": "o"})
    assert cfg.resolved(d).lr == pytest.approx(d.lr)


def test_hfl_learning_rates() -> None:
    """HFL's published best learning rates (Chinese-BERT-wwm README) for the Chinese classification tasks."""
    expected = {"chnsenticorp": 2e-5, "lcqmc": 2e-5, "xnli": 3e-5, "bq": 3e-5}
    assert {name: get_task(name).defaults.lr for name in expected} == expected
