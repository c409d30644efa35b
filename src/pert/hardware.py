"""What the hardware offers, checked once where a default depends on it: the device and precision every verb
resolves the same way (``--device auto``, ``--precision auto``)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch


def cpu_bf16() -> bool:
    """The CPU has native bf16 dot products (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_supported() -> bool:
    """bf16 autocast pays off on CUDA with bf16 and on CPUs with native bf16 dot products (AVX512-BF16, AMX)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_bf16()


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` (or None) picks CUDA, then MPS, then CPU; other names are checked against this machine."""
    if name in (None, "auto"):
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
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name}: MPS is not available on this machine")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 where ``device`` has fast bf16 (CUDA with bf16, a CPU with AVX512-BF16/AMX), else fp32;
    fp32/bf16/fp16 are kept, fp16 is refused on a CPU."""
    if precision not in ("auto", "fp32", "bf16", "fp16"):
        raise ValueError(f"--precision must be auto, fp32, bf16 or fp16, not {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if device.type == "cpu" and cpu_bf16() else "fp32"
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("--precision fp16 needs a GPU; use bf16 (or auto) on a CPU")
    return precision


def default_precision(recorded: str | None, device: Any) -> str:
    """The fine-tuning precision where ``device`` runs it well (fp16 on GPUs, bf16 on GPUs and CPUs with
    bf16 units), else fp32."""
    kind = getattr(device, "type", str(device))
    if recorded == "fp16" and kind == "cuda":
        return "fp16"
    if recorded == "bf16" and (kind == "cuda" or (kind == "cpu" and bf16_supported())):
        return "bf16"
    return "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Autocast to ``precision`` (bf16/fp16) on ``device``; nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)
