"""Configs of ``pert finetune`` and ``pert evaluate`` (defaults < YAML < flags; task defaults fill the gaps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pert.config import DEVICE_HELP, INFERENCE_PRECISION_HELP, PRECISION_HELP, PRECISIONS, check, field

if TYPE_CHECKING:
    from pert.tasks.base import TaskDefaults

SPLITS = ("train", "dev", "test")


@dataclass
class FinetuneConfig:
    """Fine-tune one task on one model folder for one or more seeds."""

    task: str = field(None, required=True, help="task name (`pert finetune --list-tasks` lists them)")
    model: str = field(None, required=True, help="BERT/PERT Hugging Face folder or Hub id to start from")
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) when --model is a Hub id")
    data: str = field(None, required=True, help="folder holding the task's files (train/dev/test)")
    out: str = field(None, required=True, help="run folder to write (per-seed checkpoints, metrics, report)")
    model_name: str | None = field(None, help="model name in reports (default: the model folder's name)")
    seeds: list[int] = field([1], help="one run per seed; the report gives max (avg) over them")
    task_args: list[str] = field([], help="task options as KEY=VALUE (e.g. text_a=sentence label=label)")
    lr: float | None = field(None, help="peak learning rate (default: the task's)")
    epochs: float | None = field(None, help="training epochs (default: the task's)")
    batch_size: int | None = field(None, help="training batch size (default: the task's)")
    max_seq_len: int | None = field(None, help="tokens per sequence incl. special tokens (default: the task's)")
    eval_batch_size: int | None = field(None, help="evaluation batch size (default: 2 x batch size)")
    warmup_ratio: float = field(0.1, help="fraction of steps with linear warm-up")
    weight_decay: float = field(0.01, help="AdamW weight decay (not on biases and LayerNorm)")
    max_grad_norm: float = field(1.0, help="gradient clipping norm (0: off)")
    grad_accum: int = field(1, help="micro-batches per optimizer step")
    group_by_length: bool = field(False, help="train on batches of similar-length examples (less padding, faster; "
                                              "batches less mixed)")
    max_steps: int = field(0, help="stop after this many optimizer steps (0: run all epochs)")
    max_minutes: float | None = field(None, help="stop each seed's training after this much wall time (dev is "
                                                 "scored at the stop; the schedule still spans all steps)")
    eval_every: int = field(0, help="evaluate on dev every N steps (0: at the end of each epoch)")
    max_train_examples: int = field(0, help="train on a fixed random subset of this size (0: all)")
    max_eval_examples: int = field(0, help="evaluate on the first N examples of each split (0: all)")
    splits: list[str] = field(["dev", "test"], help="splits scored with the best checkpoint (dev, test)")
    save_model: bool = field(True, help="save each seed's best checkpoint as a Hugging Face folder")
    save_predictions: bool = field(True, help="write each scored split's predictions")
    device: str = field("auto", help=DEVICE_HELP)
    precision: str = field("auto", choices=PRECISIONS, help=PRECISION_HELP)
    log_every: int = field(50, help="log the training loss every N steps")
    save_every: int = field(0, help="checkpoint every N steps (0: at every dev evaluation)")
    resume: bool = field(False, help="continue interrupted seeds from their checkpoints in --out; skip "
                                     "finished seeds")

    def __post_init__(self) -> None:
        for name in ("task", "model", "data", "out"):
            check(bool(getattr(self, name)), name, "is required")
        check(len(self.seeds) > 0, "seeds", "needs at least one seed")
        check(len(set(self.seeds)) == len(self.seeds), "seeds", f"has duplicates: {self.seeds}")
        check(self.lr is None or self.lr > 0, "lr", "must be positive")
        check(self.epochs is None or self.epochs > 0, "epochs", "must be positive")
        check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "must be positive")
        check(self.batch_size is None or self.batch_size > 0, "batch_size", "must be positive")
        check(self.max_seq_len is None or 8 <= self.max_seq_len, "max_seq_len", "must be at least 8")
        check(self.eval_batch_size is None or self.eval_batch_size > 0, "eval_batch_size", "must be positive")
        check(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0")
        check(self.max_grad_norm >= 0, "max_grad_norm", "must be >= 0")
        check(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        for name in ("max_steps", "eval_every", "max_train_examples", "max_eval_examples", "save_every"):
            check(getattr(self, name) >= 0, name, "must be >= 0")
        bad = [s for s in self.splits if s not in ("dev", "test")]
        check(not bad, "splits", f"must name dev and/or test, got {bad}")
        check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        check(self.log_every > 0, "log_every", "must be positive")

    def resolved(self, defaults: TaskDefaults) -> FinetuneConfig:
        """A copy with the task's defaults filled in where this config leaves them unset."""
        import dataclasses

        return dataclasses.replace(
            self, lr=self.lr or defaults.lr, epochs=self.epochs or defaults.epochs,
            batch_size=self.batch_size or defaults.batch_size,
            max_seq_len=self.max_seq_len or defaults.max_seq_len,
            eval_batch_size=self.eval_batch_size or 2 * (self.batch_size or defaults.batch_size))


@dataclass
class EvaluateConfig:
    """Score a (fine-tuned) model folder on a task's labelled splits."""

    task: str | None = field(None, help="task name (default: the one the model was fine-tuned for)")
    model: str = field(None, required=True, help="fine-tuned Hugging Face folder or Hub id")
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) when --model is a Hub id")
    data: str = field(None, required=True, help="folder holding the task's files")
    splits: list[str] = field(["dev"], help="splits to score (train, dev, test)")
    task_args: list[str] = field([], help="task options as KEY=VALUE")
    batch_size: int = field(64, help="evaluation batch size")
    max_seq_len: int | None = field(None, help="tokens per sequence (default: the task's)")
    max_eval_examples: int = field(0, help="score the first N examples of each split (0: all)")
    predictions: str | None = field(None, help="folder to write predictions_<split>.jsonl into")
    device: str = field("auto", help=DEVICE_HELP)
    precision: str = field("auto", choices=PRECISIONS, help=INFERENCE_PRECISION_HELP)

    def __post_init__(self) -> None:
        for name in ("model", "data"):  # the task defaults to the one the model was fine-tuned for
            check(bool(getattr(self, name)), name, "is required")
        bad = [s for s in self.splits if s not in SPLITS]
        check(not bad and len(self.splits) > 0, "splits", f"must name train, dev or test, got {self.splits}")
        check(self.batch_size > 0, "batch_size", "must be positive")
        check(self.max_seq_len is None or self.max_seq_len >= 8, "max_seq_len", "must be at least 8")
        check(self.max_eval_examples >= 0, "max_eval_examples", "must be >= 0")
        check(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
