"""From pointer scores to restored text: an assignment over positions, then text from character offsets.

``model.position_logits`` gives, for every output position i, a score for each input position j ("the
token that belongs at i stands at j"). Taking the row-wise argmax may use one input token twice; the
assignment solver instead finds the permutation with the highest total log-probability, so the output
always holds exactly the input's tokens.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def content_log_probs(logits: torch.Tensor, n: int, offset: int = 1) -> np.ndarray:
    """(n, n) log-probabilities among the n content positions ``offset .. offset+n-1`` of one sequence.

    ``logits`` is one sequence's (L, L) pointer scores; [CLS], [SEP] and padding are excluded from both
    the queries and the softmax.
    """
    block = logits[offset:offset + n, offset:offset + n].float()
    return torch.log_softmax(block, dim=-1).cpu().numpy()


def assign(scores: np.ndarray) -> np.ndarray:
    """The permutation ``perm`` maximising ``sum_i scores[i, perm[i]]`` (``perm[i]``: input position of
    the token placed at output position i)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"expected a square score matrix, got shape {scores.shape}")
    if scores.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    # -inf (masked) entries would make the problem infeasible; a large finite penalty keeps it solvable.
    scores = np.where(np.isfinite(scores), scores, -1e9)
    rows, cols = linear_sum_assignment(scores, maximize=True)
    perm = np.empty(len(rows), dtype=np.int64)
    perm[rows] = cols
    return perm


def _is_punct(s: str) -> bool:
    return bool(s) and all(unicodedata.category(ch)[0] in "PS" for ch in s)


def decode_batch(logits: torch.Tensor, lengths: Sequence[int], offset: int = 1) -> list[np.ndarray]:
    """One permutation per sequence of a batch of (B, L, L) pointer scores; ``lengths`` are the numbers
    of content tokens (after [CLS])."""
    return [assign(content_log_probs(logits[b], int(n), offset)) for b, n in enumerate(lengths)]


def render(text: str, tokens: Sequence[str], offsets: Sequence[tuple[int, int]],
           perm: Sequence[int]) -> tuple[str, list[tuple[int, int]]]:
    """Text of the input tokens in the order ``perm``, and each output token's character span in it.

    Characters come from the input text by offsets (casing, [UNK] pieces and full-width forms survive;
    nothing is decoded). Tokens that stood together in the input keep the input's own characters between
    them, so the identity permutation returns ``text`` unchanged. Where reordering makes two tokens meet,
    they are glued when the right one was glued to its left neighbour in the input by its own nature (a
    ``##`` piece, a comma, any character of Chinese text; not a word that merely followed an opening
    bracket) or the left one is punctuation that was glued to its right neighbour (an opening bracket);
    otherwise they are separated by the whitespace that preceded the right token in the input, or by one
    space when it had none and the text is spaced (most words follow a word after whitespace). So Chinese
    never gets spaces it did not have, and English keeps one between words.
    """
    n = len(tokens)
    if len(offsets) != n or len(perm) != n:
        raise ValueError(f"tokens ({n}), offsets ({len(offsets)}) and perm ({len(perm)}) differ in length")
    if sorted(int(k) for k in perm) != list(range(n)):
        raise ValueError("perm is not a permutation of the token positions")
    if n == 0:
        return text, []
    before = [""] + [text[offsets[k - 1][1]:offsets[k][0]] for k in range(1, n)]
    pieces = [text[a:b] for a, b in offsets]
    punct = [_is_punct(p) for p in pieces]
    # Spaced text (English): most words that follow a word (not punctuation) are preceded by whitespace.
    word_gaps = [before[k] for k in range(1, n)
                 if not tokens[k].startswith("##") and not punct[k] and not punct[k - 1]]
    spaced = sum(1 for g in word_gaps if g) * 2 > len(word_gaps)
    # Opening punctuation: glued to its right neighbour only, e.g. "(" in " (born".
    opening = [punct[m] and (m == 0 or before[m] != "") and m + 1 < n and before[m + 1] == ""
               for m in range(n)]
    out = [text[:offsets[0][0]]]
    length = len(out[0])
    spans: list[tuple[int, int]] = []
    for i, k in enumerate(perm):
        k = int(k)
        if i > 0:
            p = int(perm[i - 1])
            if k == p + 1:
                sep = before[k]
            else:
                left_glued = tokens[k].startswith("##") or (
                    before[k] == "" and not opening[k - 1] if k > 0 else not spaced)
                right_glued = punct[p] and p + 1 < n and before[p + 1] == ""
                if left_glued or right_glued:
                    sep = ""
                else:
                    sep = before[k] if k > 0 and before[k] else " " if spaced else ""
            out.append(sep)
            length += len(sep)
        piece = text[offsets[k][0]:offsets[k][1]]
        out.append(piece)
        spans.append((length, length + len(piece)))
        length += len(piece)
    out.append(text[offsets[n - 1][1]:])
    return "".join(out), spans


def moved_spans(perm: Sequence[int], spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character spans of the output covering maximal runs of tokens that are not in their input place."""
    merged: list[tuple[int, int]] = []
    prev_moved = False
    for i, k in enumerate(perm):
        moved = k != i
        if moved and prev_moved:
            merged[-1] = (merged[-1][0], spans[i][1])
        elif moved:
            merged.append(spans[i])
        prev_moved = moved
    return merged


def moved_input_spans(perm: Sequence[int], offsets: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character spans of the input covering maximal runs of input tokens that the permutation moves."""
    moved = np.zeros(len(perm), dtype=bool)
    for i, k in enumerate(perm):
        moved[int(k)] |= int(k) != i
    merged: list[tuple[int, int]] = []
    for k in np.flatnonzero(moved):
        if merged and moved[k - 1] and k > 0:
            merged[-1] = (merged[-1][0], int(offsets[k][1]))
        else:
            merged.append((int(offsets[k][0]), int(offsets[k][1])))
    return merged
