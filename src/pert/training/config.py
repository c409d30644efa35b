"""The pre-training config: one dataclass filled from YAML and flags, validated before any work."""

from __future__ import annotations

from dataclasses import dataclass

from pert.config import PRECISION_HELP, PRECISIONS, check, field
from pert.objectives.config import ObjectiveConfig
from pert.presets import PRESETS


@dataclass
class PretrainConfig(ObjectiveConfig):
    data: str = field(None, required=True, help="prepared corpus folder (from `pert prepare`)")
    out: str = field(None, required=True, help="output folder: checkpoints/, final/, metrics, TensorBoard logs")
    preset: str = field("base", choices=tuple(PRESETS), help="model shape when not initialised from a folder")
    init_from: str | None = field(None, help="BERT/PERT Hugging Face folder or Hub id to continue from")
    revision: str | None = field(None, help="Hub revision (branch, tag or commit) when --init-from is a Hub id")
    max_seq_len: int = field(512, help="tokens per packed sequence, [CLS] and [SEP] included")
    batch_size: int = field(32, help="sequences per micro-batch, per process")
    grad_accum: int = field(1, help="micro-batches per optimizer step")
    max_steps: int = field(10000, help="optimizer steps (the learning-rate schedule spans them)")
    max_minutes: float | None = field(None, help="stop earlier after this much wall time (saved as a checkpoint)")
    lr: float = field(1e-4, help="peak learning rate")
    warmup_steps: int | None = field(None, help="linear warm-up steps (default: 1% of --max-steps)")
    weight_decay: float = field(0.01, help="AdamW decay (none on biases and LayerNorm)")
    dropout: float | None = field(None, help="hidden and attention dropout of the encoder, saved in its config "
                                             "(default: the preset's 0.1, or the --init-from folder's own)")
    adam_eps: float = field(1e-6, help="AdamW epsilon")
    adam_betas: list[float] = field([0.9, 0.999], help="AdamW betas")
    max_grad_norm: float = field(1.0, help="gradient clipping norm (0: off)")
    precision: str = field("auto", choices=PRECISIONS, help=PRECISION_HELP)
    device: str = field("auto", choices=("auto", "cpu", "cuda", "mps"),
                        help="auto (CUDA, then MPS, then CPU), cpu, cuda or mps; several GPUs or processes: "
                             "torchrun / accelerate launch")
    seed: int = field(42, help="seed of model init, data order, selection and permutation")
    eval_sequences: int = field(256, help="held-out sequences (the corpus's last ones) for evaluation")
    eval_every: int = field(500, help="evaluate every N steps (0: only at the end)")
    save_every: int = field(1000, help="checkpoint every N steps (0: only at the end)")
    keep_last: int = field(3, help="checkpoints kept")
    log_every: int = field(20, help="log training metrics every N steps")
    num_workers: int = field(1, help="DataLoader worker processes building batches")
    compile: bool = field(False, help="torch.compile the encoder (slow first steps; see benchmarks/README.md)")
    resume: bool = field(False, help="continue from the latest checkpoint in --out")

    def __post_init__(self) -> None:
        super().__post_init__()
        check(bool(self.data), "data", "is required: a folder written by `pert prepare`")
        check(bool(self.out), "out", "is required: the output folder")
        check(self.preset in PRESETS, "preset", f"must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        check(8 <= self.max_seq_len <= 4096, "max_seq_len", "must be between 8 and 4096")
        for name in ("batch_size", "grad_accum", "max_steps", "keep_last", "log_every"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        for name in ("eval_every", "save_every", "num_workers", "eval_sequences"):
            check(getattr(self, name) >= 0, name, "must be >= 0")
        check(self.lr > 0, "lr", "must be > 0")
        check(self.dropout is None or 0 <= self.dropout < 1, "dropout", "must be in [0, 1)")
        check(self.warmup_steps is None or 0 <= self.warmup_steps <= self.max_steps, "warmup_steps",
              "must be between 0 and --max-steps")
        check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "must be > 0")
        check(len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas), "adam_betas",
              "must be two numbers in [0, 1)")
        check(self.precision in ("auto", "bf16", "fp16", "fp32"), "precision",
              f"must be auto, bf16, fp16 or fp32, not {self.precision!r}")

    @property
    def warmup(self) -> int:
        return self.warmup_steps if self.warmup_steps is not None else max(1, self.max_steps // 100)
