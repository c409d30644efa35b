"""Sentence splitting for word-order restoration data.

Chinese: a sentence ends at 。！？!? or …… (with any closing quotes or brackets after it). English:
pysbd's rule-based segmenter (abbreviations, decimals and initials do not end a sentence). Line breaks
always end a sentence. WikiExtractor's ``<doc ...>`` / ``</doc>`` lines are not text and are dropped.
"""

from __future__ import annotations

import re
from functools import lru_cache

# A terminator run plus the closing quotes/brackets that belong to the sentence it ends.
_ZH_END = re.compile(r"(?:[。！？!?]+|…{1,2}|\.{3,6})[”’\"'」』）)】》]*")
_MARKUP = re.compile(r"^\s*(?:<doc\s[^>]*>|</doc>)\s*$")


def is_markup(line: str) -> bool:
    """A WikiExtractor ``<doc ...>`` or ``</doc>`` line."""
    return bool(_MARKUP.match(line))


@lru_cache(maxsize=1)
def _en_segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False, char_span=False)


def split_sentences(text: str, lang: str) -> list[str]:
    """Split a text into stripped, non-empty sentences (``lang`` is ``zh`` or ``en``)."""
    if lang not in ("zh", "en"):
        raise ValueError(f"unknown language {lang!r}; use zh or en")
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or is_markup(line):
            continue
        if lang == "zh":
            start = 0
            for m in _ZH_END.finditer(line):
                out.append(line[start:m.end()])
                start = m.end()
            out.append(line[start:])
        else:
            out.extend(_en_segmenter().segment(line))
    return [s.strip() for s in out if s.strip()]
