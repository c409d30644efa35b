"""Read documents from raw corpus files, robust to bad input.

Formats: UTF-8 ``.txt`` (one document per line, or blank-line-separated documents) and ``.jsonl`` with a
text field; either may be gzipped (``.gz``). Folders are walked in sorted order. Bad lines never stop a
run: they are skipped or cut, counted by reason in ``Problems``, and the first few are logged with file
and line. A file that cannot be read (unreadable, truncated or corrupt ``.gz``) stops it with an error
naming the file: its documents would be silently lost.
"""

from __future__ import annotations

import gzip
import json
import logging
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

SUFFIXES = (".txt", ".jsonl", ".txt.gz", ".jsonl.gz")
# C0/C1 control characters other than tab and newline; they are removed from the text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_LOG_LIMIT = 20


@dataclass
class Document:
    text: str
    source: str  # file:line of the document's first line


@dataclass
class Problems:
    """Lines skipped or changed, by reason, with a few examples (file:line)."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 5:
            ex.append(where)
        if sum(self.counts.values()) <= _LOG_LIMIT:
            log.warning("%s: %s", where, reason.replace("_", " "))

    def as_dict(self) -> dict:
        return {"counts": dict(sorted(self.counts.items())), "examples": self.examples}


def list_files(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the sorted list of corpus files; unknown or missing paths are errors."""
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES))
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif p.exists():
            raise ValueError(f"{p}: not a regular file (a pipe or device?); give a file or folder")
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    if not files:
        raise FileNotFoundError(f"no corpus files ({', '.join(SUFFIXES)}) in {', '.join(map(str, inputs))}")
    return files


def _open(path: Path) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")
    except OSError as e:
        raise ValueError(f"{path}: cannot read it: {e.strerror or e}") from None


def _lines(f: BinaryIO, max_bytes: int, path: Path) -> Iterator[tuple[bytes, bool]]:
    """Yield (line without newline, was_cut). Lines longer than max_bytes keep their first max_bytes.
    A read error (a truncated or corrupt .gz, an I/O error) is a ValueError naming ``path``."""
    try:
        yield from _raw_lines(f, max_bytes)
    except EOFError as e:  # gzip: the file ends inside the compressed stream
        raise ValueError(f"{path}: truncated .gz file ({e})") from None
    except (OSError, zlib.error) as e:
        raise ValueError(f"{path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None


def _raw_lines(f: BinaryIO, max_bytes: int) -> Iterator[tuple[bytes, bool]]:
    while True:
        chunk = f.readline(max_bytes)
        if not chunk:
            return
        if chunk.endswith(b"\n") or len(chunk) < max_bytes:
            yield chunk.rstrip(b"\r\n"), False
            continue
        while True:  # drain the rest of an over-long line without holding it
            rest = f.readline(max_bytes)
            if not rest or rest.endswith(b"\n"):
                break
        yield chunk, True


def clean_line(raw: bytes, where: str, problems: Problems, cut: bool) -> str | None:
    """Decode and clean one line; None when the line must be skipped."""
    if cut:
        problems.add("line_too_long_cut", where)
    text = None
    for trim in range(4 if cut else 1):  # a cut may fall inside a multi-byte character
        try:
            text = raw[: len(raw) - trim].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if text is None:
        problems.add("invalid_utf8_skipped", where)
        return None
    if "\x00" in text or _looks_binary(text):
        problems.add("binary_skipped", where)
        return None
    if _CONTROL.search(text):
        problems.add("control_chars_removed", where)
        text = _CONTROL.sub("", text)
    return text.strip()


def _looks_binary(text: str, sample: int = 2000) -> bool:
    """Over 10% of the first ``sample`` characters are control (but tab), private-use, unassigned or surrogate."""
    s = text[:sample]
    if not s or s.isprintable():  # printable text has none of those: the common case, in C
        return False
    bad = sum(n for ch, n in Counter(s).items()
              if unicodedata.category(ch) in ("Cc", "Co", "Cn", "Cs") and ch != "\t")
    return bad / len(s) > 0.1


def iter_documents(inputs: Iterable[str | Path], text_field: str = "text", doc_sep: str = "line",
                   max_line_bytes: int = 1 << 20, problems: Problems | None = None) -> Iterator[Document]:
    """Stream the documents of every corpus file; empty documents are skipped and counted."""
    problems = problems if problems is not None else Problems()
    for path in list_files(inputs):
        jsonl = path.name.endswith((".jsonl", ".jsonl.gz"))
        with _open(path) as f:
            buf: list[str] = []
            start = ""
            for i, (raw, cut) in enumerate(_lines(f, max_line_bytes, path), start=1):
                where = f"{path}:{i}"
                text = clean_line(raw, where, problems, cut)
                if text is None:
                    continue
                if jsonl:
                    if not text:
                        continue
                    text = _json_text(text, text_field, where, problems)
                    if text is None:
                        continue
                if doc_sep == "blank" and not jsonl:
                    if text:
                        start = start or where
                        buf.append(text)
                        continue
                    if buf:
                        yield Document("\n".join(buf), start)
                        buf, start = [], ""
                    continue
                if text:
                    yield Document(text, where)
                else:
                    problems.add("empty_document_skipped", where)
            if buf:
                yield Document("\n".join(buf), start)


def _json_text(line: str, text_field: str, where: str, problems: Problems) -> str | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        problems.add("invalid_json_skipped", where)
        return None
    value = record.get(text_field) if isinstance(record, dict) else None
    if not isinstance(value, str):
        problems.add(f"no_text_field_{text_field}_skipped", where)
        return None
    value = _CONTROL.sub("", value).strip()
    if not value:
        problems.add("empty_document_skipped", where)
        return None
    return value
