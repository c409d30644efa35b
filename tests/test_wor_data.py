"""Word-order restoration data: recoverable originals, untouched negatives, whole-word moves, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pert.cli import main
from pert.config import ConfigError
from pert.text import get_segmenter, load_tokenizer
from pert.wor.data import WorDataConfig, analyse, make_wor_data, read_wor_jsonl
from pert.wor.decode import render
from pert.wor.sentences import split_sentences
from pert.wor.sources import peoples_daily_lines, write_lines


@pytest.fixture(scope="module")
def zh_vocab(shared_data: Path) -> Path:
    return shared_data / "vocab" / "bert-base-chinese" / "vocab.txt"


@pytest.fixture(scope="module")
def en_vocab(shared_data: Path) -> Path:
    return shared_data / "vocab" / "bert-base-uncased" / "vocab.txt"


@pytest.fixture(scope="module")
def pd_text(peoples_daily_tagged: Path, tmp_path_factory) -> Path:
    lines = list(peoples_daily_lines(peoples_daily_tagged))[:400]
    return write_lines(iter(lines), tmp_path_factory.mktemp("pd") / "pd.txt")


@pytest.fixture(scope="module")
def en_text(shared_data: Path, tmp_path_factory) -> Path:
    src = shared_data / "en" / "enwiki-extract-sample" / "AA" / "wiki_00"
    lines = src.read_text(encoding="utf-8").splitlines()[:600]
    out = tmp_path_factory.mktemp("en") / "wiki.txt"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def _make(out: Path, text: Path, vocab: Path, lang: str = "zh", **kw) -> dict:
    cfg = WorDataConfig(out=str(out), vocab=str(vocab), inputs=[str(text)], lang=lang, dev_ratio=0.1,
                        test_ratio=0.1, **kw)
    return make_wor_data(cfg)


def _records(folder: Path) -> list:
    return [r for s in ("train", "dev", "test") for r in read_wor_jsonl(folder / f"{s}.jsonl")]


@pytest.fixture(scope="module")
def zh_data(tmp_path_factory, pd_text: Path, zh_vocab: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("wor_zh")
    return out, _make(out, pd_text, zh_vocab)


def test_split_sentences() -> None:
    assert split_sentences("他说：“好！”我们走吧。还有……最后", "zh") == \
        ["他说：“好！”", "我们走吧。", "还有……", "最后"]
    assert split_sentences("Mr. Smith went to Washington D.C. on Monday. He left.", "en") == \
        ["Mr. Smith went to Washington D.C. on Monday.", "He left."]
    assert split_sentences('<doc id="1" url="x" title="T">\nA b.\n</doc>', "en") == ["A b."]


def test_original_recoverable_from_mapping(zh_data, zh_vocab: Path) -> None:
    out, stats = zh_data
    tok = load_tokenizer(zh_vocab)
    records = _records(out)
    assert len(records) == sum(s["sentences"] for s in stats["splits"].values()) > 500
    for r in records:
        assert [r.tokens[j] for j in r.labels] == tok.tokenize(r.original)
        assert tok.tokenize(r.corrupted) == r.tokens
        enc = tok(r.corrupted, add_special_tokens=False, return_offsets_mapping=True)
        assert render(r.corrupted, r.tokens, enc["offset_mapping"], r.labels)[0] == r.original
        assert (r.corrupted != r.original) == bool(r.moves)


def test_negatives_unchanged_and_share(zh_data) -> None:
    out, stats = zh_data
    records = _records(out)
    negatives = [r for r in records if not r.moves]
    for r in negatives:
        assert r.corrupted == r.original and r.labels == list(range(len(r.tokens)))
    share = len(negatives) / len(records)
    assert 0.25 < share < 0.35  # --negative-ratio 0.3
    assert sum(s["negatives"] for s in stats["splits"].values()) == len(negatives)
    # No sentence is in two splits.
    texts = {s: {r.original for r in read_wor_jsonl(out / f"{s}.jsonl")} for s in ("train", "dev", "test")}
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"]


def test_corruptions_move_only_whole_words(zh_data, zh_vocab: Path) -> None:
    out, _ = zh_data
    tok, seg = load_tokenizer(zh_vocab), get_segmenter("rjieba")
    sizes = set()
    for r in _records(out):
        if not r.moves:
            continue
        words = analyse(r.original, tok, seg).words
        starts = {a for a, _ in words} | {len(r.tokens)}
        inside = set()
        for a, b in r.moves:
            assert a in starts and b in starts  # a move covers whole words
            span_words = [(s, e) for s, e in words if a <= s < b]
            sizes.add(len(span_words))
            assert 2 <= len(span_words) <= 4
            for s, e in span_words:
                # each word stays in one piece, and every word of the span moves
                assert r.labels[s:e] == list(range(r.labels[s], r.labels[s] + e - s))
                assert r.labels[s] != s
            inside.update(range(a, b))
        assert all(r.labels[i] == i for i in range(len(r.tokens)) if i not in inside)
    assert sizes == {2, 3, 4}


def test_same_seed_same_bytes(tmp_path: Path, pd_text: Path, zh_vocab: Path, zh_data) -> None:
    ref, _ = zh_data
    _make(tmp_path / "a", pd_text, zh_vocab)
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "stats.json"):
        assert (tmp_path / "a" / name).read_bytes() == (ref / name).read_bytes()
    _make(tmp_path / "b", pd_text, zh_vocab, seed=7)
    assert (tmp_path / "b" / "train.jsonl").read_bytes() != (ref / "train.jsonl").read_bytes()


def test_english_whole_words_and_spacing(tmp_path: Path, en_text: Path, en_vocab: Path) -> None:
    stats = _make(tmp_path, en_text, en_vocab, lang="en", max_train=150)
    tok = load_tokenizer(en_vocab)
    records = _records(tmp_path)
    assert stats["splits"]["train"]["sentences"] == 150
    for r in records:
        assert [r.tokens[j] for j in r.labels] == tok.tokenize(r.original)
        # words move, spaces stay: same characters, same spaces, never a word glued to another
        assert sorted(r.corrupted) == sorted(r.original)
        assert r.corrupted.count(" ") == r.original.count(" ")
        assert len(r.corrupted.split()) == len(r.original.split())
    ex = analyse("The U.S. economy's growth, we said (quietly), was 3.5% in 2018.", tok, None)
    words = [ex.text[ex.offsets[a][0]:ex.offsets[b - 1][1]] for a, b in ex.words]
    assert words == ["The", "U.S.", "economy's", "growth", ",", "we", "said", "(", "quietly", ")", ",",
                     "was", "3.5%", "in", "2018", "."]


def test_cli_and_errors(tmp_path: Path, pd_text: Path, zh_vocab: Path, capsys) -> None:
    rc = main(["wor-data", str(pd_text), "--vocab", str(zh_vocab), "--out", str(tmp_path / "o"),
               "--max-train", "50", "--max-dev", "10", "--max-test", "10", "--negative-ratio", "0"])
    assert rc == 0 and "train: 50 sentences (50 corrupted, 0 unchanged)" in capsys.readouterr().out
    stats = json.loads((tmp_path / "o" / "stats.json").read_text("utf-8"))
    assert stats["splits"]["test"]["sentences"] == 10
    assert main(["wor-data", str(pd_text), "--out", str(tmp_path / "x")]) == 2
    assert "--vocab is required" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="--span-probs"):
        WorDataConfig(out="o", vocab="v", inputs=["i"], span_probs=[0.5, 0.6])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"corrupted": "ab", "original": "ba", "tokens": ["a", "b"], "labels": [1, 1]}\n', "utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: field 'labels' must be a permutation"):
        read_wor_jsonl(bad)
