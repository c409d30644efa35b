"""Entity-level NER scores: conlleval's chunking (the official CoNLL score) or strict IOB2/IOBES.

Two ways to read entities off a tag sequence (``mode``):

- ``conlleval`` (default): the chunking of the CoNLL shared tasks' ``conlleval`` script, which is
  seqeval's default mode. An ``I-X`` after ``O`` or after another type starts an entity, and a type
  change ends one, so ``I-PER I-PER O`` is one PER entity. CoNLL-2003's official score; MSRA-NER and
  People's Daily NER are reported this way too (seqeval's default).
- ``strict``: seqeval's ``mode="strict"``: an entity is exactly a well-formed chunk of the scheme,
  ``B-X I-X*`` for BIO (IOB2), ``B-X I-X* E-X`` or ``S-X`` for BIOES; a stray ``I-X`` starts none.

Precision, recall and F1 are micro-averaged over all entities of all sentences; an entity counts as
correct when its type, start and end all match a gold entity.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

SCHEMES = ("BIO", "BIOES")
MODES = ("conlleval", "strict")


def _split(tag: str, scheme: str = "BIOES") -> tuple[str, str]:
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if not sep or prefix not in scheme.replace("O", "") or not kind:
        raise ValueError(f"tag {tag!r} is not O or {'/'.join(scheme.replace('O', ''))}- followed by an entity type")
    return prefix, kind


def _check(scheme: str, mode: str) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown tagging scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if mode not in MODES:
        raise ValueError(f"unknown NER scoring mode {mode!r}; use one of {', '.join(MODES)}")


def entities(tags: Sequence[str], scheme: str = "BIO", mode: str = "conlleval") -> list[tuple[str, int, int]]:
    """Entities of one tag sequence as ``(type, start, end)`` with ``end`` exclusive."""
    _check(scheme, mode)
    for tag in tags:
        _split(tag, scheme)
    if mode == "conlleval":
        from seqeval.metrics.sequence_labeling import get_entities

        return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]
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
               per_type: bool = False, mode: str = "conlleval") -> dict[str, float]:
    """Micro precision/recall/F1 of entities read the ``mode`` way (module docstring), as fractions.

    With ``per_type`` the result also has ``f1_<TYPE>`` for each entity type in gold or predictions.
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2, IOBES

    _check(scheme, mode)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted ones")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted ones")
        for which, tags in (("gold", g), ("predicted", p)):
            for j, tag in enumerate(tags):
                try:
                    _split(tag, scheme)
                except ValueError as e:
                    raise ValueError(f"sentence {i}, {which} tag {j}: {e}") from None
    kwargs = {"mode": "strict", "scheme": IOB2 if scheme == "BIO" else IOBES} if mode == "strict" else {}
    with warnings.catch_warnings():  # seqeval averages empty arrays when no entity exists at all
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report([list(s) for s in gold], [list(s) for s in pred], output_dict=True,
                                       zero_division=0, **kwargs)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    out = {"precision": float(micro["precision"]), "recall": float(micro["recall"]),
           "f1": float(micro["f1-score"])}
    if per_type:
        for key, row in report.items():
            if not key.endswith(" avg"):
                out[f"f1_{key}"] = float(row["f1-score"])
    return out
