"""Entity-level NER scores with seqeval's strict semantics (CoNLL's exact-match entities).

Strict means an entity is exactly a well-formed chunk of the scheme: ``B-X I-X*`` for BIO (IOB2),
``B-X I-X* E-X`` or ``S-X`` for BIOES. A stray ``I-X`` starts no entity; a type change ends one.
Precision, recall and F1 are micro-averaged over all entities of all sentences.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

SCHEMES = ("BIO", "BIOES")


def _split(tag: str) -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not kind:
        raise ValueError(f"tag {tag!r} is not O or B-/I-/E-/S- followed by an entity type")
    return prefix, kind


def entities(tags: Sequence[str], scheme: str = "BIO") -> list[tuple[str, int, int]]:
    """Strict entities of one tag sequence as ``(type, start, end)`` with ``end`` exclusive."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    out: list[tuple[str, int, int]] = []
    start, kind = -1, ""
    for i, tag in enumerate(tags):
        prefix, t = _split(tag)
        if scheme == "BIO":
            if start >= 0 and (prefix != "I" or t != kind):
                out.append((kind, start, i))
                start = -1
            if prefix == "B":
                start, kind = i, t
        else:
            if prefix in ("I", "E") and start >= 0 and t == kind:
                if prefix == "E":
                    out.append((kind, start, i + 1))
                    start = -1
                continue
            start = -1  # anything else breaks an open B-I* chunk without an E
            if prefix == "S":
                out.append((t, i, i + 1))
            elif prefix == "B":
                start, kind = i, t
    if scheme == "BIO" and start >= 0:
        out.append((kind, start, len(tags)))
    return out


def ner_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str = "BIO",
               per_type: bool = False) -> dict[str, float]:
    """Micro precision/recall/F1 of strict entities (seqeval ``mode="strict"``), as fractions.

    With ``per_type`` the result also has ``f1_<TYPE>`` for each entity type in the gold tags.
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2, IOBES

    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted ones")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted ones")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    with warnings.catch_warnings():  # seqeval averages empty arrays when no entity exists at all
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report([list(s) for s in gold], [list(s) for s in pred], mode="strict",
                                       scheme=IOB2 if scheme == "BIO" else IOBES, output_dict=True,
                                       zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    out = {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
           "f1": float(micro["f1-score"])}
    if per_type:
        for key, row in report.items():
            if not key.endswith(" avg"):
                out[f"f1_{key}"] = float(row["f1-score"])
    return out
