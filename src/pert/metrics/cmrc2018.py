"""CMRC 2018 / DRCD EM and F1 with the semantics of the official ``cmrc2018_evaluate.py`` (v5).

What the official script does, and so what this module does:

- text is lower-cased and stripped;
- *mixed segmentation*: every character in U+4E00..U+9FA5 is one segment; runs of other characters
  are split into words by NLTK's word tokenizer; the script's own punctuation list (``PUNCTUATION``)
  is dropped before segmenting (a dropped character does not end a run: ``ab-cd`` is one word);
- F1 = harmonic mean of precision and recall of the **longest common contiguous run** of segments
  between prediction and a gold answer (not bag-of-tokens overlap); EM compares the strings with the
  punctuation list removed; both take the maximum over the gold answers;
- a question without a prediction scores 0, counts in the total and is reported as skipped.

One deliberate difference: ``nltk.word_tokenize`` first splits a run into sentences with the Punkt
model, a data download that an offline install cannot have. Runs are tokenised as one sentence
(``word_tokenize(run, preserve_line=True)``, i.e. NLTK's improved Treebank tokenizer alone). Only a
run with a sentence end inside it (``... end. next ...``) can segment differently.

    python -m pert.metrics.cmrc2018 cmrc2018_dev.json predictions.json
"""

from __future__ import annotations

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
def _word_tokenizer() -> Any:
    from nltk.tokenize.destructive import NLTKWordTokenizer  # what nltk.word_tokenize applies per sentence

    return NLTKWordTokenizer()


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fa5"


def mixed_segmentation(text: str, remove_punctuation: bool = False) -> list[str]:
    """Segments of ``text``: one per CJK character (and per listed punctuation mark), NLTK words otherwise."""
    text = str(text).lower().strip()
    tokenize = _word_tokenizer().tokenize
    segments: list[str] = []
    run = ""
    for ch in text:
        if remove_punctuation and ch in _PUNCT:
            continue
        if _is_cjk(ch) or ch in _PUNCT:
            if run:
                segments.extend(tokenize(run))
                run = ""
            segments.append(ch)
        else:
            run += ch
    if run:
        segments.extend(tokenize(run))
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


def evaluate(gold: Mapping[str, list[str]], predictions: Mapping[str, str]) -> dict[str, float]:
    """``{"em", "f1", "average", "total", "skip"}`` in percent; ``gold`` maps question id -> answer texts."""
    em = f1 = 0.0
    skip = 0
    for qid, answers in gold.items():
        if qid not in predictions:
            skip += 1
            continue
        pred = str(predictions[qid])
        f1 += f1_score(answers, pred)
        em += em_score(answers, pred)
    total = len(gold)
    em_pct = 100.0 * em / total if total else 0.0
    f1_pct = 100.0 * f1 / total if total else 0.0
    return {"em": em_pct, "f1": f1_pct, "average": (em_pct + f1_pct) / 2, "total": total, "skip": skip}


def gold_answers(dataset: Mapping[str, Any]) -> dict[str, list[str]]:
    """Question id -> gold answer texts of a SQuAD-style dataset dict (ids stripped, as the script does)."""
    out: dict[str, list[str]] = {}
    for article in dataset["data"]:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                out[str(qa["id"]).strip()] = [a["text"] for a in qa.get("answers", [])]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m pert.metrics.cmrc2018 DATASET.json PREDICTIONS.json`` prints the official JSON summary."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pert.metrics.cmrc2018 DATASET.json PREDICTIONS.json", file=sys.stderr)
        return 2
    dataset = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    predictions = json.loads(Path(args[1]).read_text(encoding="utf-8"))
    r = evaluate(gold_answers(dataset), predictions)
    print(json.dumps({"AVERAGE": f"{r['average']:.3f}", "F1": f"{r['f1']:.3f}", "EM": f"{r['em']:.3f}",
                      "TOTAL": r["total"], "SKIP": r["skip"], "FILE": args[1]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
