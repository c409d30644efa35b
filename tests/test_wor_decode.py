"""Decoding: a true permutation of the input tokens, and text rebuilt exactly from the input's characters."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig

from pert.cli import main
from pert.convert.hf import save_model_folder
from pert.modeling import PertForPreTraining
from pert.text import load_tokenizer
from pert.wor.decode import assign, render
from pert.wor.restore import Restorer, restore, restore_file


@pytest.fixture(scope="module")
def zh_tok(shared_data: Path):
    return load_tokenizer(shared_data / "vocab" / "bert-base-chinese" / "vocab.txt")


@pytest.fixture(scope="module")
def en_tok(shared_data: Path):
    return load_tokenizer(shared_data / "vocab" / "bert-base-uncased" / "vocab.txt")


def _enc(tok, text: str):
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return tok.convert_ids_to_tokens(enc["input_ids"]), enc["offset_mapping"]


def _move(perm_len: int, frm: list[int], to: list[int]) -> list[int]:
    """The permutation that puts the tokens at input positions ``frm`` into output positions ``to``."""
    p = list(range(perm_len))
    for a, b in zip(frm, to, strict=True):
        p[b] = a
    return p


def test_assign_is_optimal_permutation() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 6):
        scores = rng.normal(size=(n, n))
        perm = assign(scores)
        assert sorted(perm.tolist()) == list(range(n))
        best = max(itertools.permutations(range(n)), key=lambda p: sum(scores[i, p[i]] for i in range(n)))
        assert perm.tolist() == list(best)
    # A row-wise argmax would take column 0 twice; masked (-inf) entries are avoided when possible.
    scores = np.array([[0.0, -5.0, -np.inf], [0.0, -1.0, -9.0], [-np.inf, -3.0, 0.0]])
    assert np.argmax(scores, 1).tolist() == [0, 0, 2]
    assert assign(scores).tolist() == [0, 1, 2]
    assert assign(np.zeros((0, 0))).tolist() == []


@pytest.mark.parametrize("text", ["１９９８年，我用 iPhone 看了《人民日报》。\u3000结束", "中国 人民  银行",
                                  "他说：“好的！”"])
def test_identity_returns_chinese_input_exactly(zh_tok, text: str) -> None:
    tokens, offsets = _enc(zh_tok, text)
    assert render(text, tokens, offsets, list(range(len(tokens))))[0] == text


def test_identity_returns_english_input_exactly(en_tok) -> None:
    text = "  The U.S. economy's  growth (unbelievably) was 3.5%!  "
    tokens, offsets = _enc(en_tok, text)
    assert render(text, tokens, offsets, list(range(len(tokens))))[0] == text


def test_render_reorders_without_spaces_in_chinese(zh_tok) -> None:
    text = "我们今天北京去开会。"
    tokens, offsets = _enc(zh_tok, text)  # 我 们 今 天 北 京 去 开 会 。
    perm = [0, 1, 2, 3, 6, 4, 5, 7, 8, 9]
    out, spans = render(text, tokens, offsets, perm)
    assert out == "我们今天去北京开会。"
    assert [out[a:b] for a, b in spans] == [tokens[k] for k in perm]


def test_render_restores_english_spacing(en_tok) -> None:
    text = "The dog big, unbelievably was barking."
    tokens, offsets = _enc(en_tok, text)
    assert tokens[:6] == ["the", "dog", "big", ",", "un", "##bel"]
    was = tokens.index("was")
    unb = list(range(4, was))  # "unbelievably" is several pieces
    perm = [0, 2, 1, 3, was, *unb, *range(was + 1, len(tokens))]
    assert render(text, tokens, offsets, perm)[0] == "The big dog, was unbelievably barking."
    with pytest.raises(ValueError, match="not a permutation"):
        render(text, tokens, offsets, [0] * len(tokens))


@pytest.fixture(scope="module")
def random_model(zh_tok, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(zh_tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    model = PertForPreTraining(cfg)
    with torch.no_grad():  # a strong random position bias makes the untrained model reorder a lot
        model.perlm_head.position_bias.normal_(0, 5)
    return save_model_folder(model, zh_tok, tmp_path_factory.mktemp("m") / "random", {"task": "wor"})


def test_restore_output_is_a_permutation_of_the_input(random_model: Path, zh_tok, tmp_path: Path,
                                                      capsys) -> None:
    texts = ["我们今天去北京开会，讨论明年的工作计划。", "１９９８年，我用 iPhone 看了《人民日报》。", "",
             "很长的句子" * 20]
    results = Restorer(random_model, batch_size=3, precision="fp32").restore(texts)
    changed = 0
    for text, r in zip(texts, results, strict=True):
        assert Counter(r.text.replace(" ", "")) == Counter(text.replace(" ", ""))
        assert Counter(r.tokens) == Counter(zh_tok.tokenize(text))
        changed += r.text != text
    assert changed >= 2  # the random model does reorder, and the output is still the input's tokens
    assert results[3].text[62:] == texts[3][62:]  # past max_seq_len - 2 tokens nothing moves
    assert restore(random_model, texts[:1], precision="fp32") == [results[0].text]

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"corrupted": t, "original": t}, ensure_ascii=False) + "\n"
                           for t in texts[:2]), encoding="utf-8")
    scores = restore_file(random_model, src, tmp_path / "out.jsonl", precision="fp32")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    assert [r["output"] for r in rows] == [r.text for r in results[:2]]
    assert scores["positive"] == 0 and scores["sentence_accuracy"] == 100.0 * sum(
        r.text == t for r, t in zip(results[:2], texts, strict=False)) / 2

    assert main(["restore", "--model", str(random_model), texts[0]]) == 0
    assert capsys.readouterr().out == results[0].text + "\n"
    assert main(["restore", "--model", str(random_model), "--input", str(tmp_path / "nope.txt"),
                 "--output", str(tmp_path / "o.txt")]) == 2
    assert "nope.txt: no such input file" in capsys.readouterr().err
