"""Entity-level NER scores: strict seqeval semantics on hand cases, and a reference count on random tags."""

from __future__ import annotations

import random

import pytest

from pert.metrics.ner import entities, ner_scores


def test_strict_bio_hand_case() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "I-ORG", "O"]]
    # predicted entities: PER(0,2) correct; the stray I-LOC is no entity in strict mode; ORG(0,2) wrong span
    s = ner_scores(gold, pred, per_type=True)
    assert s["precision"] == pytest.approx(1 / 2)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert s["f1_PER"] == 1.0 and s["f1_LOC"] == 0.0 and s["f1_ORG"] == 0.0


def test_entities_strict_bio_and_bioes() -> None:
    assert entities(["I-PER", "B-LOC", "I-LOC", "I-PER", "B-X"]) == [("LOC", 1, 3), ("X", 4, 5)]
    assert entities(["B-PER", "I-LOC"]) == [("PER", 0, 1)]
    assert entities(["S-PER", "B-LOC", "I-LOC", "E-LOC", "B-ORG", "O", "E-ORG"], "BIOES") == [
        ("PER", 0, 1), ("LOC", 1, 4)]
    with pytest.raises(ValueError, match="not O or"):
        entities(["X-PER"])


def _reference(gold: list[list[str]], pred: list[list[str]], scheme: str) -> tuple[float, float, float]:
    g = {(i, *e) for i, s in enumerate(gold) for e in entities(s, scheme)}
    p = {(i, *e) for i, s in enumerate(pred) for e in entities(s, scheme)}
    tp = len(g & p)
    prec = tp / len(p) if p else 0.0
    rec = tp / len(g) if g else 0.0
    return prec, rec, (2 * prec * rec / (prec + rec) if tp else 0.0)


@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_random_tags_equal_exact_match_reference(scheme: str) -> None:
    rng = random.Random(7)
    prefixes = "BI" if scheme == "BIO" else "BIES"
    tags = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC") for p in prefixes]
    for _ in range(40):
        gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(rng.randint(1, 8))]
        pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in gold]
        s = ner_scores(gold, pred, scheme=scheme)
        assert (s["precision"], s["recall"], s["f1"]) == pytest.approx(_reference(gold, pred, scheme))


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="sentence 0"):
        ner_scores([["O", "O"]], [["O"]])
