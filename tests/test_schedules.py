"""The pretraining lr schedule: linear warmup then cosine (or constant). After warmup it is diffusers'
cosine schedule exactly; during warmup it is diffusers' shifted by one step (ours never gives lr 0), which is
why uae keeps its own (uae_train/training/schedules.py says so)."""
from __future__ import annotations

import pytest
import torch
from diffusers.optimization import get_scheduler

from uae_train.training.schedules import constant_schedule, warmup_lambda, warmup_schedule

pytestmark = pytest.mark.unit


def _lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)


def test_after_warmup_the_cosine_is_diffusers_cosine_and_warmup_is_one_step_ahead():
    warmup, total = 5, 30
    ours = _lrs(warmup_schedule(_optimizer(), "cosine", warmup, total), total)
    theirs = _lrs(get_scheduler("cosine", _optimizer(), num_warmup_steps=warmup, num_training_steps=total), total + 1)
    assert ours[warmup:] == pytest.approx(theirs[warmup:total])
    assert ours[:warmup] == pytest.approx(theirs[1:warmup + 1])  # (s + 1) / warmup: the first step is not lr 0
    assert theirs[0] == 0.0 and ours[0] == pytest.approx(1 / warmup)


def test_constant_after_warmup_and_the_rl_constant_schedule():
    assert [warmup_lambda("constant", 2, 10)(s) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert _lrs(constant_schedule(_optimizer()), 3) == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="cosine, constant"):
        warmup_lambda("linear", 2, 10)
