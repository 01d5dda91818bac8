"""The one place that turns a device setting into a torch device.

Why: "cuda if available" was written a dozen times with small differences (some raised on a missing GPU,
some fell back silently). Here `auto`/None picks CUDA when visible, and an explicit `cuda` without one is
a one-line user error.
"""
from __future__ import annotations

from typing import Any

from uae_data.core.errors import ConfigError


def default_device() -> str:
    """"cuda" when a CUDA device is visible, else "cpu"."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(name: Any = "auto"):
    """torch.device for "auto"/None (CUDA when visible), a device name, or a torch.device as given."""
    import torch

    if isinstance(name, torch.device):
        return name
    if name in (None, "", "auto"):
        return torch.device(default_device())
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device: {name} requested but no CUDA device is visible")
    return torch.device(name)
