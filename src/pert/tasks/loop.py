"""The shared fine-tuning and evaluation loop: one per project, every task plugs in through ``Task``.

    pert finetune --task sst2 --model MODEL_DIR --data glue/SST-2 --out runs/sst2 --seeds 1 2 3
    pert evaluate --task sst2 --model runs/sst2/seed-1/best --data glue/SST-2 --splits dev

Per seed: seed everything -> build the model -> AdamW (no decay on biases/LayerNorm), linear warm-up
then linear decay -> evaluate on dev every ``eval_every`` (or each epoch), keep the best state by the
task's main metric -> score the best state on dev and test (when labelled) -> save it as a Hugging
Face folder. Training runs on Accelerate (one or several processes, one precision path) and checkpoints
like pre-training (``pert.training.checkpoint``); ``--resume`` continues an interrupted seed and skips
finished ones. A seed's data order, dropout and initialisation follow from the seed alone: on CPU two runs
of one config give identical weights and scores. Run folder layout::

    OUT/run.json                  exact resolved config, task options, versions (repeatable)
    OUT/seed-N/metrics.json       best step, dev/test metrics, the dev history (written last: seed finished)
    OUT/seed-N/checkpoints/       while the seed trains: its latest checkpoints (removed when it finishes)
    OUT/seed-N/best/              best checkpoint (config.json, model.safetensors, tokenizer files)
    OUT/seed-N/predictions_*.jsonl
    OUT/seed-N/tensorboard/       loss, learning rate, dev metrics
    OUT/results.json, results.md  max (avg) over seeds, per-seed values (``pert.report``)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import platform
import random
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers.trainer_pt_utils import LengthGroupedSampler

from pert.hardware import autocast, resolve_device
from pert.lock import locks_output
from pert.optim import adamw
from pert.progress import progress as progress_bar
from pert.scalars import ScalarWriter
from pert.tasks.base import Task, get_task
from pert.tasks.config import FinetuneConfig
from pert.training.checkpoint import checkpoint_dirs

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def predict(task: Task, model: transformers.PreTrainedModel, tokenizer: Any, examples: Sequence[Any],
            features: Sequence[dict[str, Any]], batch_size: int, device: torch.device,
            precision: str = "fp32", progress: str | None = None) -> list[Any]:
    """One prediction per example: ``task.infer`` on every feature, then ``task.postprocess``."""
    model.eval()
    # batches of similar length waste less compute on padding; outputs go back to feature order
    order = sorted(range(len(features)), key=lambda i: len(features[i].get("input_ids", ())))
    gathered: dict[str, list[Any]] = {}
    starts = range(0, len(order), batch_size)
    for i in progress_bar(starts, desc=progress or "predict", leave=False):
        batch = _to(task.collate([features[j] for j in order[i:i + batch_size]], tokenizer), device)
        with autocast(device, precision):
            out = task.infer(model, batch)
        for key, value in out.items():
            gathered.setdefault(key, [None] * len(features))
            for j, row in zip(order[i:i + batch_size], value, strict=True):
                gathered[key][j] = row  # one array per feature (rows keep the batch's padding)
    return task.postprocess(examples, features, gathered)


def score(task: Task, model: transformers.PreTrainedModel, tokenizer: Any, examples: Sequence[Any],
          features: Sequence[dict[str, Any]], batch_size: int, device: torch.device,
          precision: str = "fp32", progress: str | None = None) -> tuple[dict[str, float] | None, list[Any]]:
    """(metrics or None when the split has no labels, predictions)."""
    predictions = predict(task, model, tokenizer, examples, features, batch_size, device, precision, progress)
    if not task.has_labels(examples):
        return None, predictions
    metrics = task.compute_metrics(examples, predictions)
    if task.main_metric not in metrics:
        raise RuntimeError(f"task {task.name}: compute_metrics gave no {task.main_metric!r}")
    return metrics, predictions


def _read(task: Task, data: Path, split: str, limit: int = 0) -> list[Any] | None:
    examples = task.read(data, split)
    if examples is not None and limit:
        examples = list(examples)[:limit]
    return examples


def evaluate(task: Task | str | None, model_dir: str | Path, data_dir: str | Path, splits: Sequence[str] = ("dev",),
             *, task_args: Sequence[str] | dict[str, Any] | None = None, batch_size: int = 64,
             max_seq_len: int | None = None, max_eval_examples: int = 0, device: str = "auto",
             precision: str | None = "auto", predictions_dir: str | Path | None = None,
             revision: str | None = None) -> dict[str, dict[str, float] | None]:
    """Score a model folder (or Hub id) on a task's splits: ``{split: metrics}`` (None for an unlabelled split).

    Unset task, task options, max_seq_len and precision come from the folder's record of its fine-tuning.
    A split whose file is absent raises FileNotFoundError.
    """
    from pert.convert.folder import open_folder
    from pert.models import open_model
    from pert.tasks.record import trained_task

    data_dir = Path(data_dir)
    if not isinstance(task, Task):
        task = get_task(*trained_task(open_folder(model_dir, revision)[2], task, task_args))
    opened = open_model(model_dir, revision=revision, device=device, precision=precision, task=task.name)
    model_dir, trained, dev, precision, tokenizer = (opened.path, opened.training, opened.device, opened.precision,
                                                     opened.tokenizer)
    if task.name == trained.get("task"):
        max_seq_len = max_seq_len or trained.get("max_seq_len")
    model = task.build_model(model_dir)
    if getattr(model, "pert_new_head", False):
        raise ValueError(f"{model_dir}: has no trained head for task {task.name}; fine-tune it first "
                         f"(pert finetune --task {task.name} ...)")
    model.to(dev)
    results: dict[str, dict[str, float] | None] = {}
    for split in splits:
        examples = _read(task, data_dir, split, max_eval_examples)
        if examples is None:
            raise FileNotFoundError(f"{data_dir}: task {task.name} has no {split} file there")
        features = task.encode(examples, tokenizer, max_seq_len or task.defaults.max_seq_len)
        metrics, predictions = score(task, model, tokenizer, examples, features, batch_size, dev, precision, split)
        results[split] = metrics
        if predictions_dir is not None:
            Path(predictions_dir).mkdir(parents=True, exist_ok=True)
            task.save_predictions(examples, predictions, Path(predictions_dir) / f"predictions_{split}.jsonl")
        log.info("%s %s: %s", task.name, split, _fmt(metrics))
    return results


def _fmt(metrics: dict[str, float] | None) -> str:
    return "no labels" if metrics is None else ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())


def run_record(cfg: FinetuneConfig, task: Task) -> dict[str, Any]:
    """What ``run.json`` holds: enough to repeat the run."""
    training_info = None
    info = Path(cfg.model) / "pert_training.json"
    if info.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            training_info = json.loads(info.read_text("utf-8"))
    return {
        "task": task.name, "main_metric": task.main_metric, "task_options": task.options(),
        "model": str(cfg.model), "model_name": cfg.model_name or default_model_name(cfg.model), "data": str(cfg.data),
        "config": dataclasses.asdict(cfg), "model_training_info": training_info,
        "versions": {"pert": _version(), "torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
    }


def default_model_name(model_dir: str | Path) -> str:
    """The folder's name, with its parent's for generic names (``runs/pert-tiny/final`` -> ``pert-tiny/final``,
    ``run/checkpoints/step_00001000`` -> ``checkpoints/step_00001000``)."""
    path = Path(model_dir).resolve()
    if path.name in ("final", "model", "best", "checkpoint") or path.name.startswith("step_"):
        return f"{path.parent.name}/{path.name}"
    return path.name


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pert")
    except PackageNotFoundError:
        return "unknown"


def make_accelerator(device: str, precision: str, **kwargs: Any) -> Any:
    """The Accelerator of a fine-tuning run: ``--device`` picks the hardware (``accelerate launch`` or
    ``torchrun`` the processes), ``--precision`` the mixed-precision mode."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedDataParallelKwargs

    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev.index)
    AcceleratorState._reset_state()  # the precision of an earlier run in this process must not stick
    # heads that a task does not use (a pooler, an MLM decoder) get no gradient: DDP must not wait for them
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision={"fp32": "no"}.get(precision, precision), cpu=dev.type == "cpu",
                       kwargs_handlers=[ddp], **kwargs)


@locks_output  # one run per --out
def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune ``cfg.task`` for every seed; returns the run summary also written to ``OUT/results.json``.

    Runs on Accelerate: one process, or several (``accelerate launch`` / ``torchrun``; ``--batch-size`` is
    per process). Each seed checkpoints at every dev evaluation (and on SIGTERM or Ctrl-C) into
    ``OUT/seed-N/checkpoints``; ``--resume`` continues an interrupted seed there and skips finished ones.
    """
    from pert.models import open_model
    from pert.report import write_run_report

    task = get_task(cfg.task, cfg.task_args)
    cfg = cfg.resolved(task.defaults)
    data_dir, out = Path(cfg.data), Path(cfg.out)
    try:  # a hostile config.json or unsafe weights fail before the data is read
        opened = open_model(cfg.model, revision=cfg.revision, device=cfg.device, precision=cfg.precision,
                            auto_precision="hardware")
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--model {e}") from None
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data {data_dir}: no such folder")
    model_dir, tokenizer = opened.path, opened.tokenizer
    cfg = dataclasses.replace(cfg, precision=opened.precision)
    accelerator = make_accelerator(cfg.device, cfg.precision)

    train = task.read(data_dir, "train")
    if not train:
        raise FileNotFoundError(f"--data {data_dir}: task {task.name} found no training file there")
    if cfg.max_train_examples and cfg.max_train_examples < len(train):
        keep = sorted(random.Random(0).sample(range(len(train)), cfg.max_train_examples))
        train = [train[i] for i in keep]
    # dev always (it picks the best checkpoint); test only when it is to be scored
    splits = {s: _read(task, data_dir, s, cfg.max_eval_examples) for s in ("dev", "test")
              if s == "dev" or s in cfg.splits}
    log.info("%s: %d train examples; %s", task.name, len(train),
             ", ".join(f"{s} {'absent' if e is None else len(e)}" for s, e in splits.items()))
    train_features = task.encode(train, tokenizer, cfg.max_seq_len)
    eval_features = {s: task.encode(e, tokenizer, cfg.max_seq_len) for s, e in splits.items() if e is not None}

    record = run_record(cfg, task)
    if cfg.resume:
        _check_same_run(out, record)
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "run.json", record)
    accelerator.wait_for_everyone()
    seeds = []
    for seed in cfg.seeds:
        seed_dir = out / f"seed-{seed}"
        if cfg.resume and (seed_dir / "metrics.json").is_file():
            log.info("seed %d finished in an earlier session (%s); skipped", seed, seed_dir / "metrics.json")
            seeds.append(json.loads((seed_dir / "metrics.json").read_text("utf-8")))
            continue
        if not cfg.resume and checkpoint_dirs(seed_dir):
            raise ValueError(f"{seed_dir} holds checkpoints of an interrupted run; pass --resume to continue "
                             "it, or choose another --out")
        result = _train_seed(cfg, task, seed, model_dir, tokenizer, accelerator, train_features, splits,
                             eval_features, out)
        if accelerator.is_main_process:
            _write_json(seed_dir / "metrics.json", result)  # last: its presence marks the seed finished
            shutil.rmtree(seed_dir / "checkpoints", ignore_errors=True)
        accelerator.wait_for_everyone()
        seeds.append(result)
    report = write_run_report(out, record, seeds) if accelerator.is_main_process else {**record, "seeds": seeds}
    accelerator.wait_for_everyone()  # the report is on disk before any process returns
    return report


# options that may differ between the sessions of one run: they change neither the data nor the arithmetic
_SESSION_OPTIONS = ("resume", "seeds", "device", "log_every", "max_minutes")


def _check_same_run(out: Path, record: dict[str, Any]) -> None:
    try:
        before = json.loads((out / "run.json").read_text("utf-8"))["config"]
    except (OSError, ValueError, KeyError):
        return  # nothing recorded yet: the run had not started
    now = record["config"]
    changed = [k for k in now if k not in _SESSION_OPTIONS and before.get(k) != now[k]]
    if changed:
        raise ValueError(f"--resume: {out}/run.json was written with other options: "
                         + ", ".join(f"{k}={before.get(k)!r} (now {now[k]!r})" for k in changed)
                         + "; resume with the same options or choose another --out")


def _write_json(path: Path, value: Any) -> None:
    """Write atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


class _TaskLoss(torch.nn.Module):
    """The task's loss as the module's forward, so that DDP (which syncs gradients in forward/backward)
    sees a task that calls the model other than by ``model(**batch)``."""

    def __init__(self, task: Task, model: torch.nn.Module):
        super().__init__()
        self.task, self.model = task, model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.task.loss(self.model, batch)


class TrainOrder:
    """The training micro-batches of one process, addressable by position (so a resumed seed continues
    exactly): epoch e is the permutation torch.utils.data.DataLoader(shuffle=True) draws in epoch e from a
    generator seeded by the seed (recomputed, so it depends on (seed, e) alone), cut into batches;
    process r of w takes batches r, r + w, ...; ``--group-by-length`` orders it with transformers'
    LengthGroupedSampler (shuffled mega-batches, each sorted by length) on the same generator."""

    def __init__(self, features: Sequence[dict[str, Any]], batch_size: int, seed: int, group_by_length: bool,
                 rank: int = 0, world: int = 1):
        self.lengths = [len(f["input_ids"]) for f in features]
        self.batch_size, self.seed, self.group, self.rank, self.world = batch_size, seed, group_by_length, rank, world
        self.per_epoch = math.ceil(len(features) / batch_size) // world
        if self.per_epoch == 0:
            raise ValueError(f"{len(features)} training features cannot fill one batch per process "
                             f"({world} processes)")
        self._cached: tuple[int, list[int]] = (-1, [])

    def epoch_order(self, epoch: int) -> list[int]:
        if self._cached[0] != epoch:
            # the order of DataLoader(shuffle=True, generator=torch.Generator().manual_seed(seed)) in this epoch, as
            # earlier pert versions trained: each epoch draws the loader's base seed, then the permutation
            gen = torch.Generator().manual_seed(self.seed)
            for _ in range(epoch + 1):
                torch.empty((), dtype=torch.int64).random_(generator=gen)
                if self.group:
                    order = list(LengthGroupedSampler(self.batch_size, lengths=self.lengths, generator=gen))
                else:  # RandomSampler draws one more (empty-sliced) permutation at the end of each epoch
                    order = torch.randperm(len(self.lengths), generator=gen).tolist()
                    torch.randperm(len(self.lengths), generator=gen)
            self._cached = (epoch, order)
        return self._cached[1]

    def indices(self, micro: int) -> list[int]:
        """Feature indices of this process's micro-batch number ``micro`` (counted over all epochs)."""
        epoch, k = divmod(micro, self.per_epoch)
        start = (k * self.world + self.rank) * self.batch_size
        return self.epoch_order(epoch)[start:start + self.batch_size]


def _train_seed(cfg: FinetuneConfig, task: Task, seed: int, model_dir: Path, tokenizer: Any, accelerator: Any,
                train_features: list[dict[str, Any]], splits: dict[str, list[Any] | None],
                eval_features: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, Any]:
    from pert.convert.hf import save_model_folder
    from pert.training.checkpoint import load_checkpoint, resolve_resume, save_checkpoint
    from pert.training.loop import _any

    seed_dir = out / f"seed-{seed}"
    main, device = accelerator.is_main_process, accelerator.device
    if main:
        seed_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    model = task.build_model(model_dir)
    order = TrainOrder(train_features, cfg.batch_size, seed, cfg.group_by_length, accelerator.process_index,
                       accelerator.num_processes)
    steps_per_epoch = math.ceil(order.per_epoch / cfg.grad_accum)
    total = math.ceil(steps_per_epoch * cfg.epochs)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    optimizer = adamw(model, cfg.lr, cfg.weight_decay)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    trainer, optimizer = accelerator.prepare(_TaskLoss(task, model), optimizer)
    eval_every = cfg.eval_every or steps_per_epoch
    writer = ScalarWriter(seed_dir / "tensorboard") if main else None
    dev_examples, dev_features = splits.get("dev"), eval_features.get("dev")
    can_select = dev_examples is not None and task.has_labels(dev_examples)

    step, earlier_seconds = 0, 0.0
    best: dict[str, Any] = {"score": -math.inf, "step": 0, "state": None}
    history: list[dict[str, Any]] = []
    if cfg.resume:
        ckpt = resolve_resume(accelerator, seed_dir)
        if ckpt is not None:
            step, state, tensors = load_checkpoint(ckpt, accelerator, model, optimizer, scheduler)
            history, earlier_seconds = state["history"], state["seconds"]
            best.update(score=state["best_score"], step=state["best_step"], state=tensors or None)
            log.info("seed %d: resumed from %s (step %d of %d)", seed, ckpt, step, total)

    t0 = time.time()

    def checkpoint() -> None:
        state = {"history": history, "best_score": best["score"], "best_step": best["step"],
                 "seconds": earlier_seconds + time.time() - t0}
        save_checkpoint(accelerator, model, optimizer, scheduler, step, seed_dir, dataclasses.asdict(cfg),
                        keep_last=2, state=state, tensors=best["state"])

    def dev_eval(step: int) -> None:
        if not can_select:
            return
        # every process scores all of dev: all then agree on the best state without exchanging predictions
        metrics, predictions = score(task, model, tokenizer, dev_examples, dev_features, cfg.eval_batch_size,
                                     device, cfg.precision, f"dev @{step}")
        history.append({"step": step, **metrics})
        if writer:
            for k, v in metrics.items():
                writer.add_scalar(f"dev/{k}", v, step)
        log.info("seed %d step %d/%d dev: %s", seed, step, total, _fmt(metrics))
        if metrics[task.main_metric] > best["score"]:
            best.update(score=metrics[task.main_metric], step=step, dev=(metrics, predictions),
                        state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        model.train()

    log.info("seed %d: %d steps (%d per epoch), lr %g, batch %d x %d processes, max_seq_len %d, %s, precision %s",
             seed, total, steps_per_epoch, cfg.lr, cfg.batch_size, accelerator.num_processes, cfg.max_seq_len,
             device, cfg.precision)
    stop = {"signal": None}
    old_handler = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, lambda s, f: stop.update(signal="SIGTERM"))
    micro = step * cfg.grad_accum
    model.train()
    bar = progress_bar(total=total, initial=step, desc=f"{task.name} seed {seed}", unit="steps", disable=not main)
    deadline = time.time() + 60 * cfg.max_minutes if cfg.max_minutes else math.inf
    out_of_time = False
    try:
        while step < total and not out_of_time:
            batch = _to(task.collate([train_features[i] for i in order.indices(micro)], tokenizer), device)
            micro += 1
            sync = micro % cfg.grad_accum == 0
            with contextlib.nullcontext() if sync else accelerator.no_sync(trainer):
                loss = trainer(batch) / cfg.grad_accum
                accelerator.backward(loss)
            if not sync:
                continue
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == total:  # reading the loss waits for the device: not every step
                value = loss.item() * cfg.grad_accum
                if not math.isfinite(value):
                    raise RuntimeError(f"seed {seed} step {step}: loss is {value}; lower --lr or use --precision fp32")
                if writer:
                    writer.add_scalar("train/loss", value, step)
                    writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                log.debug("seed %d step %d loss %.4f (%.1f s)", seed, step, value, time.time() - t0)
                bar.set_postfix(loss=f"{value:.4f}")
            # --max-minutes: checked like signals (every step alone, on log steps across processes)
            if cfg.max_minutes and step < total and (accelerator.num_processes == 1 or step % cfg.log_every == 0):
                out_of_time = _any(accelerator, time.time() >= deadline)
                if out_of_time:
                    log.info("seed %d: stopping at step %d of %d (--max-minutes %g reached)", seed, step, total,
                             cfg.max_minutes)
            evaluated = step % eval_every == 0 or step == total or out_of_time
            if evaluated:
                dev_eval(step)
            if step < total and not out_of_time and ((cfg.save_every and step % cfg.save_every == 0)
                                                     or (not cfg.save_every and evaluated)):
                checkpoint()
            # checked on log steps only when several processes run: agreeing costs a synchronisation
            if (accelerator.num_processes == 1 or step % cfg.log_every == 0) and step < total \
                    and _any(accelerator, bool(stop["signal"])):
                log.warning("seed %d: %s at step %d: writing a checkpoint; continue with --resume",
                            seed, stop["signal"], step)
                checkpoint()
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        if not stop["signal"]:
            log.warning("seed %d interrupted at step %d: writing a checkpoint; continue with --resume", seed, step)
            checkpoint()
        raise
    finally:
        bar.close()
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, old_handler)
    train_seconds = earlier_seconds + time.time() - t0
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    else:
        best["step"] = step
        log.warning("%s: no labelled dev split; keeping the final checkpoint (step %d)", task.name, step)

    result: dict[str, Any] = {"seed": seed, "best_step": best["step"], "steps": step,
                              "train_seconds": round(train_seconds, 1),
                              "processes": accelerator.num_processes,
                              "replica_sha256": _replica_hashes(accelerator, model)}
    for split in cfg.splits:
        examples = splits.get(split)
        if examples is None:
            continue
        if split == "dev" and "dev" in best:  # the best state's dev scores are already known
            metrics, predictions = best["dev"]
        else:
            metrics, predictions = score(task, model, tokenizer, examples, eval_features[split],
                                         cfg.eval_batch_size, device, cfg.precision, split)
        if metrics is not None:
            result[split] = metrics
            if writer:
                for k, v in metrics.items():
                    writer.add_scalar(f"best_{split}/{k}", v, best["step"])
        if cfg.save_predictions and main:
            task.save_predictions(examples, predictions, seed_dir / f"predictions_{split}.jsonl")
        log.info("seed %d best (step %d) %s: %s", seed, best["step"], split, _fmt(metrics))
    result["dev_history"] = history
    if writer:
        writer.close()
    if cfg.save_model and main:
        from pert.tasks.record import fine_tuning_record

        info = {**fine_tuning_record(cfg, task), "seed": seed, "best_step": best["step"],
                **{s: result[s] for s in ("dev", "test") if s in result}}
        save_model_folder(model, tokenizer, seed_dir / "best", training_info=info)
    return result


def _replica_hashes(accelerator: Any, model: torch.nn.Module) -> list[str]:
    """SHA-256 of the kept weights on every process (one entry each): equal when the replicas agree."""
    import hashlib

    from accelerate.utils import gather_object

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    digests = gather_object([h.hexdigest()]) if accelerator.num_processes > 1 else [h.hexdigest()]
    if len(set(digests)) > 1:
        log.error("the %d processes hold different weights: %s", len(digests), digests)
    return digests
