"""Learning-rate schedules: linear warmup, then cosine decay or constant.

Why not diffusers' `get_scheduler`: its warmup gives the first optimizer step lr 0 (step / warmup), ours
(step + 1) / warmup, so switching would change every step of the shipped scene checkpoints' recipe, which
reproduces them byte for byte today. After warmup the two are the same function
(tests/test_schedules.py checks this against diffusers' cosine schedule).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

SCHEDULES = ("cosine", "constant")


def warmup_lambda(kind: str, warmup_steps: int, total: int) -> Callable[[int], float]:
    """The lr factor of optimizer step `step` (0-based): (step + 1) / warmup, then cosine to 0 or constant."""
    if kind not in SCHEDULES:
        raise ValueError(f"lr schedule must be one of {', '.join(SCHEDULES)}; got {kind!r}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if kind == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def warmup_schedule(optimizer: torch.optim.Optimizer, kind: str, warmup_steps: int, total: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_lambda(kind, warmup_steps, total))


def constant_schedule(optimizer: torch.optim.Optimizer):
    """The RL stages' schedule (a constant lr, as TRL's and Flow-GRPO's defaults); kept as a scheduler so
    checkpoints have one layout."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
