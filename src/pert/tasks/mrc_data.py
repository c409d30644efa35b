"""Read SQuAD-style reading-comprehension JSON: CMRC 2018, DRCD, SQuAD 1.1 and SQuAD 2.0.

All four share one layout: ``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}``. A ``.zip`` holding one JSON file is
read in place (SQuAD 1.1 dev is staged that way).

An ``answer_start`` that does not point at its ``text`` is repaired when the text occurs exactly once
in the context, or when exactly one occurrence lies within ``MAX_SHIFT`` characters of the given start
(a shifted offset); otherwise the answer stays unresolved (start -1): it is still a gold answer for
the metrics, never a training target. ``ReadStats`` counts both.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_SHIFT = 2


@dataclass
class MrcExample:
    """One question on one context."""

    qid: str
    question: str
    context: str
    answers: list[str]
    """Gold answer texts exactly as given (what the metrics compare with); empty when unanswerable."""
    starts: list[int]
    """Character start of each answer in ``context`` after repair; -1 where unresolved."""
    impossible: bool = False
    title: str = ""

    def target(self) -> tuple[int, int] | None:
        """[start, end) characters of the first resolved answer without surrounding whitespace, or None."""
        for text, start in zip(self.answers, self.starts, strict=True):
            stripped = text.strip()
            if start >= 0 and stripped:
                start += len(text) - len(text.lstrip())
                return start, start + len(stripped)
        return None


@dataclass
class ReadStats:
    """What a reader found; ``unresolved_ids`` names the questions with an unusable offset."""

    articles: int = 0
    paragraphs: int = 0
    questions: int = 0
    answers: int = 0
    impossible: int = 0
    mismatched: int = 0
    repaired: int = 0
    unresolved: int = 0
    unresolved_ids: list[str] = field(default_factory=list)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                members = [n for n in zf.namelist() if n.endswith(".json") and not n.startswith("__MACOSX/")]
                if len(members) != 1:
                    raise ValueError(f"{path}: expected exactly one .json member, found {members}")
                return json.loads(zf.read(members[0]).decode("utf-8"))
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from e
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 ({e})") from e
    except zipfile.BadZipFile as e:
        raise ValueError(f"{path}: not a readable zip file ({e})") from e


def resolve_start(context: str, text: str, start: int) -> int:
    """The repaired character start of ``text`` in ``context`` (see module doc), or -1."""
    if not text:
        return -1
    if 0 <= start and context.startswith(text, start):
        return start
    found, i = [], context.find(text)
    while i >= 0:
        found.append(i)
        i = context.find(text, i + 1)
    if len(found) == 1:
        return found[0]
    near = [i for i in found if abs(i - start) <= MAX_SHIFT]
    return near[0] if len(near) == 1 else -1


def _get(obj: Any, key: str, kind: type | tuple[type, ...], where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{path}: {where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ValueError(f"{path}: {where}.{key}: expected {name}, got {type(value).__name__}")
    return value


def read_mrc_file(path: str | Path) -> tuple[list[MrcExample], ReadStats]:
    """All questions of a SQuAD-style file, in file order, with the reader's counts."""
    path = Path(path)
    root = _load_json(path)
    data = _get(root, "data", list, "top level", path)
    examples: list[MrcExample] = []
    stats = ReadStats(articles=len(data))
    seen: set[str] = set()
    for a, article in enumerate(data):
        title = str(article.get("title", "")) if isinstance(article, dict) else ""
        paragraphs = _get(article, "paragraphs", list, f"data[{a}]", path)
        for p, para in enumerate(paragraphs):
            where_p = f"data[{a}].paragraphs[{p}]"
            context = _get(para, "context", str, where_p, path)
            stats.paragraphs += 1
            for q, qa in enumerate(_get(para, "qas", list, where_p, path)):
                where = f"{where_p}.qas[{q}]"
                qid = str(_get(qa, "id", (str, int), where, path)).strip()
                if qid in seen:
                    raise ValueError(f"{path}: {where}.id: duplicate question id {qid!r}")
                seen.add(qid)
                question = _get(qa, "question", str, where, path)
                raw = qa.get("answers", [])
                if not isinstance(raw, list):
                    raise ValueError(f"{path}: {where}.answers: expected a list, got {type(raw).__name__}")
                impossible = bool(qa.get("is_impossible", False))
                texts, starts = [], []
                for k, ans in enumerate(raw):
                    text = _get(ans, "text", str, f"{where}.answers[{k}]", path)
                    start = _get(ans, "answer_start", int, f"{where}.answers[{k}]", path)
                    fixed = resolve_start(context, text, start)
                    if not (start >= 0 and context.startswith(text, start)):
                        stats.mismatched += 1
                        if fixed >= 0:
                            stats.repaired += 1
                        else:
                            stats.unresolved += 1
                            if qid not in stats.unresolved_ids:
                                stats.unresolved_ids.append(qid)
                    texts.append(text)
                    starts.append(fixed)
                if impossible and texts:
                    raise ValueError(f"{path}: {where}: is_impossible is true but answers are given")
                stats.questions += 1
                stats.answers += len(texts)
                stats.impossible += impossible
                examples.append(MrcExample(qid, question, context, texts, starts, impossible, title))
    return examples, stats
