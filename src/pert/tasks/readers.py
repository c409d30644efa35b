"""Finding and parsing task files: TSV/CSV/JSON lines/custom-separator tables and CoNLL-style columns.

A file is named relative to the task's data folder, optionally inside a zip: ``"bq.zip:bq/dev.txt"``.
Every error names the file (``path`` or ``path:member``), the 1-based line and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class Source:
    """A text file on disk or a member of a zip archive."""

    path: Path
    member: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    def read_text(self) -> str:
        """The whole file as text (UTF-8, a leading BOM removed); bad bytes are reported with the file name."""
        try:
            if self.member is None:
                data = self.path.read_bytes()
            else:
                with zipfile.ZipFile(self.path) as z:
                    data = z.read(self.member)
        except KeyError as e:
            raise FileNotFoundError(f"{self.path}: the zip has no member {self.member}") from e
        except zipfile.BadZipFile as e:
            raise ValueError(f"{self.path}: not a valid zip archive ({e})") from e
        try:
            return data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = data[: e.start].count(b"\n") + 1
            raise ValueError(f"{self.name}:{line}: not valid UTF-8 text ({e.reason})") from e

    def lines(self) -> list[str]:
        """Lines split on newlines only (str.splitlines would also split on U+0085, U+2028, ... in text)."""
        text = self.read_text()
        lines = [line.rstrip("\r") for line in text.split("\n")]
        return lines[:-1] if lines and lines[-1] == "" else lines


def find_source(data_dir: Path, candidates: Sequence[str]) -> Source | None:
    """The first candidate that exists under ``data_dir`` (``"a.zip:member"`` for zip members), else None."""
    for cand in candidates:
        path, sep, member = cand.partition(".zip:")
        if sep:
            zpath = data_dir / (path + ".zip")
            if zpath.is_file():
                try:
                    with zipfile.ZipFile(zpath) as z:
                        if member in z.namelist():
                            return Source(zpath, member)
                except zipfile.BadZipFile as e:
                    raise ValueError(f"{zpath}: not a valid zip archive ({e})") from e
        elif (data_dir / cand).is_file():
            return Source(data_dir / cand)
    return None


@dataclass(frozen=True)
class Table:
    """How a table file is laid out.

    ``kind``: ``tsv`` (no quoting, as GLUE writes it), ``csv`` (RFC 4180 quoting), ``jsonl`` or
    ``sep`` (fields split on ``sep``, e.g. ChineseGLUE's ``_!_``). ``columns`` names the fields of a
    file without a header row; with ``header`` the first row names them.
    """

    kind: str = "tsv"
    header: bool = True
    columns: tuple[str, ...] = ()
    sep: str = "\t"


def iter_rows(source: Source, table: Table) -> Iterator[tuple[int, dict[str, object]]]:
    """``(line number, {column: value})`` for every non-empty row; malformed rows raise ValueError."""
    if table.kind == "jsonl":
        for n, line in enumerate(source.lines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{source.name}:{n}: not a JSON object ({e.msg})") from e
            if not isinstance(row, dict):
                raise ValueError(f"{source.name}:{n}: expected a JSON object, got {type(row).__name__}")
            yield n, row
        return
    if table.kind == "csv":
        reader: Iterator[tuple[int, list[str]]] = _csv_rows(source.read_text())
    elif table.kind in ("tsv", "sep"):
        sep = "\t" if table.kind == "tsv" else table.sep
        reader = ((n, line.split(sep)) for n, line in enumerate(source.lines(), 1))
    else:
        raise ValueError(f"unknown table kind {table.kind!r}")
    columns = list(table.columns)
    for n, fields in reader:
        if not any(f.strip() for f in fields):
            continue
        if table.header and not columns:
            columns = [f.strip() for f in fields]
            continue
        if len(fields) != len(columns):
            what = "tab" if table.kind == "tsv" else "comma" if table.kind == "csv" else repr(table.sep)
            raise ValueError(f"{source.name}:{n}: expected {len(columns)} {what}-separated fields "
                             f"({', '.join(columns)}), got {len(fields)}")
        yield n, dict(zip(columns, fields, strict=True))


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    reader = csv.reader(io.StringIO(text))
    start = 1
    for fields in reader:
        yield start, fields
        start = reader.line_num + 1


def field_of(source: Source, line: int, row: dict[str, object], column: str) -> str:
    """A row's field as a stripped string; an absent column is an error naming file, line and column."""
    if column not in row:
        raise ValueError(f"{source.name}:{line}: no field {column!r} (fields: {', '.join(map(str, row))})")
    value = row[column]
    if value is None:
        raise ValueError(f"{source.name}:{line}: field {column!r} is empty")
    return str(value).strip()


def read_columns(source: Source, token_col: int = 0, tag_col: int = -1,
                 skip_docstart: bool = True) -> list[tuple[list[str], list[str], int]]:
    """CoNLL-style column file: one token a line, blank lines between sentences.

    Columns are split on tabs when the line has one, else on single spaces, so that a token which is
    itself a Unicode space (U+3000 in Chinese text) survives. Returns ``(tokens, tags, first line)`` per sentence;
    ``-DOCSTART-`` lines are skipped.
    """
    sentences: list[tuple[list[str], list[str], int]] = []
    tokens: list[str] = []
    tags: list[str] = []
    first = 0
    width = None
    for n, line in enumerate(source.lines(), 1):
        if not line.strip(" \t"):
            if tokens:
                sentences.append((tokens, tags, first))
                tokens, tags = [], []
            continue
        fields = line.split("\t" if "\t" in line else " ")
        if skip_docstart and fields[0] == "-DOCSTART-":
            continue
        if len(fields) < 2:
            raise ValueError(f"{source.name}:{n}: expected a token and a tag separated by whitespace, got {line!r}")
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            raise ValueError(f"{source.name}:{n}: expected {width} columns like the lines before, got {len(fields)}")
        if not tokens:
            first = n
        tokens.append(fields[token_col])
        tags.append(fields[tag_col])
    if tokens:
        sentences.append((tokens, tags, first))
    return sentences
