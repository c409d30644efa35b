"""The shared fine-tuning and evaluation loop: one per project, every task plugs in through ``Task``.

    pert finetune --task sst2 --model MODEL_DIR --data glue/SST-2 --out runs/sst2 --seeds 1 2 3
    pert evaluate --task sst2 --model runs/sst2/seed-1/best --data glue/SST-2 --splits dev

Per seed: seed everything -> build the model -> AdamW (no decay on biases/LayerNorm), linear warm-up
then linear decay -> evaluate on dev every ``eval_steps`` (or each epoch), keep the best state by the
task's main metric -> score the best state on dev and test (when labelled) -> save it as a Hugging
Face folder. Run folder layout::

    OUT/run.json                  exact resolved config, task options, versions (repeatable)
    OUT/seed-N/metrics.json       best step, dev/test metrics, the dev history
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
import platform
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from tqdm.auto import tqdm
from transformers.trainer_pt_utils import LengthGroupedSampler

from pert.lock import locks_output
from pert.optim import adamw
from pert.scalars import ScalarWriter
from pert.tasks.base import Task, get_task
from pert.tasks.config import FinetuneConfig

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"--device {name!r}: not a device name ({e})") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


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
    for i in tqdm(starts, desc=progress or "predict", leave=False, disable=None):
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


def evaluate(task: Task | str, model_dir: str | Path, data_dir: str | Path, splits: Sequence[str] = ("dev",),
             *, task_args: Sequence[str] | dict[str, Any] | None = None, batch_size: int = 64,
             max_seq_len: int | None = None, max_examples: int = 0, device: str = "auto",
             precision: str = "fp32", predictions_dir: str | Path | None = None) -> dict[str, dict[str, float] | None]:
    """Score a model folder on a task's splits: ``{split: metrics}`` (None for an unlabelled split).

    A split whose file is absent raises FileNotFoundError.
    """
    from pert.text import load_tokenizer

    task = get_task(task, task_args) if isinstance(task, str) else task
    model_dir, data_dir = Path(model_dir), Path(data_dir)
    dev = resolve_device(device)
    tokenizer = load_tokenizer(model_dir)
    model = task.build_model(model_dir)
    if getattr(model, "pert_new_head", False):
        raise ValueError(f"{model_dir}: has no trained head for task {task.name}; fine-tune it first "
                         f"(pert finetune --task {task.name} ...)")
    model.to(dev)
    results: dict[str, dict[str, float] | None] = {}
    for split in splits:
        examples = _read(task, data_dir, split, max_examples)
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
    """The folder's name, with its parent's for generic names (``runs/pert-tiny/final`` -> ``pert-tiny/final``)."""
    path = Path(model_dir).resolve()
    if path.name in ("final", "model", "best", "checkpoint") or path.name.startswith("step-"):
        return f"{path.parent.name}/{path.name}"
    return path.name


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pert")
    except PackageNotFoundError:
        return "unknown"


@locks_output  # one run per --out
def finetune(cfg: FinetuneConfig) -> dict[str, Any]:
    """Fine-tune ``cfg.task`` for every seed; returns the run summary also written to ``OUT/results.json``."""
    from pert.report import write_run_report
    from pert.text import load_tokenizer

    task = get_task(cfg.task, cfg.task_args)
    cfg = cfg.resolved(task.defaults)
    model_dir, data_dir, out = Path(cfg.model), Path(cfg.data), Path(cfg.out)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"--model {model_dir}: not a model folder (no config.json)")
    if not data_dir.is_dir():
        raise FileNotFoundError(f"--data {data_dir}: no such folder")
    device = resolve_device(cfg.device)
    tokenizer = load_tokenizer(model_dir)

    train = task.read(data_dir, "train")
    if not train:
        raise FileNotFoundError(f"--data {data_dir}: task {task.name} found no training file there")
    if cfg.max_train_examples and cfg.max_train_examples < len(train):
        keep = sorted(random.Random(0).sample(range(len(train)), cfg.max_train_examples))
        train = [train[i] for i in keep]
    # dev always (it picks the best checkpoint); test only when it is to be scored
    splits = {s: _read(task, data_dir, s, cfg.max_eval_examples) for s in ("dev", "test")
              if s == "dev" or s in cfg.eval_splits}
    log.info("%s: %d train examples; %s", task.name, len(train),
             ", ".join(f"{s} {'absent' if e is None else len(e)}" for s, e in splits.items()))
    train_features = task.encode(train, tokenizer, cfg.max_seq_len)
    eval_features = {s: task.encode(e, tokenizer, cfg.max_seq_len) for s, e in splits.items() if e is not None}

    out.mkdir(parents=True, exist_ok=True)
    record = run_record(cfg, task)
    (out / "run.json").write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    seeds = []
    for seed in cfg.seeds:
        result = _train_seed(cfg, task, seed, tokenizer, device, train_features, splits, eval_features, out)
        (out / f"seed-{seed}" / "metrics.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        seeds.append(result)
    return write_run_report(out, record, seeds)


def _train_seed(cfg: FinetuneConfig, task: Task, seed: int, tokenizer: Any, device: torch.device,
                train_features: list[dict[str, Any]], splits: dict[str, list[Any] | None],
                eval_features: dict[str, list[dict[str, Any]]], out: Path) -> dict[str, Any]:
    from pert.convert.hf import save_model_folder

    seed_dir = out / f"seed-{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    model = task.build_model(Path(cfg.model)).to(device)
    gen = torch.Generator().manual_seed(seed)
    # --group-by-length: transformers' own sampler (shuffled mega-batches, each sorted by length)
    sampler = LengthGroupedSampler(cfg.batch_size, lengths=[len(f["input_ids"]) for f in train_features],
                                   generator=gen) if cfg.group_by_length else None
    loader = torch.utils.data.DataLoader(train_features, batch_size=cfg.batch_size, shuffle=sampler is None,
                                         sampler=sampler, generator=gen,
                                         collate_fn=lambda f: task.collate(f, tokenizer))
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    total = math.ceil(steps_per_epoch * cfg.epochs)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    optimizer = adamw(model, cfg.lr, cfg.weight_decay)
    scheduler = transformers.get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    eval_every = cfg.eval_steps or steps_per_epoch
    writer = ScalarWriter(seed_dir / "tensorboard")
    dev_examples, dev_features = splits.get("dev"), eval_features.get("dev")
    can_select = dev_examples is not None and task.has_labels(dev_examples)

    best: dict[str, Any] = {"score": -math.inf, "step": 0, "state": None}
    history: list[dict[str, Any]] = []

    def dev_eval(step: int) -> None:
        if not can_select:
            return
        metrics, predictions = score(task, model, tokenizer, dev_examples, dev_features, cfg.eval_batch_size,
                                     device, cfg.precision, f"dev @{step}")
        history.append({"step": step, **metrics})
        for k, v in metrics.items():
            writer.add_scalar(f"dev/{k}", v, step)
        log.info("seed %d step %d/%d dev: %s", seed, step, total, _fmt(metrics))
        if metrics[task.main_metric] > best["score"]:
            best.update(score=metrics[task.main_metric], step=step, dev=(metrics, predictions),
                        state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        model.train()

    log.info("seed %d: %d steps (%d per epoch), lr %g, batch %d, max_seq_len %d, device %s", seed, total,
             steps_per_epoch, cfg.lr, cfg.batch_size, cfg.max_seq_len, device)
    step, micro, t0 = 0, 0, time.time()
    model.train()
    bar = tqdm(total=total, desc=f"{task.name} seed {seed}", disable=None)
    while step < total:
        for batch in loader:
            with autocast(device, cfg.precision):
                loss = task.loss(model, _to(batch, device)) / cfg.grad_accum
            scaler.scale(loss).backward()
            micro += 1
            if micro % cfg.grad_accum:
                continue
            if cfg.max_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == total:  # reading the loss waits for the device: not every step
                value = loss.item() * cfg.grad_accum
                if not math.isfinite(value):
                    raise RuntimeError(f"seed {seed} step {step}: loss is {value}; lower --lr or use --precision fp32")
                writer.add_scalar("train/loss", value, step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                log.debug("seed %d step %d loss %.4f (%.1f s)", seed, step, value, time.time() - t0)
                bar.set_postfix(loss=f"{value:.4f}")
            if step % eval_every == 0 or step == total:
                dev_eval(step)
            if step >= total:
                break
    bar.close()
    train_seconds = time.time() - t0
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    else:
        best["step"] = step
        log.warning("%s: no labelled dev split; keeping the final checkpoint (step %d)", task.name, step)

    result: dict[str, Any] = {"seed": seed, "best_step": best["step"], "steps": step,
                              "train_seconds": round(train_seconds, 1)}
    for split in cfg.eval_splits:
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
            for k, v in metrics.items():
                writer.add_scalar(f"best_{split}/{k}", v, best["step"])
        if cfg.save_predictions:
            task.save_predictions(examples, predictions, seed_dir / f"predictions_{split}.jsonl")
        log.info("seed %d best (step %d) %s: %s", seed, best["step"], split, _fmt(metrics))
    result["dev_history"] = history
    writer.close()
    if cfg.save_model:
        info = {"task": task.name, "seed": seed, "best_step": best["step"], "base_model": str(cfg.model),
                **{s: result[s] for s in ("dev", "test") if s in result}}
        save_model_folder(model, tokenizer, seed_dir / "best", training_info=info)
    return result
