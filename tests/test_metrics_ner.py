"""Entity-level NER scores: conlleval's chunking by default, strict IOB2/IOBES as an option.

Hand cases, then perturbed predictions over the real CoNLL-2003 dev sentences scored against seqeval
in both modes and against a line-by-line port of the counting in CoNLL's ``conlleval`` script.
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import pytest
from seqeval.metrics import classification_report
from seqeval.scheme import IOB2, IOBES

from pert.metrics.ner import entities, ner_scores
from pert.tasks import get_task

# --- hand cases ----------------------------------------------------------------------------------


def test_issue_cases_conlleval_and_strict() -> None:
    gold, pred = [["B-PER", "I-PER", "O"]], [["I-PER", "I-PER", "O"]]
    assert ner_scores(gold, pred)["f1"] == 1.0
    assert ner_scores(gold, pred, mode="strict")["f1"] == 0.0
    gold, pred = [["O", "B-LOC", "O"]], [["O", "B-LOC", "I-PER"]]
    assert ner_scores(gold, pred)["precision"] == 0.5  # I-PER after LOC starts a PER entity
    assert ner_scores(gold, pred, mode="strict")["precision"] == 1.0


def test_strict_bio_hand_case() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]]
    pred = [["B-PER", "I-PER", "O", "I-LOC"], ["B-ORG", "I-ORG", "O"]]
    # strict: PER(0,2) correct; the stray I-LOC is no entity; ORG(0,2) wrong span -> P 1/2, R 1/3
    s = ner_scores(gold, pred, per_type=True, mode="strict")
    assert (s["precision"], s["recall"]) == (pytest.approx(1 / 2), pytest.approx(1 / 3))
    assert s["f1_PER"] == 1.0 and s["f1_LOC"] == 0.0 and s["f1_ORG"] == 0.0
    # conlleval: the I-LOC after O is LOC(3,4), correct -> P 2/3, R 2/3
    s = ner_scores(gold, pred, per_type=True)
    assert (s["precision"], s["recall"], s["f1_LOC"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3), 1.0)


def test_entities_in_both_modes() -> None:
    tags = ["I-PER", "B-LOC", "I-LOC", "I-PER", "B-X"]
    assert entities(tags, mode="strict") == [("LOC", 1, 3), ("X", 4, 5)]
    assert entities(tags) == [("PER", 0, 1), ("LOC", 1, 3), ("PER", 3, 4), ("X", 4, 5)]
    assert entities(["B-PER", "I-LOC"], mode="strict") == [("PER", 0, 1)]
    assert entities(["B-PER", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 2)]
    assert entities(["S-PER", "B-LOC", "I-LOC", "E-LOC", "B-ORG", "O", "E-ORG"], "BIOES", "strict") == [
        ("PER", 0, 1), ("LOC", 1, 4)]
    with pytest.raises(ValueError, match="not O or"):
        entities(["X-PER"])
    with pytest.raises(ValueError, match="not O or B/I-"):
        entities(["S-PER"], "BIO")
    with pytest.raises(ValueError, match="unknown NER scoring mode"):
        entities(["O"], mode="loose")


def test_bad_input_is_one_line() -> None:
    with pytest.raises(ValueError, match="sentence 0"):
        ner_scores([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 1, predicted tag 0: tag 'B_PER'"):
        ner_scores([["O"], ["O"]], [["O"], ["B_PER"]])


def test_tasks_default_to_conlleval_and_take_mode_strict() -> None:
    gold, pred = ["B-PER", "I-PER", "O"], ["I-PER", "I-PER", "O"]
    for name in ("conll2003", "msra-ner", "peoples-daily-ner", "ner"):
        task = get_task(name)
        assert task.mode == "conlleval"
        examples = [type("E", (), {"tags": gold})()]
        assert task.compute_metrics(examples, [pred])["f1"] == 100.0
        assert get_task(name, ["mode=strict"]).compute_metrics(examples, [pred])["f1"] == 0.0
    with pytest.raises(ValueError, match="task conll2003: mode must be one of conlleval, strict"):
        get_task("conll2003", ["mode=loose"])


# --- conlleval's counting, ported line by line (B/I/E tags; "O" between sentences) -------------------


def _end_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    end = (prev_tag, tag) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O"), ("E", "E"), ("E", "I"), ("E", "O")}
    return end or (prev_tag not in ("O", ".") and prev_type != type_) or prev_tag in ("[", "]")


def _start_of_chunk(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    start = (prev_tag, tag) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I"), ("E", "E"), ("E", "I"), ("O", "E")}
    return start or (tag not in ("O", ".") and prev_type != type_) or tag in ("[", "]")


def conlleval(gold: list[list[str]], pred: list[list[str]]) -> tuple[float, float, float]:
    """(precision, recall, F1) as fractions, counted as conlleval.pl counts them."""
    def split(tag: str) -> tuple[str, str]:
        head, sep, kind = tag.partition("-")
        return (head, kind) if sep else (tag, "")

    correct_chunk = found_correct = found_guessed = 0
    in_correct = False
    last_c, last_c_type, last_g, last_g_type = "O", "", "O", ""
    stream = [pair for g, p in zip(gold, pred, strict=True) for pair in [*zip(g, p, strict=True), ("O", "O")]]
    for c_tag, g_tag in stream:
        (c, c_type), (g, g_type) = split(c_tag), split(g_tag)
        if in_correct:
            end_c = _end_of_chunk(last_c, c, last_c_type, c_type)
            end_g = _end_of_chunk(last_g, g, last_g_type, g_type)
            if end_c and end_g and last_g_type == last_c_type:
                in_correct = False
                correct_chunk += 1
            elif end_c != end_g or g_type != c_type:
                in_correct = False
        start_c = _start_of_chunk(last_c, c, last_c_type, c_type)
        start_g = _start_of_chunk(last_g, g, last_g_type, g_type)
        if start_c and start_g and g_type == c_type:
            in_correct = True
        found_correct += start_c
        found_guessed += start_g
        last_c, last_c_type, last_g, last_g_type = c, c_type, g, g_type
    if in_correct:
        correct_chunk += 1
    p = correct_chunk / found_guessed if found_guessed else 0.0
    r = correct_chunk / found_correct if found_correct else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


# --- perturbed predictions over real CoNLL-2003 sentences ----------------------------------------

TYPES = ("LOC", "MISC", "ORG", "PER")


def _perturb(tags: list[str], rng: random.Random) -> list[str]:
    out = list(tags)
    n = len(out)
    for _ in range(rng.randint(0, 3)):
        inside = [k for k, t in enumerate(out) if t != "O"]
        i = rng.choice(inside) if inside and rng.random() < 0.8 else rng.randrange(n)
        head, _, kind = out[i].partition("-")
        op = rng.randrange(7)
        if op == 0 and head in "BI" and kind:  # flip B <-> I
            out[i] = ("I-" if head == "B" else "B-") + kind
        elif op == 1:  # every entity of the sentence starts with I-
            out = [("I-" + t[2:]) if t.startswith("B-") else t for t in out]
        elif op == 2 and kind:  # type change of one token
            out[i] = f"{head}-{rng.choice([t for t in TYPES if t != kind])}"
        elif op == 3 and kind and i + 1 < n:  # boundary shift: extend to the right
            out[i + 1] = "I-" + kind
        elif op == 4 and kind:  # boundary shift: cut the token off
            out[i] = "O"
            if i + 1 < n and out[i + 1].startswith("I-") and head == "B":
                out[i + 1] = "B-" + out[i + 1][2:]
        elif op == 5 and i > 0 and kind:  # boundary shift: extend to the left
            out[i - 1] = "B-" + kind
            out[i] = "I-" + kind
        elif op == 6:  # a random tag anywhere (stray I-, type changes inside an entity)
            out[i] = rng.choice(["O"] + [f"{h}-{t}" for t in TYPES for h in "BI"])
    return out


@pytest.fixture(scope="module")
def conll_dev(shared_data: Path) -> list[list[str]]:
    return [e.tags for e in get_task("conll2003").read(shared_data / "en/conll2003", "dev")]


def _seqeval(gold: list[list[str]], pred: list[list[str]], **kwargs) -> dict:
    with warnings.catch_warnings():  # seqeval averages empty arrays when no entity exists at all
        warnings.simplefilter("ignore", RuntimeWarning)
        return classification_report(gold, pred, output_dict=True, zero_division=0, **kwargs)


def test_conll2003_every_entity_predicted_with_i(conll_dev: list[list[str]]) -> None:
    pred = [[("I-" + t[2:]) if t.startswith("B-") else t for t in s] for s in conll_dev]
    s = ner_scores(conll_dev, pred)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx(conlleval(conll_dev, pred), abs=1e-12)
    # of 5942 gold entities, 4 pairs of adjacent same-type entities merge: 5938 found, 5934 correct
    assert (s["precision"], s["recall"]) == (pytest.approx(5934 / 5938), pytest.approx(5934 / 5942))
    assert ner_scores(conll_dev, pred, mode="strict")["f1"] == 0.0


def test_perturbed_conll2003_equals_conlleval_and_seqeval(conll_dev: list[list[str]]) -> None:
    rng = random.Random(1)
    pred = [_perturb(s, rng) for s in conll_dev]
    assert sum(p != g for p, g in zip(pred, conll_dev, strict=True)) > len(conll_dev) / 2
    s = ner_scores(conll_dev, pred, per_type=True)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx(conlleval(conll_dev, pred), abs=1e-12)
    ref = _seqeval(conll_dev, pred)
    assert s["f1"] == ref["micro avg"]["f1-score"]
    assert {t: s[f"f1_{t}"] for t in TYPES} == {t: ref[t]["f1-score"] for t in TYPES}
    strict = ner_scores(conll_dev, pred, per_type=True, mode="strict")
    ref = _seqeval(conll_dev, pred, mode="strict", scheme=IOB2)
    assert strict["f1"] == ref["micro avg"]["f1-score"] and strict["f1"] < s["f1"]
    assert {t: strict[f"f1_{t}"] for t in TYPES} == {t: ref[t]["f1-score"] for t in TYPES}
    # strict entities are exactly the well-formed chunks: a set reference agrees
    assert (strict["precision"], strict["recall"], strict["f1"]) == pytest.approx(
        _set_reference(conll_dev, pred, "BIO", "strict"), abs=1e-12)


def _set_reference(gold: list[list[str]], pred: list[list[str]], scheme: str, mode: str) -> tuple[float, ...]:
    g = {(i, *e) for i, s in enumerate(gold) for e in entities(s, scheme, mode)}
    p = {(i, *e) for i, s in enumerate(pred) for e in entities(s, scheme, mode)}
    tp = len(g & p)
    prec = tp / len(p) if p else 0.0
    rec = tp / len(g) if g else 0.0
    return prec, rec, (2 * prec * rec / (prec + rec) if tp else 0.0)


@pytest.mark.parametrize("mode", ["conlleval", "strict"])
@pytest.mark.parametrize("scheme", ["BIO", "BIOES"])
def test_random_tags_equal_seqeval(scheme: str, mode: str) -> None:
    rng = random.Random(7)
    prefixes = "BI" if scheme == "BIO" else "BIES"
    tags = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC") for p in prefixes]
    kwargs = {"mode": "strict", "scheme": IOB2 if scheme == "BIO" else IOBES} if mode == "strict" else {}
    for _ in range(60):
        gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(rng.randint(1, 8))]
        pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in s] for s in gold]
        s = ner_scores(gold, pred, scheme=scheme, mode=mode)
        ref = _seqeval(gold, pred, **kwargs).get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
        assert (s["precision"], s["recall"], s["f1"]) == (ref["precision"], ref["recall"], ref["f1-score"])
        assert (s["precision"], s["recall"], s["f1"]) == pytest.approx(_set_reference(gold, pred, scheme, mode))
        if scheme == "BIO" and mode == "conlleval":
            assert (s["precision"], s["recall"], s["f1"]) == pytest.approx(conlleval(gold, pred), abs=1e-12)
