"""The options of `pert convert` (kept apart from the work so that building the CLI imports nothing heavy)."""

from __future__ import annotations

from dataclasses import dataclass

from pert.config import check, field


@dataclass
class ConvertConfig:
    """Options of ``pert convert tf1``."""

    source: str = field(None, required=True, help="TF1 checkpoint: its folder, its prefix, one of its files, or a "
                                                  "Hub id")
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) when the source is a Hub id")
    out: str = field(None, required=True, help="folder to write (new, or a model folder to replace)")
    model_config: str | None = field(None, help="pert_config.json / bert_config.json; unset: the one "
                                                    "beside the checkpoint")
    vocab: str | None = field(None, help="vocab.txt; unset: the one beside the checkpoint")
    lowercase: bool | None = field(None, help="lower-case input; unset: inferred from the vocabulary")
    keep_mlm_head: bool = field(False, help="keep the checkpoint's MLM head (cls/predictions); HFL's releases carry "
                                            "a random one, so it is left out by default")

    def __post_init__(self) -> None:
        check(bool(self.source), "source", "is required: the TF1 checkpoint folder or prefix")
        check(bool(self.out), "out", "is required: the folder to write")
