"""Every reader parses its real staged files with the counts of ../shared/data/*/SOURCES.md; bad input
gives errors that name file, line and field."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from pert.metrics.ner import entities
from pert.tasks import get_task, task_names

# (task, folder under shared/data, split, examples, label counts or None); None examples = no file there
CLASSIFICATION = [
    ("chnsenticorp", "zh/chnsenticorp", "train", 9600, {"0": 4801, "1": 4799}),
    ("chnsenticorp", "zh/chnsenticorp", "dev", 1200, {"0": 607, "1": 593}),
    ("chnsenticorp", "zh/chnsenticorp", "test", 1200, {"0": 592, "1": 608}),
    ("tnews", "zh/tnews", "train", 53360, None),
    ("tnews", "zh/tnews", "dev", 10000, None),
    ("xnli", "zh/xnli", "dev", 2490, {"entailment": 830, "neutral": 830, "contradiction": 830}),
    ("xnli", "zh/xnli", "test", 5010, {"entailment": 1670, "neutral": 1670, "contradiction": 1670}),
    ("lcqmc", "zh/lcqmc", "dev", 8802, {"1": 4402, "0": 4400}),
    ("lcqmc", "zh/lcqmc", "test", 12500, {"1": 6250, "0": 6250}),
    ("bq", "zh/bq_corpus", "train", 100000, {"0": 50000, "1": 50000}),
    ("bq", "zh/bq_corpus", "dev", 10000, {"0": 5000, "1": 5000}),
    ("bq", "zh/bq_corpus", "test", 10000, {"0": 5000, "1": 5000}),
    ("bq", "zh/bq_corpus/chineseglue", "dev", 10000, {"0": 5000, "1": 5000}),
    ("ocnli", "zh/ocnli", "train", 50486 - 49, {"neutral": 17182, "entailment": 16779, "contradiction": 16476}),
    ("ocnli", "zh/ocnli", "dev", 3000 - 50, {"neutral": 1103, "entailment": 947, "contradiction": 900}),
    ("ocnli", "zh/ocnli", "test", 3000, {None: 3000}),
    ("sst2", "en/glue/SST-2", "train", 67349, {"1": 37569, "0": 29780}),
    ("sst2", "en/glue/SST-2", "dev", 872, {"1": 444, "0": 428}),
    ("sst2", "en/glue/SST-2", "test", 1821, {None: 1821}),
    ("cola", "en/glue/CoLA", "train", 8551, {"1": 6023, "0": 2528}),
    ("cola", "en/glue/CoLA", "dev", 1043, {"1": 721, "0": 322}),
    ("cola", "en/glue/CoLA", "test", 1063, {None: 1063}),
    ("mrpc", "en/glue/MRPC", "train", 3668, {"1": 2474, "0": 1194}),
    ("mrpc", "en/glue/MRPC", "dev", 408, {"1": 279, "0": 129}),
    ("mrpc", "en/glue/MRPC", "test", 1725, {None: 1725}),
    ("xnli", "zh/xnli", "train", None, None),
    ("lcqmc", "zh/lcqmc", "train", None, None),
]


@pytest.mark.parametrize(("task", "folder", "split", "count", "labels"), CLASSIFICATION,
                         ids=[f"{t}-{f.split('/')[-1]}-{s}" for t, f, s, *_ in CLASSIFICATION])
def test_classification_readers_match_sources(shared_data: Path, task: str, folder: str, split: str,
                                              count: int | None, labels: dict | None) -> None:
    examples = get_task(task).read(shared_data / folder, split)
    if count is None:
        assert examples is None
        return
    assert len(examples) == count
    if labels is not None:
        assert Counter(e.label for e in examples) == labels
    assert all(e.text_a for e in examples[:100])


def test_tnews_has_the_15_labels_of_labels_json(shared_data: Path) -> None:
    task = get_task("tnews")
    official = [json.loads(line)["label"] for line in (shared_data / "zh/tnews/labels.json").read_text().splitlines()]
    assert sorted(task.label_names()) == sorted(official) and len(official) == 15
    dev = task.read(shared_data / "zh/tnews", "dev")
    assert set(Counter(e.label for e in dev)) == set(official)
    assert Counter(e.label for e in task.read(shared_data / "zh/tnews", "train"))["114"] == 257


# (task, folder, split, sentences, characters/tokens, entities by type)
NER = [
    ("msra-ner", "zh/msra_ner", "train", 46364, 2169879, {"PER": 17615, "LOC": 36517, "ORG": 20571}),
    ("msra-ner", "zh/msra_ner", "test", 3442, 172601, {"PER": 1973, "LOC": 2886, "ORG": 1331}),
    ("peoples-daily-ner", "zh/peoples_daily_ner/hfl", "train", 50658, 2169879,
     {"PER": 17615, "LOC": 36517, "ORG": 20571}),
    ("peoples-daily-ner", "zh/peoples_daily_ner/hfl", "dev", 4631, 172601, None),
    ("peoples-daily-ner", "zh/peoples_daily_ner/hfl", "test", 69, 2294, None),
    ("peoples-daily-ner", "zh/peoples_daily_ner/zjy-ucas", "dev", 2318, 109870, {"LOC": 1951, "ORG": 984, "PER": 884}),
    ("peoples-daily-ner", "zh/peoples_daily_ner/zjy-ucas", "test", 4636, 219197,
     {"LOC": 3658, "ORG": 2185, "PER": 1864}),
    ("conll2003", "en/conll2003", "train", 14041, 203621, {"LOC": 7140, "MISC": 3438, "ORG": 6321, "PER": 6600}),
    ("conll2003", "en/conll2003", "dev", 3250, 51362, None),
]


@pytest.mark.parametrize(("task", "folder", "split", "sentences", "chars", "ents"), NER,
                         ids=[f"{t}-{f.split('/')[-1]}-{s}" for t, f, s, *_ in NER])
def test_ner_readers_match_sources(shared_data: Path, task: str, folder: str, split: str, sentences: int,
                                   chars: int, ents: dict | None) -> None:
    examples = get_task(task).read(shared_data / folder, split)
    assert len(examples) == sentences
    assert sum(len(e.tokens) for e in examples) == chars
    assert all(len(e.tokens) == len(e.tags) for e in examples)
    counted = Counter(kind for e in examples for kind, _, _ in entities(e.tags, mode="strict"))
    if ents is not None:
        assert counted == ents
    if task == "conll2003" and split == "dev":
        assert sum(counted.values()) == 5942


def test_msra_has_no_dev_and_conll_no_test(shared_data: Path) -> None:
    assert get_task("msra-ner").read(shared_data / "zh/msra_ner", "dev") is None
    assert get_task("conll2003").read(shared_data / "en/conll2003", "test") is None


def test_mnli_reads_the_glue_layout(tmp_path: Path) -> None:
    header = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
              "sentence2_parse\tsentence1\tsentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n")
    row = "0\t1\t1e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe cat sat.\tA \"cat\" sat.\t" + "entailment\t" * 5
    (tmp_path / "dev_matched.tsv").write_text(header + row + "entailment\n", encoding="utf-8")
    (tmp_path / "dev_mismatched.tsv").write_text(header + row + "neutral\n", encoding="utf-8")
    (ex,) = get_task("mnli").read(tmp_path, "dev")
    assert (ex.text_a, ex.text_b, ex.label) == ("The cat sat.", 'A "cat" sat.', "entailment")
    assert get_task("mnli-mm").read(tmp_path, "dev")[0].label == "neutral"
    assert get_task("mnli").read(tmp_path, "train") is None


def test_generic_tables_with_named_columns(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text('review,stars\n"good, really",pos\nbad,neg\nfine,pos\n', encoding="utf-8")
    (tmp_path / "dev.jsonl").write_text('{"review": "meh", "stars": "neg"}\n', encoding="utf-8")
    task = get_task("text-classification", ["text_a=review", "label=stars"])
    train = task.read(tmp_path, "train")
    assert [(e.text_a, e.label) for e in train] == [("good, really", "pos"), ("bad", "neg"), ("fine", "pos")]
    assert task.label_names() == ["neg", "pos"]
    assert task.read(tmp_path, "dev")[0].label == "neg"
    assert task.read(tmp_path, "test") is None
    pair = get_task("pair-classification", {"text_a": "q1", "text_b": "q2", "label_set": "0,1"})
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "train.tsv").write_text("q1\tq2\tlabel\nA?\tB?\t1\n", encoding="utf-8")
    assert pair.read(tmp_path / "p", "train")[0].text_b == "B?"


def test_generic_ner_bioes_columns(tmp_path: Path) -> None:
    (tmp_path / "train.bioes").write_text("John\tNNP\tS-PER\nlives\tVBZ\tO\n\nNew\tNNP\tB-LOC\nYork\tNNP\tE-LOC\n",
                                          encoding="utf-8")
    task = get_task("ner", ["tagging=BIOES"])
    train = task.read(tmp_path, "train")
    assert [e.tokens for e in train] == [["John", "lives"], ["New", "York"]]
    assert task.tag_names() == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]


def _error(tmp_path: Path, task: str, name: str, text: str, options: list[str] | None = None) -> str:
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        get_task(task, options).read(tmp_path, name.split(".")[0])
    return str(info.value)


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    msg = _error(tmp_path, "sst2", "train.tsv", "sentence\tlabel\ngood\t1\nbad\t7\n")
    assert "train.tsv:3" in msg and "'label'" in msg and "'7'" in msg
    msg = _error(tmp_path, "chnsenticorp", "dev.tsv", "label\ttext_a\n1\tok\n0\ttoo\tmany\n")
    assert "dev.tsv:3" in msg and "expected 2 tab-separated fields" in msg
    msg = _error(tmp_path, "tnews", "test.json", '{"label": "100", "sentence": "x"}\n{"label": \n')
    assert "test.json:2" in msg and "JSON" in msg
    msg = _error(tmp_path, "tnews", "dev.json", '{"label": "100", "title": "x"}\n')
    assert "dev.json:1" in msg and "'sentence'" in msg
    msg = _error(tmp_path, "conll2003", "train.txt", "EU NNP B-NP B-ORG\nrejects VBZ B-VP B-VERB\n")
    assert "train.txt:2" in msg and "'B-VERB'" in msg
    msg = _error(tmp_path, "msra-ner", "dev.txt", "中 B-ORG\n共 I-ORG O\n")
    assert "dev.txt:2" in msg and "columns" in msg
    (tmp_path / "z").mkdir()
    import zipfile

    with zipfile.ZipFile(tmp_path / "z" / "msraner.zip", "w") as z:
        z.writestr("msraner/train1.txt", "中国/ns 人/o\n好/xx\n")
    with pytest.raises(ValueError, match=r"msraner\.zip:msraner/train1\.txt:2: unknown tag 'xx'"):
        get_task("msra-ner").read(tmp_path / "z", "train")
    (tmp_path / "u").mkdir()
    (tmp_path / "u" / "dev.tsv").write_bytes(b"label\ttext_a\n1\t\xff\xfe\n")
    with pytest.raises(ValueError, match=r"dev\.tsv:2: not valid UTF-8"):
        get_task("chnsenticorp").read(tmp_path / "u", "dev")


def test_unknown_task_and_options() -> None:
    assert {"sst2", "cola", "mrpc", "mnli", "chnsenticorp", "msra-ner", "conll2003", "ner"} <= set(task_names())
    with pytest.raises(ValueError, match="unknown task 'sst3'"):
        get_task("sst3")
    with pytest.raises(ValueError, match="unknown option"):
        get_task("sst2", ["foo=1"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        get_task("tnews", ["use_keywords"])
    with pytest.raises(ValueError, match="not a valid bool"):
        get_task("tnews", ["use_keywords=maybe"])
    assert get_task("tnews", ["use_keywords=true"]).use_keywords is True
