"""Classification metrics: hand-computed cases and agreement with scikit-learn on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pert.metrics.classification import accuracy, binary_f1, matthews_corrcoef

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def test_hand_computed_binary_case() -> None:
    gold = [1, 1, 1, 0, 0]
    pred = [1, 1, 0, 1, 0]  # tp 2, fn 1, fp 1, tn 1
    assert accuracy(gold, pred) == pytest.approx(3 / 5)
    assert binary_f1(gold, pred) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert matthews_corrcoef(gold, pred) == pytest.approx((2 * 1 - 1 * 1) / math.sqrt(3 * 3 * 2 * 2))


def test_string_labels_and_positive_class() -> None:
    gold = ["1", "0", "1", "1"]
    pred = ["1", "1", "1", "0"]  # positive "1": tp 2, fp 1, fn 1
    assert binary_f1(gold, pred, positive="1") == pytest.approx(2 / 3)
    assert binary_f1(gold, pred, positive="0") == 0.0  # no true positives of "0"
    assert accuracy(gold, pred) == 0.5


def test_degenerate_mcc_is_zero_like_sklearn() -> None:
    gold, pred = [0, 1, 1, 0], [1, 1, 1, 1]
    assert matthews_corrcoef(gold, pred) == 0.0 == sklearn_metrics.matthews_corrcoef(gold, pred)


@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize("classes", [2, 3, 15])
def test_random_inputs_equal_sklearn(classes: int) -> None:
    rng = np.random.default_rng(classes)
    for _ in range(30):
        n = int(rng.integers(1, 300))
        gold = rng.integers(0, classes, n)
        pred = np.where(rng.random(n) < 0.6, gold, rng.integers(0, classes, n))
        assert accuracy(gold, pred) == pytest.approx(sklearn_metrics.accuracy_score(gold, pred))
        assert matthews_corrcoef(gold, pred) == pytest.approx(sklearn_metrics.matthews_corrcoef(gold, pred))
        if classes == 2:
            assert binary_f1(gold, pred) == pytest.approx(sklearn_metrics.f1_score(gold, pred, zero_division=0))


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="equally long"):
        accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="empty"):
        matthews_corrcoef([], [])
