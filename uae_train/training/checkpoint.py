"""Run checkpoints: the trainable weights (safetensors), optimizer/scheduler (+ EMA) state and counters, written
to a temporary folder and renamed, read back with `torch.load(weights_only=True)` so a run folder from someone
else cannot run code. One layout for every stage and for any number of processes (uae_train.fsdp gathers a
sharded model's tensors before saving and lays them out again on load)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from uae_data.core.errors import InputError


def _trainable(module) -> dict[str, torch.nn.Parameter]:
    """Trainable parameters by name (the Encoder wraps its transformers model in `.model`)."""
    named = module.named_parameters() if hasattr(module, "named_parameters") else module.model.named_parameters()
    return {n: p for n, p in named if p.requires_grad}


def save_checkpoint(path: Path, module, optimizer, scheduler, state: dict, ema=None, full: dict | None = None) -> None:
    """Trainable weights as safetensors + optimizer/scheduler (+ EMA) state + counters; written then renamed.
    `full`: {"weights", "optimizer"} already gathered from a sharded model (uae_train.fsdp), saved instead."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    weights = full["weights"] if full else _trainable(module)
    save_file({n: p.detach().contiguous().cpu() for n, p in weights.items()}, tmp / "trainable.safetensors")
    extra = {"ema": ema.state_dict()} if ema is not None else {}
    torch.save({"optimizer": full["optimizer"] if full else optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                **extra}, tmp / "optim.pt")
    (tmp / "state.json").write_text(json.dumps(state))
    if path.exists():
        old = path.with_name(path.name + ".old")
        path.rename(old)
        tmp.rename(path)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(path)


def load_checkpoint(path: Path, module, optimizer, scheduler, ema=None, sharded: bool = False) -> dict:
    """Read every file of a checkpoint first, then apply: a corrupt file is named and nothing is loaded."""
    from safetensors import SafetensorError

    def broken(name: str, err: BaseException) -> InputError:
        detail = str(err).splitlines()[0][:120] if str(err) else "unreadable"
        return InputError(f"{path / name}: cannot resume from it ({type(err).__name__}: {detail}); the run "
                          "cannot continue from this checkpoint: restore the file or start a new --out")

    try:
        weights = load_file(path / "trainable.safetensors")
    except (SafetensorError, OSError) as err:
        raise broken("trainable.safetensors", err) from None
    try:  # tensors and plain containers only: a run folder from someone else must not run code
        st = torch.load(path / "optim.pt", map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for a payload, EOFError/RuntimeError for a truncated file
        raise broken("optim.pt", err) from None
    try:
        state = json.loads((path / "state.json").read_text())
        step, seen = int(state["step"]), int(state["samples_seen"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise broken("state.json", err) from None
    params = _trainable(module)
    if set(weights) != set(params) or not isinstance(st, dict) or not {"optimizer", "scheduler"} <= set(st):
        raise InputError(f"{path}: checkpoint does not match this model (saved {len(weights)} tensors, model has "
                         f"{len(params)} trainable); the run cannot continue from it")
    if sharded:  # full tensors in the file, this rank's shards in the model (uae_train.fsdp)
        from uae_train import fsdp

        with torch.no_grad():
            for n, w in weights.items():
                params[n].copy_(fsdp.like(w, params[n]))
        optimizer.load_state_dict(fsdp.shard_optimizer_state(st["optimizer"], optimizer))
        scheduler.load_state_dict(st["scheduler"])
        return state | {"step": step, "samples_seen": seen}
    with torch.no_grad():
        for n, w in weights.items():
            params[n].copy_(w.to(params[n].device))
    optimizer.load_state_dict(st["optimizer"])
    scheduler.load_state_dict(st["scheduler"])
    if ema is not None and "ema" in st:
        ema.load_state_dict(st["ema"])
    return state | {"step": step, "samples_seen": seen}
