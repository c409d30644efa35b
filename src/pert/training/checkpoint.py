"""Atomic, resumable training checkpoints.

``OUT/checkpoints/step_00001000/`` holds model.safetensors and config.json (a loadable model folder),
trainer_state.pt (optimizer, scheduler, step: tensors and plain values only, read with
``weights_only=True``), rng_rank{R}.pt per process, and train_config.json. It is written under a
temporary name and renamed when complete, so a crash never leaves a half checkpoint that looks whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model

_NAME = re.compile(r"^step_(\d{8})$")


def checkpoint_dirs(out: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(out) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name))


def latest_checkpoint(out: str | Path) -> Path | None:
    found = checkpoint_dirs(out)
    return found[-1] if found else None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save_checkpoint(accelerator, model, optimizer, scheduler, step: int, out: str | Path,
                    train_config: dict, keep_last: int) -> Path:
    """Write the checkpoint of ``step`` (all processes call this; the main one writes the shared part)."""
    root = Path(out) / "checkpoints"
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    if accelerator.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        unwrapped = accelerator.unwrap_model(model)
        save_model(unwrapped, str(tmp / "model.safetensors"))
        unwrapped.config.to_json_file(tmp / "config.json")
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step},
                   tmp / "trainer_state.pt")
        (tmp / "train_config.json").write_text(json.dumps(train_config, indent=2), encoding="utf-8")
    accelerator.wait_for_everyone()
    torch.save(rng_state(), tmp / f"rng_rank{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in checkpoint_dirs(out)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(path: Path, accelerator, model, optimizer, scheduler) -> int:
    """Restore model, optimizer, scheduler and this process's RNG; returns the step."""
    unwrapped = accelerator.unwrap_model(model)
    missing, unexpected = load_model(unwrapped, str(path / "model.safetensors"), strict=False)
    if unexpected or [k for k in missing if "decoder" not in k]:
        raise ValueError(f"{path}/model.safetensors does not match the model "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}); resume with the same options")
    state = torch.load(path / "trainer_state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_file = path / f"rng_rank{accelerator.process_index}.pt"
    if rng_file.is_file():
        rng = torch.load(rng_file, map_location="cpu", weights_only=True)
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return int(state["step"])
