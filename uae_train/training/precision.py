"""Mixed precision for every recipe: bf16 autocast on CUDA by default, fp32 on CPU."""
from __future__ import annotations

from typing import Any

import torch


def use_bf16(cfg: Any, device: torch.device) -> bool:
    """cfg.mixed_precision: auto (bf16 on CUDA only) | no | bf16."""
    return cfg.mixed_precision == "bf16" or (cfg.mixed_precision == "auto" and device.type == "cuda")


def autocast(cfg: Any, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(cfg, device))


def make_accelerator(cfg: Any, device: torch.device):
    """accelerate's Accelerator for precision (bf16 autocast on CUDA), backward and gradient clipping.

    Models stay unwrapped (the Encoder/Decoder APIs call generate/sample on them); several processes
    synchronise gradients through uae_data.distributed instead of DDP (docs/distributed.md says why).
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    precision = "bf16" if use_bf16(cfg, device) else "no"
    # accelerate keeps one process-wide state and refuses a second Accelerator with another precision; one
    # process may run several recipes in turn (the demo, a notebook, the tests), so each run sets its own.
    # Only the precision state is dropped: the distributed PartialState (ranks, process group) is kept.
    state = AcceleratorState._shared_state
    if state and (state.get("_mixed_precision") != precision or state.get("_cpu") != (device.type == "cpu")):
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=device.type == "cpu", mixed_precision=precision)
