"""What the hardware offers, checked once where a default depends on it."""

from __future__ import annotations

from pathlib import Path

import torch


def bf16_supported() -> bool:
    """bf16 autocast pays off on CUDA with bf16 and on CPUs with native bf16 dot products (AVX512-BF16, AMX)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
