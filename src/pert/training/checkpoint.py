"""Atomic, verified, resumable training checkpoints (pre-training and fine-tuning).

``DIR/checkpoints/step_00001000/`` holds model.safetensors and config.json (a loadable model folder),
trainer_state.pt (optimizer, scheduler, step and the loop's own counters: tensors and plain values only,
read with ``weights_only=True``), rng_rank{R}.pt per process, train_config.json, any extra tensors
(extra.safetensors, e.g. the best state so far of a fine-tuning run), and last ``checksums.json``: the
size and SHA-256 of every other file. It is written under a temporary name and renamed when complete,
so a crash never leaves a half checkpoint that looks whole (and no file is fsync'ed: one torn by a power
loss fails its checksum and the previous checkpoint is used); a failed save removes its temporary folder
and leaves the previous checkpoints as they were. ``--resume`` loads the newest checkpoint whose files
match their checksums and warns, in one line, about each newer one that does not.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8})$")
MANIFEST = "checksums.json"


class CheckpointError(ValueError):
    """A checkpoint could not be written or none could be read; the message is one line for the user."""


def checkpoint_dirs(out: str | Path) -> list[Path]:
    """Checkpoint folders (complete by name, not yet verified), oldest first."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def latest_checkpoint(out: str | Path) -> Path | None:
    found = checkpoint_dirs(out)
    return found[-1] if found else None


def remove_partial(out: str | Path) -> None:
    """Delete temporary folders that a killed save left behind."""
    root = Path(out) / "checkpoints"
    if root.is_dir():
        for p in root.glob(".tmp_step_*"):
            shutil.rmtree(p, ignore_errors=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record size and SHA-256 of every file of ``folder``; written last, atomically."""
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"files": files}, indent=1), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def verify_checkpoint(folder: Path) -> str | None:
    """None when every file listed in the manifest is there with its size and SHA-256; else what is wrong."""
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"no {MANIFEST} (an incomplete save)"
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST} unreadable ({e})"
    for name in ("model.safetensors", "trainer_state.pt"):
        if name not in files:
            return f"{MANIFEST} does not list {name}"
    for name, want in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want["bytes"]:
            return f"{name} has {size} bytes, {want['bytes']} were written"
        if _sha256(path) != want["sha256"]:
            return f"{name} does not match its SHA-256 (corrupted)"
    return None


def find_resumable(out: str | Path) -> Path | None:
    """The newest checkpoint that verifies; each newer damaged one is named in a one-line warning."""
    for folder in reversed(checkpoint_dirs(out)):
        problem = verify_checkpoint(folder)
        if problem is None:
            return folder
        log.warning("checkpoint %s is damaged: %s; trying an older one", folder, problem)
    return None


def resolve_resume(accelerator, out: str | Path) -> Path | None:
    """``find_resumable`` on the main process, its answer shared with all (all resume from the same one)."""
    from accelerate.utils import broadcast_object_list

    found = [None]
    if accelerator.is_main_process:
        remove_partial(out)
        ckpt = find_resumable(out)
        if ckpt is None and checkpoint_dirs(out):
            found = ["!"]
        else:
            found = [None if ckpt is None else str(ckpt)]
    if accelerator.num_processes > 1:
        broadcast_object_list(found)
    if found[0] == "!":
        raise CheckpointError(f"--resume: no valid checkpoint in {Path(out) / 'checkpoints'} "
                              "(every one failed its checksums); start a new run in another --out")
    return None if found[0] is None else Path(found[0])


def _torch_save(obj: Any, path: Path) -> None:
    """torch.save through memory: a failed write (a full disk) is then an OSError naming the file, where
    torch's own writer reports an opaque "unexpected pos" RuntimeError."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with open(path, "wb") as f:
        f.write(buf.getbuffer())


# what a failed write raises: the OS, and safetensors' writer (its message carries the OS error)
_WRITE_ERRORS = (OSError, SafetensorError)


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _agree_ok(accelerator, ok: bool) -> bool:
    """True on every process when it is true on all (a barrier too)."""
    if accelerator.num_processes == 1:
        return ok
    t = torch.tensor(0.0 if ok else 1.0, device=accelerator.device)
    return accelerator.reduce(t, reduction="sum").item() == 0


def save_checkpoint(accelerator, model, optimizer, scheduler, step: int, out: str | Path,
                    train_config: dict, keep_last: int, state: dict[str, Any] | None = None,
                    tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the checkpoint of ``step`` (all processes call this; the main one writes the shared part).

    ``state`` (plain values) and ``tensors`` are the loop's own, given back by ``load_checkpoint``.
    A failure (a full disk, say) removes the temporary folder and raises CheckpointError naming the path;
    the checkpoints already there are untouched.
    """
    root = Path(out) / "checkpoints"
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    error: Exception | None = None
    if accelerator.is_main_process:
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            unwrapped = accelerator.unwrap_model(model)
            save_model(unwrapped, str(tmp / "model.safetensors"))
            unwrapped.config.to_json_file(tmp / "config.json")
            trainer = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                       "loop": state or {}}
            if getattr(accelerator, "scaler", None) is not None:
                trainer["scaler"] = accelerator.scaler.state_dict()
            _torch_save(trainer, tmp / "trainer_state.pt")
            if tensors:
                save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "extra.safetensors"))
            (tmp / "train_config.json").write_text(json.dumps(train_config, indent=2), encoding="utf-8")
        except _WRITE_ERRORS as e:
            error = e
    if _agree_ok(accelerator, error is None):
        try:
            _torch_save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
        except _WRITE_ERRORS as e:
            error = e
    if _agree_ok(accelerator, error is None) and accelerator.is_main_process:
        try:
            write_manifest(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except _WRITE_ERRORS as e:
            error = e
    if not _agree_ok(accelerator, error is None):
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        previous = [p for p in checkpoint_dirs(out) if p != final]
        if error is None:
            reason = "failed on another process"
        elif isinstance(error, OSError) and error.strerror:
            reason = f"{error.strerror} ({error.filename or tmp})"
        else:
            reason = f"{str(error).splitlines()[0]} (in {tmp})"
        raise CheckpointError(f"could not write checkpoint {final}: {reason}; "
                              + (f"the previous checkpoint {previous[-1]} is intact" if previous
                                 else "no earlier checkpoint exists"))
    if accelerator.is_main_process:
        for old in checkpoint_dirs(out)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_state(file: Path) -> Any:
    """``torch.load(weights_only=True)`` of a checkpoint file; one that holds anything but tensors and plain
    containers (a pickle that would run code) or is not a torch file is refused in one line naming it."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{file}: refused, not a checkpoint state that loads safely ({first})") from None


def load_checkpoint(path: Path, accelerator, model, optimizer, scheduler
                    ) -> tuple[int, dict[str, Any], dict[str, torch.Tensor]]:
    """Restore model, optimizer, scheduler and this process's RNG; returns (step, loop state, extra tensors)."""
    unwrapped = accelerator.unwrap_model(model)
    missing, unexpected = load_model(unwrapped, str(path / "model.safetensors"), strict=False)
    if unexpected or [k for k in missing if "decoder" not in k]:
        raise CheckpointError(f"{path}/model.safetensors does not match the model "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}); resume with the same options")
    state = load_state(path / "trainer_state.pt")
    if not isinstance(state, dict) or not {"optimizer", "scheduler", "step"} <= set(state):
        raise CheckpointError(f"{path}/trainer_state.pt: expected a dict with optimizer, scheduler and step")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "scaler" in state and getattr(accelerator, "scaler", None) is not None:
        accelerator.scaler.load_state_dict(state["scaler"])
    rng_file = path / f"rng_rank{accelerator.process_index}.pt"
    if rng_file.is_file():
        rng = load_state(rng_file)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    extra = path / "extra.safetensors"
    tensors = load_file(str(extra)) if extra.is_file() else {}
    return int(state["step"]), state.get("loop", {}), tensors
