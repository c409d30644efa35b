"""WOR metrics against hand-computed values (definitions in docs/wor.md)."""

from __future__ import annotations

import pytest

from pert.metrics.wor import wor_scores

# (source = corrupted input, target = original, prediction); strings are token (character) sequences.
CASES = [
    ("bacd", "abcd", "abcd"),  # fixed: detection hit, correction hit, 2 position hits
    ("xzyw", "xyzw", "zxyw"),  # wrong place: changed {0,1} but gold {1,2}; no hit anywhere
    ("efgh", "efgh", "fegh"),  # negative changed: a false positive (2 changed positions)
    ("ijkl", "ijkl", "ijkl"),  # negative kept
    ("pqrs", "qprs", "pqrs"),  # missed (2 gold positions)
    ("abc", "bca", "cab"),     # right positions, wrong order: detection hit only
    ("ab", "ba", "ba"),        # fixed
    ("kl", "lk", "kl"),        # missed
]


def test_hand_computed() -> None:
    s = wor_scores(*zip(*CASES, strict=True))
    assert (s["sentences"], s["positive"], s["predicted_positive"]) == (8, 6, 5)
    assert s["detection_precision"] == pytest.approx(3 / 5)
    assert s["detection_recall"] == pytest.approx(3 / 6)
    assert s["detection_f1"] == pytest.approx(6 / 11)
    assert s["correction_precision"] == pytest.approx(2 / 5)
    assert s["correction_recall"] == pytest.approx(2 / 6)
    assert s["correction_f1"] == pytest.approx(4 / 11)
    assert (s["moved_tokens"], s["changed_tokens"]) == (13, 11)
    assert s["position_precision"] == pytest.approx(4 / 11)
    assert s["position_recall"] == pytest.approx(4 / 13)
    assert s["position_f1"] == pytest.approx(1 / 3)
    assert s["sentence_accuracy"] == pytest.approx(3 / 8)


def test_copy_baseline_and_perfect() -> None:
    src, tgt, _ = zip(*CASES, strict=True)
    copy = wor_scores(src, tgt, src)
    assert copy["correction_f1"] == copy["detection_f1"] == copy["position_f1"] == 0.0
    assert copy["sentence_accuracy"] == pytest.approx(2 / 8)  # the negatives
    perfect = wor_scores(src, tgt, tgt)
    assert perfect["correction_f1"] == perfect["detection_f1"] == perfect["position_f1"] == 1.0


def test_equal_tokens_count_by_surface_and_errors() -> None:
    # 哈哈 swapped within itself is no visible change; a token list scores like a string.
    s = wor_scores([["我", "们", "走"]], [["们", "我", "走"]], [["们", "我", "走"]])
    assert s["correction_f1"] == 1.0 and s["position_f1"] == 1.0
    with pytest.raises(ValueError, match="equally many"):
        wor_scores(["ab"], ["ba", "ab"], ["ab"])
    with pytest.raises(ValueError, match="empty"):
        wor_scores([], [], [])
