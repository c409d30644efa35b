"""Chinese word segmenters. A segmenter maps a text to words that concatenate back to the text.

Pluggable: pass a registered name (``rjieba``, ``jieba``, ``char``) or ``module:function`` naming
any callable ``str -> list[str]`` (for example a wrapper around LTP, which HFL used).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

Segmenter = Callable[[str], list[str]]


def _rjieba(text: str) -> list[str]:
    import rjieba

    return rjieba.cut(text)


def _jieba(text: str) -> list[str]:
    import jieba  # optional: pip install jieba

    return list(jieba.cut(text, HMM=True))


def _char(text: str) -> list[str]:
    return list(text)


SEGMENTERS: dict[str, Segmenter] = {"rjieba": _rjieba, "jieba": _jieba, "char": _char}


def get_segmenter(name: str) -> Segmenter:
    """Look up a segmenter by registered name or ``module:function``."""
    if name in SEGMENTERS:
        return SEGMENTERS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except Exception as e:  # noqa: BLE001 - importing a user's module may raise anything
            raise ValueError(f"segmenter {name!r}: cannot import {attr} from {module}: "
                             f"{type(e).__name__}: {e}") from None
        if not callable(fn):
            raise ValueError(f"segmenter {name!r} is not callable")
        return fn
    raise ValueError(f"unknown segmenter {name!r}; use one of {sorted(SEGMENTERS)} or module:function")
