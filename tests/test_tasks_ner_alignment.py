"""NER alignment: gold tags -> word pieces (label on the first piece, sliding windows) -> back to
characters/words reproduces the gold sequence exactly, on real MSRA and CoNLL sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pert.tasks import get_task
from pert.tasks.base import IGNORE_INDEX
from pert.tasks.ner import NerExample
from pert.text import load_tokenizer


def _round_trip(task, examples, tokenizer, max_seq_len: int) -> tuple[list[list[str]], list[dict]]:
    """Encode, fake logits that are one-hot on each feature's gold label, decode."""
    features = task.encode(examples, tokenizer, max_seq_len)
    n_tags = len(task.tag_names())
    logits = []
    for f in features:
        assert len(f["input_ids"]) <= max_seq_len
        x = np.zeros((len(f["input_ids"]), n_tags), dtype=np.float32)
        for pos, label in enumerate(f["labels"]):
            if label != IGNORE_INDEX:
                x[pos, label] = 1.0
        logits.append(x)
    return task.postprocess(examples, features, {"logits": logits}), features


@pytest.mark.parametrize("max_seq_len", [512, 24])
def test_msra_chars_round_trip(shared_data: Path, max_seq_len: int) -> None:
    task = get_task("msra-ner", ["doc_stride=6"])
    examples = task.read(shared_data / "zh/msra_ner", "test")[:400]
    tokenizer = load_tokenizer(shared_data / "vocab/bert-base-chinese/vocab.txt")
    predicted, features = _round_trip(task, examples, tokenizer, max_seq_len)
    assert predicted == [e.tags for e in examples]
    if max_seq_len == 24:  # long sentences really were cut into several windows
        assert len(features) > len(examples) * 1.5


def test_conll_words_round_trip_with_windows(shared_data: Path, minilm_dir: Path) -> None:
    task = get_task("conll2003", ["doc_stride=4"])
    examples = task.read(shared_data / "en/conll2003", "dev")[:400]
    tokenizer = load_tokenizer(minilm_dir)
    predicted, features = _round_trip(task, examples, tokenizer, 16)
    assert predicted == [e.tags for e in examples]
    assert len(features) > len(examples)
    # labels sit on the first piece of each word only
    f = features[0]
    firsts = [w for w in f["word_ids"] if w >= 0]
    assert sum(lab != IGNORE_INDEX for lab in f["labels"]) == len(firsts)


def test_words_without_pieces_get_unk(minilm_dir: Path) -> None:
    task = get_task("conll2003")
    tokenizer = load_tokenizer(minilm_dir)
    ex = NerExample(["Paris", "\u200b", "London"], ["B-LOC", "O", "B-LOC"])
    predicted, features = _round_trip(task, [ex], tokenizer, 16)
    assert predicted == [ex.tags]
    assert tokenizer.unk_token_id in features[0]["input_ids"]


def test_prediction_comes_from_the_window_with_most_context(minilm_dir: Path) -> None:
    task = get_task("conll2003", ["doc_stride=4"])
    tokenizer = load_tokenizer(minilm_dir)
    words = [f"w{i}" for i in range(20)]  # "w0" -> pieces "w", "##0": 2 pieces a word
    ex = NerExample(words, ["O"] * 20)
    features = task.encode([ex], tokenizer, 12)  # windows of 10 pieces, 4 overlapping
    assert 3 <= len(features) < len(task.tag_names()) - 1
    names = task.tag_names()
    # every window votes for a different tag; each word must take the vote of its best-centred window
    logits = []
    for k, f in enumerate(features):
        x = np.zeros((len(f["input_ids"]), len(names)), dtype=np.float32)
        x[:, 1 + k % (len(names) - 1)] = 1.0
        logits.append(x)
    (pred,) = task.postprocess([ex], features, {"logits": logits})
    for w, tag in enumerate(pred):
        k = names.index(tag) - 1
        f = features[k]
        pos = f["word_ids"].index(w)
        best = max(g["context"][g["word_ids"].index(w)] for g in features if w in g["word_ids"])
        assert f["context"][pos] == best
