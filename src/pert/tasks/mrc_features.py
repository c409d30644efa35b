"""Model features for extractive MRC: ``[CLS] question [SEP] context window [SEP]`` with character offsets.

Long contexts are cut into windows as Google's BERT ``run_squad.py`` does: each window holds up to
``max_seq_len - len(question) - 3`` context tokens and the next window starts ``doc_stride`` tokens
later (``doc_stride`` is the step between windows, not their overlap). A token is scored as an
answer start only in the window where it has the most context on both sides (``max_context``).

Every context token keeps the character span it came from in the *original* context (the fast
tokenizer's offsets), so an answer is always ``context[offsets[start][0]:offsets[end][1]]``: Chinese
without spurious spaces, English with its original case, accents and punctuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from pert.tasks.mrc_data import MrcExample


def check_lengths(max_seq_len: int, doc_stride: int, max_query_len: int) -> None:
    """Reject window settings that cannot hold a question and some context."""
    if max_query_len < 1:
        raise ValueError(f"max_query_len must be at least 1, got {max_query_len}")
    if doc_stride < 1:
        raise ValueError(f"doc_stride must be at least 1, got {doc_stride}")
    if max_seq_len < max_query_len + 4:
        raise ValueError(f"max_seq_len {max_seq_len} leaves no room for context after a question of up to "
                         f"max_query_len={max_query_len} tokens and 3 special tokens")


def token_span(offsets: Sequence[tuple[int, int]] | np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """First and last token (inclusive) covering characters ``[start, end)``, or None when none does."""
    off = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    first = int(np.searchsorted(off[:, 1], start, side="right"))  # first token ending after start
    last = int(np.searchsorted(off[:, 0], end, side="left")) - 1  # last token starting before end
    if first >= len(off) or last < 0 or first > last:
        return None
    return first, last


def windows(n_tokens: int, budget: int, doc_stride: int) -> list[tuple[int, int]]:
    """(start, length) of each context window."""
    out, start = [], 0
    while True:
        length = min(n_tokens - start, budget)
        out.append((start, length))
        if start + length >= n_tokens:
            return out
        start += min(length, doc_stride)


def max_context(spans: list[tuple[int, int]], n_tokens: int) -> np.ndarray:
    """For each context token, the index of the window giving it the most context (first on ties)."""
    best = np.zeros(n_tokens, dtype=np.int64)
    best_score = np.full(n_tokens, -np.inf)
    for w, (start, length) in enumerate(spans):
        pos = np.arange(start, start + length)
        score = np.minimum(pos - start, start + length - 1 - pos) + 0.01 * length
        better = score > best_score[pos]
        best[pos[better]] = w
        best_score[pos[better]] = score[better]
    return best


def encode_examples(examples: Sequence[MrcExample], tokenizer: PreTrainedTokenizerBase, max_seq_len: int,
                    doc_stride: int = 128, max_query_len: int = 64) -> list[dict[str, Any]]:
    """Features of every example (several per long context), each with ``example_index``.

    Model inputs: ``input_ids``, ``token_type_ids``, ``attention_mask``, ``start_positions``,
    ``end_positions`` (token indices of the example's first resolved answer in this window, 0 = [CLS]
    when it lies outside or the question is unanswerable). Bookkeeping: ``offsets`` (int array (L, 2):
    character span per token, -1 outside the context) and ``max_context`` (bool array: where the token
    may start an answer).
    """
    check_lengths(max_seq_len, doc_stride, max_query_len)
    contexts = list(dict.fromkeys(e.context for e in examples))
    ctx_enc = tokenizer(contexts, add_special_tokens=False, return_offsets_mapping=True,
                        return_attention_mask=False, return_token_type_ids=False)
    ctx_index = {c: i for i, c in enumerate(contexts)}
    q_ids = tokenizer([e.question for e in examples], add_special_tokens=False, return_attention_mask=False,
                      return_token_type_ids=False)["input_ids"]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    ctx_offsets: dict[int, np.ndarray] = {}
    features: list[dict[str, Any]] = []
    for ei, ex in enumerate(examples):
        question = q_ids[ei][:max_query_len]
        ci = ctx_index[ex.context]
        c_ids = ctx_enc["input_ids"][ci]
        if ci not in ctx_offsets:
            ctx_offsets[ci] = np.asarray(ctx_enc["offset_mapping"][ci], dtype=np.int32).reshape(-1, 2)
        c_off = ctx_offsets[ci]
        n = len(c_ids)
        spans = windows(n, max_seq_len - len(question) - 3, doc_stride)
        best = max_context(spans, n)
        target = None if ex.impossible else ex.target()
        tok = token_span(c_off, *target) if target else None
        lead = len(question) + 2
        for w, (start, length) in enumerate(spans):
            ids = [cls, *question, sep, *c_ids[start:start + length], sep]
            s_pos = e_pos = 0
            if tok is not None and start <= tok[0] and tok[1] < start + length:
                s_pos, e_pos = tok[0] - start + lead, tok[1] - start + lead
            offsets = np.full((len(ids), 2), -1, dtype=np.int32)
            offsets[lead:lead + length] = c_off[start:start + length]
            maxc = np.zeros(len(ids), dtype=bool)
            maxc[lead:lead + length] = best[start:start + length] == w
            features.append({
                "input_ids": ids,
                "token_type_ids": [0] * lead + [1] * (length + 1),
                "attention_mask": [1] * len(ids),
                "start_positions": s_pos,
                "end_positions": e_pos,
                "example_index": ei,
                "offsets": offsets,
                "max_context": maxc,
            })
    return features
