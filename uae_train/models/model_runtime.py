"""Device, dtype, seeding and call-signature helpers for a wrapped transformers model (the encoder's).

They exist because the obvious one-liners differ subtly: `.to(bfloat16)` rounds rotary buffers that
`from_pretrained(dtype=)` keeps in fp32, and seeding must not leak into the caller's global RNG.
"""
from __future__ import annotations

import contextlib
import inspect
from typing import Iterator

import torch


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """A torch dtype from a name (float32, bfloat16, ...); None = bf16 on cuda, fp32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. float32, bfloat16, float16")
        return value
    return dtype


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNGs inside the block only; the caller's global RNG state is restored afterwards."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def move_model(model: torch.nn.Module, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
    """model.to(device, dtype), but non-persistent buffers (rotary inv_freq) keep their own precision.

    A plain .to(bfloat16) rounds inv_freq to bf16, while from_pretrained(dtype=bfloat16) keeps it fp32,
    so a cast model and its saved-and-loaded copy would disagree by ~1e-2 in log-probs.
    """
    model.to(device=device)
    if dtype is None:
        return
    kept = [(module, name, module._buffers[name]) for module in model.modules()
            for name in getattr(module, "_non_persistent_buffers_set", ()) if module._buffers.get(name) is not None]
    model.to(dtype=dtype)
    for module, name, buffer in kept:
        module._buffers[name] = buffer


def accepts_kwarg(module: torch.nn.Module, name: str) -> bool:
    """Whether module.forward takes a keyword `name` (peft wrappers forward **kwargs to the model)."""
    forward = module.get_base_model().forward if hasattr(module, "get_base_model") else module.forward
    params = inspect.signature(forward).parameters
    return name in params
