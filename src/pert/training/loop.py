"""The pre-training loop: PerLM (or MLM) on a prepared corpus, through Accelerate.

One process (CPU or GPU)::

    pert pretrain --data corpus/ --out run/ --preset base --max-steps 100000

Several processes on one node (each reads a disjoint share of every epoch)::

    accelerate launch --num_processes 4 -m pert.cli pretrain --data corpus/ --out run/ ...
    torchrun --nproc_per_node 4 -m pert.cli pretrain --data corpus/ --out run/ ...

Interrupting (Ctrl-C, SIGTERM) writes a checkpoint first; ``--resume`` continues from the latest one with
the same model, optimizer, schedule, RNG and data position.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import signal
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from transformers import get_linear_schedule_with_warmup

from pert.config import to_dict
from pert.convert.hf import load_pretraining_model, save_model_folder
from pert.corpus.dataset import PreparedCorpus
from pert.hardware import resolve_device, resolve_precision
from pert.lock import locks_output
from pert.modeling import PertForPreTraining, preset_config
from pert.models import OpenedModel, open_model
from pert.objectives.perlm import KEPT, SHUFFLED
from pert.optim import adamw
from pert.progress import progress
from pert.scalars import ScalarWriter
from pert.training.checkpoint import latest_checkpoint, load_checkpoint, resolve_resume, save_checkpoint
from pert.training.config import PretrainConfig
from pert.training.data import PretrainData

log = logging.getLogger(__name__)


def accelerate_setup(device: str, precision: str) -> tuple[bool, str]:
    """(cpu, mixed_precision) for ``Accelerator``: cpu=True when --device is cpu or there is no accelerator
    (Accelerate only forms a multi-process CPU group, gloo, then); precision resolved for that device."""
    dev = resolve_device(device)
    return dev.type == "cpu", {"fp32": "no"}.get(p := resolve_precision(precision, dev), p)


def build_model(cfg: PretrainConfig, corpus: PreparedCorpus, init: OpenedModel | None = None) -> PertForPreTraining:
    """A fresh preset model for the corpus's vocabulary, or the opened --init-from folder (same vocabulary)."""
    if init is not None:
        from pert.text.tokenizer import vocab_sha256

        if vocab_sha256(init.tokenizer) != corpus.manifest["tokenizer"]["vocab_sha256"]:
            raise ValueError(f"{cfg.data} was prepared with another vocabulary than {cfg.init_from}; "
                             f"run `pert prepare --vocab {cfg.init_from}` first")
        model = load_pretraining_model(init.path, cfg.objective)
    else:
        config = preset_config(cfg.preset, corpus.vocab_size, max(512, cfg.max_seq_len))
        config.pert_mlm_head = cfg.objective == "mlm"
        model = PertForPreTraining(config)
    if cfg.dropout is not None:  # in the saved config too, so fine-tuning starts from the same value
        model.config.hidden_dropout_prob = model.config.attention_probs_dropout_prob = cfg.dropout
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = cfg.dropout
    if cfg.max_seq_len > model.config.max_position_embeddings:
        raise ValueError(f"--max-seq-len {cfg.max_seq_len} exceeds the model's "
                         f"{model.config.max_position_embeddings} positions")
    model.bert.pooler.requires_grad_(False)  # kept for BertModel compatibility; PerLM does not train it
    if cfg.compile:
        # the encoder only: its shapes are fixed by the packing, the head's vary with the selection;
        # Module.compile keeps parameter names, so checkpoints and exports are unchanged
        model.bert.compile()
    return model


class Meter:
    """Sums of loss and correct predictions kept on the device; read (one sync) only when logging."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(6, device=device, dtype=torch.float64)  # loss, batches, n/ok shuffled, n/ok kept

    def add(self, loss: torch.Tensor, correct: torch.Tensor, kinds: torch.Tensor) -> None:
        shuf, kept = kinds == SHUFFLED, kinds == KEPT
        self.sums += torch.stack([loss.detach().double(), torch.ones((), device=loss.device, dtype=torch.float64),
                                  shuf.sum().double(), (correct & shuf).sum().double(),
                                  kept.sum().double(), (correct & kept).sum().double()])

    def read(self, accelerator: Accelerator) -> dict[str, float]:
        s = accelerator.reduce(self.sums.clone(), reduction="sum").tolist()
        self.sums.zero_()
        n = max(s[2] + s[4], 1)
        # share_*: the realised split of the selected tokens (PerLM: moved / stayed; MLM: replaced / kept)
        return {"loss": s[0] / max(s[1], 1), "acc_shuffled": s[3] / max(s[2], 1),
                "acc_kept": s[5] / max(s[4], 1), "share_shuffled": s[2] / n, "share_kept": s[4] / n,
                "predictions": s[2] + s[4]}


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> tuple[dict[str, torch.Tensor], int]:
    """(batch on the device, real tokens in it); a batch without padding drops its all-ones attention mask.

    Decided on the host, before the copy: the encoder then skips building a mask (and SDPA may pick its
    fastest kernel) without a device-to-host check of the mask at every step.
    """
    mask = batch["attention_mask"]
    out = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "attention_mask"}
    if not bool(mask.all()):
        out["attention_mask"] = mask.to(device, non_blocking=True)
    return out, int(mask.sum())


class PositionBaselines:
    """Held-out PerLM diagnostics beside the model's accuracy, summed over the evaluation batches.

    - ``own_shuffled``: share of moved tokens the model answered with their own position (collapse: near 1);
    - the trivial baselines on the same tokens: ``uniform_shuffled`` (a uniform guess over the sequence's real
      tokens), ``left_shuffled``/``right_shuffled`` (always the token beside me) and ``neighbour_shuffled``, the
      better of the two, which a model must beat to show that it learned order rather than adjacency. Answering
      "own position" scores 0 on moved tokens and 1 on kept ones.
    """

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(5, device=device, dtype=torch.float64)  # moved, own, uniform, left, right

    def add(self, logits: torch.Tensor, positions: torch.Tensor, labels: torch.Tensor, kinds: torch.Tensor,
            attention_mask: torch.Tensor | None) -> None:
        moved = kinds == SHUFFLED
        real = (attention_mask.sum(1, keepdim=True) if attention_mask is not None
                else torch.full_like(positions[:, :1], logits.size(-1))).double()
        pred = logits.argmax(-1)
        self.sums += torch.stack([moved.sum().double(), (moved & (pred == positions)).sum().double(),
                                  (moved / real).sum(), (moved & (labels == positions - 1)).sum().double(),
                                  (moved & (labels == positions + 1)).sum().double()])

    def read(self, accelerator: Accelerator) -> dict[str, float]:
        s = accelerator.reduce(self.sums.clone(), reduction="sum").tolist()
        n = max(s[0], 1)
        left, right = s[3] / n, s[4] / n
        return {"own_shuffled": s[1] / n, "uniform_shuffled": s[2] / n, "left_shuffled": left,
                "right_shuffled": right, "neighbour_shuffled": max(left, right)}


def evaluate(model, data: PretrainData, accelerator: Accelerator, objective: str) -> dict[str, float]:
    """Held-out loss and accuracy; for PerLM also the own-position share and the trivial baselines."""
    model.eval()
    meter = Meter(accelerator.device)
    baselines = PositionBaselines(accelerator.device) if objective == "perlm" else None
    with torch.no_grad():
        for batch in data.eval():
            batch, _ = to_device(batch, accelerator.device)
            kinds = batch.pop("kinds")
            out = model(**batch, objective=objective)
            meter.add(out.loss, out.correct, kinds)
            if baselines is not None:
                baselines.add(out.logits, batch["positions"], batch["labels"], kinds, batch.get("attention_mask"))
    model.train()
    return meter.read(accelerator) | (baselines.read(accelerator) if baselines is not None else {})


def describe_eval(ev: dict[str, float]) -> str:
    """One line: the model on moved and kept tokens next to the baselines measured on the same tokens."""
    if "own_shuffled" not in ev:
        return f"held-out accuracy changed tokens {ev['acc_shuffled']:.3f}, kept {ev['acc_kept']:.3f}"
    return (f"held-out accuracy moved tokens {ev['acc_shuffled']:.3f} (baselines: neighbour "
            f"{ev['neighbour_shuffled']:.3f}, uniform {ev['uniform_shuffled']:.3f}, own position 0), kept "
            f"{ev['acc_kept']:.3f}; moved tokens answered 'own position' {ev['own_shuffled']:.1%}")


@locks_output  # one run per --out
def pretrain(cfg: PretrainConfig) -> dict:
    """Run pre-training; returns the summary also written to OUT/summary.json."""
    corpus = PreparedCorpus(cfg.data)  # bad input fails before any set-up
    # Accelerate's state is a process-wide singleton: reset the precision part (not the process group) so that a second
    # run in the same Python process may use another precision.
    AcceleratorState._reset_state()
    cpu, mixed_precision = accelerate_setup(cfg.device, cfg.precision)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    # Accelerate places the model: the folder is opened on the CPU, in fp32
    init = open_model(cfg.init_from, revision=cfg.revision, device="cpu", precision="fp32") if cfg.init_from \
        else None
    tokenizer = init.tokenizer if init is not None else corpus.tokenizer()
    data = PretrainData(corpus, cfg, accelerator.process_index, accelerator.num_processes)
    model = build_model(cfg, corpus, init)
    optimizer = adamw(model, cfg.lr, cfg.weight_decay, tuple(cfg.adam_betas), cfg.adam_eps)
    scheduler = get_linear_schedule_with_warmup(optimizer, cfg.warmup, cfg.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)

    step, done = 0, {"tokens": 0.0, "seconds": 0.0}  # what earlier sessions of this run did
    if not cfg.resume and latest_checkpoint(out) is not None:
        raise ValueError(f"{out} already holds checkpoints of a run; pass --resume to continue it, "
                         "or choose another --out")
    if cfg.resume:
        ckpt = resolve_resume(accelerator, out)
        if ckpt is None:
            log.warning("--resume: no checkpoint in %s/checkpoints; starting from step 0", out)
        else:
            step, loop_state, _ = load_checkpoint(ckpt, accelerator, model, optimizer, scheduler)
            done.update({k: float(v) for k, v in loop_state.items() if k in done})
            log.info("resumed from %s (step %d)", ckpt, step)
            finished = _finished_summary(out, step, cfg.max_steps)
            if finished is not None:
                log.info("%s finished at step %d already: nothing to do (a larger --max-steps trains on)", out, step)
                accelerator.end_training()
                return finished
    main = accelerator.is_main_process
    writer = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=2), encoding="utf-8")
        _drop_metrics_after(out / "metrics.jsonl", step)
        writer = ScalarWriter(out / "tensorboard")
        n_params = sum(p.numel() for p in accelerator.unwrap_model(model).parameters())
        log.info("%s objective, %.1fM parameters, %d processes, precision %s, %d training sequences of %d",
                 cfg.objective, n_params / 1e6, accelerator.num_processes, accelerator.mixed_precision,
                 len(data.train_ids), cfg.max_seq_len)

    stop = {"signal": None}
    old_handler = signal.getsignal(signal.SIGTERM)
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, lambda s, f: stop.update(signal="SIGTERM"))

    batches = data.train(start=step * cfg.grad_accum)
    meter = Meter(accelerator.device)
    # tokens of the whole run: the earlier sessions' count sits on the main process, summed over all when read
    tokens = torch.full((), done["tokens"] if accelerator.is_main_process else 0.0, device=accelerator.device,
                        dtype=torch.float64)
    history: list[dict] = []
    last_eval: dict = {}
    t0 = t_log = time.perf_counter()
    tokens_at_log = done["tokens"]

    def save() -> None:
        total = accelerator.reduce(tokens.clone(), reduction="sum").item()
        save_checkpoint(accelerator, model, optimizer, scheduler, step, out, to_dict(cfg), cfg.keep_last,
                        state={"tokens": total, "seconds": done["seconds"] + time.perf_counter() - t0})
    bar = progress(total=cfg.max_steps, initial=step, disable=not main, desc="pretrain", unit="steps",
                   dynamic_ncols=True)
    model.train()
    try:
        while step < cfg.max_steps:
            for micro in range(cfg.grad_accum):
                batch, n_tokens = to_device(next(batches), accelerator.device)
                kinds = batch.pop("kinds")
                sync = micro == cfg.grad_accum - 1
                with contextlib.nullcontext() if sync else accelerator.no_sync(model):
                    result = model(**batch, objective=cfg.objective)
                    accelerator.backward(result.loss / cfg.grad_accum)
                meter.add(result.loss, result.correct, kinds)
                tokens += n_tokens
            if cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update(1)

            if step % cfg.log_every == 0 or step == cfg.max_steps:
                m = meter.read(accelerator)
                total_tokens = accelerator.reduce(tokens.clone(), reduction="sum").item()
                now = time.perf_counter()
                m.update(step=step, lr=scheduler.get_last_lr()[0],
                         tokens_per_s=(total_tokens - tokens_at_log) / max(now - t_log, 1e-9))
                t_log, tokens_at_log = now, total_tokens
                history.append(m)
                if main:
                    bar.set_postfix(loss=f"{m['loss']:.3f}", shuf=f"{m['acc_shuffled']:.3f}",
                                    kept=f"{m['acc_kept']:.3f}", tok_s=f"{m['tokens_per_s']:.0f}")
                    _log(writer, out, "train", m, step)
            if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.max_steps:
                last_eval = evaluate(model, data, accelerator, cfg.objective)
                if main:
                    _log(writer, out, "eval", last_eval, step)
                    log.info("step %d: %s", step, describe_eval(last_eval))
            if cfg.save_every and step % cfg.save_every == 0 and step < cfg.max_steps:
                save()
            timed_out = cfg.max_minutes is not None and time.perf_counter() - t0 > cfg.max_minutes * 60
            # one process: checked every step (a slow machine may take minutes per log interval); several: on log
            # steps only, as agreeing on it costs a synchronisation
            check = accelerator.num_processes == 1 or step % cfg.log_every == 0
            if check and _any(accelerator, bool(stop["signal"]) or timed_out):
                log.info("stopping at step %d (%s)", step, stop["signal"] or "time budget reached")
                break
    except KeyboardInterrupt:
        log.warning("interrupted at step %d: writing a checkpoint before exiting", step)
        save()
        raise
    finally:
        bar.close()
        with contextlib.suppress(ValueError):
            signal.signal(signal.SIGTERM, old_handler)

    save()
    last_eval = evaluate(model, data, accelerator, cfg.objective)
    elapsed = done["seconds"] + time.perf_counter() - t0  # training time of the whole run, all sessions
    total_tokens = accelerator.reduce(tokens.clone(), reduction="sum").item()
    # every process must end with the same weights; a mismatch means the replicas diverged
    checksum = torch.stack([p.detach().double().sum() for p in accelerator.unwrap_model(model).parameters()]).sum()
    checksums = accelerator.gather(checksum.reshape(1).to(accelerator.device)).tolist()
    if len(set(checksums)) > 1:
        log.error("the %d processes hold different weights (checksums %s)", len(checksums), checksums)
    summary = {
        "replica_checksums": checksums,
        "steps": step, "objective": cfg.objective, "seconds": round(elapsed, 1),
        "tokens": int(total_tokens), "tokens_per_s": round(total_tokens / max(elapsed, 1e-9), 1),
        "final_train": history[-1] if history else None, "eval": last_eval,
        "processes": accelerator.num_processes, "precision": accelerator.mixed_precision,
    }
    if main:
        _log(writer, out, "eval", last_eval, step)
        writer.close()
        info = {"objective": cfg.objective, "steps": step, "tokens": int(total_tokens),
                "data": corpus.manifest.get("inputs"), "eval": last_eval, "config": to_dict(cfg)}
        save_model_folder(accelerator.unwrap_model(model), tokenizer, out / "final", info)
        (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        log.info("done: %d steps in %.0fs; %s; model in %s", step, elapsed, describe_eval(last_eval), out / "final")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _finished_summary(out: Path, step: int, max_steps: int) -> dict | None:
    """The summary of a run that already ended at ``step`` >= ``max_steps`` (so --resume has nothing to do)."""
    file = out / "summary.json"
    if step < max_steps or not file.is_file():
        return None
    try:
        summary = json.loads(file.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("steps") == step else None


def _any(accelerator: Accelerator, flag: bool) -> bool:
    """True on every process when it is true on one (so all stop at the same step)."""
    if accelerator.num_processes == 1:
        return flag
    t = torch.tensor(float(flag), device=accelerator.device)
    return accelerator.reduce(t, reduction="sum").item() > 0


def _drop_metrics_after(file: Path, step: int) -> None:
    """Keep the metrics rows up to ``step``: the rows an interrupted session logged after its last checkpoint (or
    a start that never saved one) are logged again by the run that continues from there."""
    if not file.is_file():
        return
    lines = file.read_text("utf-8").splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
        file.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def _log(writer, out: Path, split: str, metrics: dict, step: int) -> None:
    for k, v in metrics.items():
        if isinstance(v, int | float) and not (isinstance(v, float) and math.isnan(v)) and k != "step":
            writer.add_scalar(f"{split}/{k}", v, step)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"split": split, "step": step, **metrics}) + "\n")
