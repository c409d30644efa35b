"""`pert wor-data`: word-order restoration data from any raw text.

Each document is split into sentences; each sentence is either kept as it is (a negative) or corrupted by
moving whole words locally: a span of 2-4 consecutive words is permuted so that every word of it moves
(two words: a swap of neighbours). Words are the segmenter's words in Chinese and WordPiece whole words
(a first piece plus its ``##`` pieces) in English; punctuation stays put unless ``--move-punct``.

Output folder::

    train.jsonl, dev.jsonl, test.jsonl   one record per sentence (below)
    stats.json                           counts per split, corruption shapes, skipped sentences and why

A record::

    {"id": "test-17", "corrupted": "...", "original": "...",
     "tokens": [...],          # WordPiece tokens of the corrupted text
     "labels": [...],          # labels[i] = j: the token that belongs at position i stands at j
     "moves": [[s, e], ...],   # token ranges that were permuted (the same range in both texts)
     "source": "file:line"}

so ``[tokens[j] for j in labels]`` are the original's tokens, and ``pert.wor.decode.render`` with
``labels`` turns the corrupted text back into the original exactly (checked for every record). The same
seed and inputs give the same bytes. Documents (lines) go to one split each, and a sentence already
written (in any split) is skipped, so no test sentence is seen in training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

import pert
from pert.config import to_dict
from pert.corpus.read import Problems, iter_documents
from pert.text.segment import Segmenter, get_segmenter
from pert.text.tokenizer import load_tokenizer, word_starts
from pert.wor.config import WorDataConfig
from pert.wor.decode import render
from pert.wor.sentences import is_markup, split_sentences

log = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")
MAX_ATTEMPTS = 10


@dataclass
class Analysed:
    """A tokenised sentence with its whole words (token ranges) and which of them may move."""

    text: str
    tokens: list[str]
    offsets: list[tuple[int, int]]
    words: list[tuple[int, int]]
    movable: list[bool]


def _is_punct(s: str) -> bool:
    return all(unicodedata.category(ch)[0] in "PS" or ch.isspace() for ch in s)


def analyse(text: str, tokenizer: PreTrainedTokenizerBase, segmenter: Segmenter | None,
            move_punct: bool = False) -> Analysed:
    """Tokenise ``text`` and group its tokens into the words that may move as units.

    With a segmenter (Chinese) a word is a segmenter word. Without one (English) it is a space-delimited
    word with the punctuation at its edges split off (``growth,`` -> ``growth`` + ``,``; ``Mr.``, ``U.S.``,
    ``economy's`` and ``3.5%`` stay whole): WordPiece alone would cut ``3.5`` or ``economy's`` into three
    "words" and make corruptions no writer would produce. Units never split a WordPiece word.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    offsets = [tuple(o) for o in enc["offset_mapping"]]
    if segmenter is not None:
        starts = word_starts(tokens, offsets, text, segmenter).tolist() if tokens else []
        bounds = [k for k, s in enumerate(starts) if s or k == 0] + [len(tokens)]
        words = list(zip(bounds[:-1], bounds[1:], strict=True))
    else:
        words = _spaced_words(text, tokens, offsets)
    movable = [move_punct or not _is_punct(text[offsets[a][0]:offsets[b - 1][1]]) for a, b in words]
    return Analysed(text, tokens, offsets, words, movable)


# Punctuation split off the edges of a space-delimited word ("%" or "$" stay: they belong to a number).
_OPENING = set("([{\"'“‘«「『《（")
_CLOSING = set(",;:!?.)]}\"'”’»」』》），。")


def _spaced_words(text: str, tokens: list[str], offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    n = len(tokens)
    piece = [text[a:b] for a, b in offsets]
    chunk_starts = [k for k in range(n)
                    if k == 0 or any(c.isspace() for c in text[offsets[k - 1][1]:offsets[k][0]])]
    bounds = chunk_starts + [n]
    words: list[tuple[int, int]] = []
    for c, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        last = c == len(chunk_starts) - 1
        while a < b and piece[a] and set(piece[a]) <= _OPENING:
            words.append((a, a + 1))
            a += 1
        tail = []
        while b > a and piece[b - 1] and set(piece[b - 1]) <= _CLOSING and (last or piece[b - 1] != "."):
            tail.append((b - 1, b))
            b -= 1
        if a < b:
            words.append((a, b))
        words.extend(reversed(tail))
    return words


def derangement(m: int, rng: random.Random) -> list[int]:
    """A random permutation of range(m) without fixed points (m >= 2)."""
    while True:
        p = list(range(m))
        rng.shuffle(p)
        if all(p[k] != k for k in range(m)):
            return p


def _pick_spans(sent: Analysed, n: int, probs: Sequence[float],
                rng: random.Random) -> list[tuple[int, list[int]]]:
    """Up to n non-overlapping, non-touching word spans, each with a derangement of its words."""
    spans: list[tuple[int, list[int]]] = []
    blocked = [False] * len(sent.words)
    for _ in range(n):
        m = rng.choices(range(2, 2 + len(probs)), weights=probs)[0]
        for size in range(m, 1, -1):  # fall back to shorter spans in short sentences
            cands = [s for s in range(len(sent.words) - size + 1)
                     if all(sent.movable[s:s + size]) and not any(blocked[max(0, s - 1):s + size + 1])]
            if cands:
                s = rng.choice(cands)
                spans.append((s, derangement(size, rng)))
                blocked[s:s + size] = [True] * size
                break
    return spans


def corrupt(sent: Analysed, tokenizer: PreTrainedTokenizerBase, rng: random.Random, n: int,
            probs: Sequence[float], retries: Counter | None = None) -> dict[str, Any] | None:
    """Move whole words in ``n`` local spans; None when no valid corruption was found.

    A corruption is valid when the token sequence changes (swapping equal words does not count), the
    corrupted text tokenises back to exactly the permuted tokens, and rendering it with the labels gives
    the original text back.
    """
    retries = retries if retries is not None else Counter()
    ntok = len(sent.tokens)
    for _ in range(MAX_ATTEMPTS):
        spans = _pick_spans(sent, n, probs, rng)
        if not spans:
            retries["no_movable_span"] += 1
            return None
        src = list(range(ntok))  # src[j]: original position of the token now at j
        moves = []
        for s, order in sorted(spans):
            a, b = sent.words[s][0], sent.words[s + len(order) - 1][1]
            src[a:b] = [k for w in order for k in range(*sent.words[s + w])]
            moves.append([a, b])
        if [sent.tokens[k] for k in src] == sent.tokens:
            retries["same_tokens"] += 1
            continue
        labels = [0] * ntok
        for j, k in enumerate(src):
            labels[k] = j
        # Words of unequal length can land on their own token position; every word must move.
        firsts = [sent.words[s + w][0] for s, order in spans for w in range(len(order))]
        if any(labels[k] == k for k in firsts):
            retries["word_kept_its_place"] += 1
            continue
        corrupted, _ = render(sent.text, sent.tokens, sent.offsets, src)
        enc = tokenizer(corrupted, add_special_tokens=False, return_offsets_mapping=True)
        tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"])
        if tokens != [sent.tokens[k] for k in src]:
            retries["retokenised_differently"] += 1
            continue
        back, _ = render(corrupted, tokens, [tuple(o) for o in enc["offset_mapping"]], labels)
        if back != sent.text:
            retries["spacing_not_invertible"] += 1
            continue
        return {"corrupted": corrupted, "tokens": tokens, "labels": labels, "moves": moves,
                "words_moved": [len(order) for _, order in sorted(spans)]}
    retries["gave_up"] += 1
    return None


def _split_of(seed: int, doc: int, dev_ratio: float, test_ratio: float) -> str:
    u = random.Random(f"{seed}:split:{doc}").random()
    return "test" if u < test_ratio else "dev" if u < test_ratio + dev_ratio else "train"


def make_wor_data(cfg: WorDataConfig) -> dict[str, Any]:
    """Write train/dev/test.jsonl and stats.json under ``cfg.out``; returns the statistics."""
    from pert.hub import resolve_model

    tokenizer = load_tokenizer(resolve_model(cfg.vocab, cfg.revision), cfg.lowercase)
    segmenter = get_segmenter(cfg.segmenter) if cfg.lang == "zh" else None
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    caps = {"train": cfg.max_train, "dev": cfg.max_dev, "test": cfg.max_test}
    stats: dict[str, Any] = {s: Counter() for s in SPLITS}
    shapes: dict[str, Counter] = {s: Counter() for s in SPLITS}
    skipped: Counter = Counter()
    retries: Counter = Counter()
    seen: set[bytes] = set()
    problems = Problems()
    files = {s: open(out / f"{s}.jsonl.tmp", "w", encoding="utf-8", newline="\n") for s in SPLITS}
    try:
        for d, doc in enumerate(iter_documents(cfg.inputs, text_field=cfg.text_field, doc_sep=cfg.doc_sep,
                                               problems=problems)):
            if all(caps[s] and stats[s]["sentences"] >= caps[s] for s in SPLITS):
                break
            if is_markup(doc.text):
                continue
            split = _split_of(cfg.seed, d, cfg.dev_ratio, cfg.test_ratio)
            if caps[split] and stats[split]["sentences"] >= caps[split]:
                continue
            for k, text in enumerate(split_sentences(doc.text, cfg.lang)):
                if caps[split] and stats[split]["sentences"] >= caps[split]:
                    break
                record = _make_record(text, cfg, tokenizer, segmenter, random.Random(f"{cfg.seed}:{d}:{k}"),
                                      skipped, retries, seen)
                if record is None:
                    continue
                st = stats[split]
                words_moved = record.pop("_words_moved")
                record = {"id": f"{split}-{st['sentences']}", **record, "source": doc.source}
                files[split].write(json.dumps(record, ensure_ascii=False) + "\n")
                st["sentences"] += 1
                st["tokens"] += len(record["tokens"])
                if record["moves"]:
                    st["corrupted"] += 1
                    st["moved_tokens"] += sum(lab != i for i, lab in enumerate(record["labels"]))
                    shapes[split][f"{len(record['moves'])}_spans"] += 1
                    for m in words_moved:
                        shapes[split][f"{m}_words"] += 1
                else:
                    st["negatives"] += 1
    finally:
        for f in files.values():
            f.close()
    for s in SPLITS:
        (out / f"{s}.jsonl.tmp").replace(out / f"{s}.jsonl")
    result = {
        "pert_version": pert.__version__,
        "config": {k: v for k, v in to_dict(cfg).items() if k != "out"},
        "vocab_sha256": _vocab_hash(tokenizer),
        "splits": {s: _summary(stats[s], shapes[s]) for s in SPLITS},
        "skipped_sentences": dict(sorted(skipped.items())),
        "corruption_retries": dict(sorted(retries.items())),
        "input_problems": problems.as_dict(),
    }
    (out / "stats.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result


def _make_record(text: str, cfg: WorDataConfig, tokenizer: PreTrainedTokenizerBase,
                 segmenter: Segmenter | None, rng: random.Random, skipped: Counter, retries: Counter,
                 seen: set[bytes]) -> dict | None:
    key = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    if key in seen:
        skipped["duplicate"] += 1
        return None
    sent = analyse(text, tokenizer, segmenter, cfg.move_punct)
    n = len(sent.tokens)
    if n < cfg.min_tokens:
        skipped["too_short"] += 1
        return None
    if n > cfg.max_tokens:
        skipped["too_long"] += 1
        return None
    seen.add(key)
    if rng.random() < cfg.negative_ratio:
        return {"corrupted": text, "original": text, "tokens": sent.tokens, "labels": list(range(n)),
                "moves": [], "_words_moved": []}
    c = corrupt(sent, tokenizer, rng, rng.randint(cfg.min_corruptions, cfg.max_corruptions), cfg.span_probs,
                retries)
    if c is None:
        seen.discard(key)
        skipped["no_valid_corruption"] += 1
        return None
    return {"corrupted": c["corrupted"], "original": text, "tokens": c["tokens"], "labels": c["labels"],
            "moves": c["moves"], "_words_moved": c["words_moved"]}


def _summary(st: Counter, shapes: Counter) -> dict[str, Any]:
    n = st["sentences"]
    return {
        "sentences": n,
        "corrupted": st["corrupted"],
        "negatives": st["negatives"],
        "mean_tokens": round(st["tokens"] / n, 2) if n else 0.0,
        "moved_token_share": round(st["moved_tokens"] / st["tokens"], 4) if st["tokens"] else 0.0,
        "spans_per_corrupted": {k.split("_")[0]: v for k, v in sorted(shapes.items()) if k.endswith("spans")},
        "words_per_span": {k.split("_")[0]: v for k, v in sorted(shapes.items()) if k.endswith("words")},
    }


def _vocab_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    vocab = tokenizer.get_vocab()
    text = "\n".join(t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class WorExample:
    """One record read back from a WOR JSONL file."""

    id: str
    corrupted: str
    original: str
    tokens: list[str]
    labels: list[int]
    moves: list[list[int]]
    where: str


def read_wor_jsonl(path: str | Path) -> list[WorExample]:
    """Read and validate a WOR JSONL file; errors name the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such WOR data file")
    out: list[WorExample] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{i}"
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e})") from e
            if not isinstance(r, dict):
                raise ValueError(f"{where}: expected a JSON object")
            for key, tp in (("corrupted", str), ("original", str), ("tokens", list), ("labels", list)):
                if not isinstance(r.get(key), tp):
                    raise ValueError(f"{where}: field {key!r} missing or not a {tp.__name__}")
            tokens, labels = r["tokens"], r["labels"]
            if len(labels) != len(tokens) or sorted(labels) != list(range(len(tokens))):
                raise ValueError(f"{where}: field 'labels' must be a permutation of 0..{len(tokens) - 1}")
            out.append(WorExample(str(r.get("id", i)), r["corrupted"], r["original"], tokens, labels,
                                  r.get("moves", []), where))
    return out
