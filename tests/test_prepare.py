"""`pert prepare`: counts, word boundaries, exact tokenisation, bad input, formats, idempotence."""

from __future__ import annotations

import gzip
import json
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rjieba
from transformers import BertTokenizer

from pert.corpus.dataset import PreparedCorpus
from pert.corpus.prepare import PrepareConfig, prepare
from pert.text.tokenizer import load_tokenizer
from pert.text.vocab import build_vocab


@pytest.fixture(scope="module")
def pd_lines(peoples_daily_tagged) -> list[str]:
    lines = []
    for line in peoples_daily_tagged.read_text(encoding="utf-8").splitlines()[:3000]:
        lines.append("".join(tok.rsplit("/", 1)[0] for tok in line.split()))
    return lines


@pytest.fixture(scope="module")
def pd_corpus(tmp_path_factory, pd_lines) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pd")
    text = root / "pd.txt"
    text.write_text("\n".join(pd_lines) + "\n", encoding="utf-8")
    vocab = root / "vocab.txt"
    build_vocab(pd_lines, vocab, vocab_size=6000)
    return text, vocab


def test_counts_match_the_input_and_bert_tokenizer(tmp_path, pd_corpus, pd_lines):
    text, vocab = pd_corpus
    manifest = prepare(PrepareConfig(out=str(tmp_path / "out"), vocab=str(vocab), inputs=[str(text)], workers=1))
    docs = [line.strip() for line in pd_lines if line.strip()]
    reference = BertTokenizer(str(vocab), do_lower_case=True)
    expected_tokens = sum(len(ids) + 1 for ids in reference(docs, add_special_tokens=False).input_ids)
    assert manifest["documents"] == len(docs)
    assert manifest["tokens"] == expected_tokens
    assert manifest["characters"] == sum(map(len, docs))
    assert manifest["segmenter"] == "rjieba" and manifest["skipped"]["counts"] == {}
    corpus = PreparedCorpus(tmp_path / "out")
    offsets = np.load(tmp_path / "out" / "doc_offsets.npy")
    assert offsets[-1] == len(corpus.tokens) == expected_tokens
    assert np.all(corpus.tokens[offsets[1:] - 1] == reference.sep_token_id)  # each document ends with [SEP]


def test_word_boundaries_agree_with_the_segmenter(tmp_path, pd_corpus, pd_lines):
    text, vocab = pd_corpus
    prepare(PrepareConfig(out=str(tmp_path / "out"), vocab=str(vocab), inputs=[str(text)], workers=1))
    corpus = PreparedCorpus(tmp_path / "out")
    offsets = np.load(tmp_path / "out" / "doc_offsets.npy")
    tok = load_tokenizer(vocab)
    docs = [line.strip() for line in pd_lines if line.strip()]
    checked = 0
    for d in random.Random(0).sample(range(len(docs)), 200):
        enc = tok(docs[d], add_special_tokens=False, return_offsets_mapping=True)
        ws = corpus.word_starts[offsets[d]:offsets[d + 1] - 1].astype(bool)
        assert list(corpus.tokens[offsets[d]:offsets[d + 1] - 1]) == enc.input_ids
        seg_words = list(rjieba.cut(docs[d]))
        seg_starts = set(np.cumsum([0] + [len(w) for w in seg_words])[:-1].tolist())
        token_starts = [a for a, _ in enc.offset_mapping]
        pieces = tok.convert_ids_to_tokens(enc.input_ids)
        # a piece starts a word exactly where the segmenter starts one (a piece may cover several words,
        # as full-width digits １９９７ do, and a ## piece never starts one)
        expected = [i for i, a in enumerate(token_starts) if a in seg_starts and not pieces[i].startswith("##")]
        assert np.flatnonzero(ws).tolist() == expected, docs[d]
        # where every segmenter word starts a piece that can start a word (not a ## continuation, which joins the
        # word before it), the words are the segmenter's exactly
        word_piece_starts = {a for a, p in zip(token_starts, pieces, strict=True) if not p.startswith("##")}
        if word_piece_starts >= seg_starts - {a for a in seg_starts if docs[d][a].isspace()}:
            starts = [token_starts[i] for i in expected] + [len(docs[d])]
            words = [docs[d][a:b].strip() for a, b in zip(starts, starts[1:], strict=False)]
            assert words == [w for w in seg_words if w.strip()]  # the segmenter's words, exactly
            checked += 1
    assert checked >= 100


def _texts_from_squad_json(data: dict, limit: int) -> list[str]:
    texts = []
    for article in data["data"]:
        for para in article["paragraphs"]:
            texts.append(para["context"])
            texts.extend(qa["question"] for qa in para["qas"][:2])
    return random.Random(1).sample(texts, limit)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_token_ids_equal_bert_tokenizer_on_real_task_text(tmp_path, shared_data, lang):
    if lang == "zh":
        vocab = shared_data / "vocab" / "bert-base-chinese" / "vocab.txt"
        data = json.loads((shared_data / "zh" / "cmrc2018" / "cmrc2018_dev.json").read_text(encoding="utf-8"))
    else:
        vocab = shared_data / "vocab" / "bert-base-uncased" / "vocab.txt"
        with zipfile.ZipFile(shared_data / "en" / "squad1.1" / "dev-v1.1.json.zip") as z:
            data = json.loads(z.read(next(n for n in z.namelist() if n.endswith(".json"))))
    texts = [t.replace("\n", " ").strip() for t in _texts_from_squad_json(data, 300)]
    src = tmp_path / "texts.jsonl"
    src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    prepare(PrepareConfig(out=str(tmp_path / "out"), vocab=str(vocab), lang=lang, inputs=[str(src)], workers=2))
    corpus = PreparedCorpus(tmp_path / "out")
    offsets = np.load(tmp_path / "out" / "doc_offsets.npy")
    reference = BertTokenizer(str(vocab), do_lower_case=True)
    for d, text in enumerate(texts):
        assert list(corpus.tokens[offsets[d]:offsets[d + 1] - 1]) == reference(text, add_special_tokens=False).input_ids
    if lang == "en":  # English words: a piece and its ## continuations
        pieces = reference.convert_ids_to_tokens(corpus.tokens[:offsets[1] - 1].tolist())
        ws = corpus.word_starts[:offsets[1] - 1].astype(bool)
        assert list(ws) == [not p.startswith("##") for p in pieces]


def test_bad_input_is_skipped_or_cut_and_reported(tmp_path, pd_corpus, caplog):
    _, vocab = pd_corpus
    bad = tmp_path / "bad.txt"
    with open(bad, "wb") as f:
        f.write("第一个正常的句子。\n".encode())
        f.write(b"\xff\xfe invalid utf-8 \xc3\x28\n")  # line 2
        f.write(b"\n")  # line 3: empty document
        f.write("控制\x07字符\x1b在这里出现了两次，其余都是正常的文本。\n".encode())  # line 4
        f.write(bytes(b for b in range(1, 32) if b not in b"\r\n") * 20 + b"\n")  # line 5: binary junk
        f.write(("很长的一行" * 3_500_000).encode() + b"\n")  # line 6: 52.5 MB of UTF-8 in one line
        f.write("最后一个句子。\n".encode())  # line 7
    manifest = prepare(PrepareConfig(out=str(tmp_path / "out"), vocab=str(vocab), inputs=[str(bad)], workers=1))
    counts = manifest["skipped"]["counts"]
    assert counts == {"invalid_utf8_skipped": 1, "empty_document_skipped": 1, "control_chars_removed": 1,
                      "binary_skipped": 1, "line_too_long_cut": 1}
    ex = manifest["skipped"]["examples"]
    assert ex["invalid_utf8_skipped"] == [f"{bad}:2"] and ex["line_too_long_cut"] == [f"{bad}:6"]
    assert f"{bad}:2: invalid utf8 skipped" in caplog.text
    assert manifest["documents"] == 4
    corpus = PreparedCorpus(tmp_path / "out")
    offsets = np.load(tmp_path / "out" / "doc_offsets.npy")
    assert offsets[4] - offsets[3] == len("最后一个句子。") + 1  # the last line survived intact, + [SEP]
    assert corpus.tokens[offsets[4] - 1] == corpus.sep_id
    assert offsets[3] - offsets[2] - 1 <= (1 << 20) // 3  # the long line was cut to max_line_bytes


def test_formats_jsonl_gz_blank_separated_and_folders(tmp_path, pd_corpus):
    _, vocab = pd_corpus
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    with gzip.open(folder / "a.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": "今天天气很好。"}, ensure_ascii=False) + "\n")
        f.write("{not json\n")
        f.write(json.dumps({"body": "没有文本字段"}, ensure_ascii=False) + "\n")
    (folder / "sub" / "b.txt").write_text("第一段第一行。\n第一段第二行。\n\n\n第二段。\n", encoding="utf-8")
    (folder / "ignored.csv").write_text("x\n", encoding="utf-8")
    manifest = prepare(PrepareConfig(out=str(tmp_path / "out"), vocab=str(vocab), inputs=[str(folder)],
                                     doc_sep="blank", workers=1))
    assert manifest["documents"] == 3
    assert [i["file"] for i in manifest["inputs"]] == ["a.jsonl.gz", "b.txt"]
    assert manifest["skipped"]["counts"] == {"invalid_json_skipped": 1, "no_text_field_text_skipped": 1}


def test_rerun_is_idempotent_and_parallel_output_is_identical(tmp_path, pd_corpus):
    text, vocab = pd_corpus
    cfg = PrepareConfig(out=str(tmp_path / "one"), vocab=str(vocab), inputs=[str(text)], workers=1)
    prepare(cfg)
    stamp = (tmp_path / "one" / "tokens.bin").stat().st_mtime_ns
    prepare(cfg)
    assert (tmp_path / "one" / "tokens.bin").stat().st_mtime_ns == stamp  # up to date: nothing rewritten
    prepare(PrepareConfig(out=str(tmp_path / "two"), vocab=str(vocab), inputs=[str(text)], workers=2,
                          chunk_docs=97))
    for name in ("tokens.bin", "word_starts.bin", "doc_offsets.npy"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert not list(tmp_path.glob("*.tmp"))


def test_config_errors_name_the_flag(tmp_path):
    from pert.config import ConfigError

    with pytest.raises(ConfigError, match="--lang must be zh or en"):
        PrepareConfig(out="x", vocab="v", inputs=["a"], lang="fr")
    with pytest.raises(FileNotFoundError, match="no such vocab file"):
        prepare(PrepareConfig(out=str(tmp_path / "o"), vocab=str(tmp_path / "none.txt"), inputs=["a"]))


def test_vocab_follows_bert_conventions(pd_corpus, pd_lines):
    _, vocab = pd_corpus
    pieces = vocab.read_text(encoding="utf-8").splitlines()
    assert pieces[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(pieces) == len(set(pieces)) <= 6000
    cjk = [p.removeprefix("##") for p in pieces if any("\u4e00" <= ch <= "\u9fff" for ch in p)]
    assert cjk and all(len(p) == 1 for p in cjk)  # Chinese characters are single tokens
    tok = BertTokenizer(str(vocab))
    assert tok.tokenize("中共中央总书记") == list("中共中央总书记")
    unk = sum(t == "[UNK]" for line in pd_lines[:200] for t in tok.tokenize(line))
    assert unk == 0  # every character of the training text is in the vocabulary
