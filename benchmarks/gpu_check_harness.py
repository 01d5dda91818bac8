"""The harness of benchmarks/gpu_check.py: section context, timing, memory, failure capture and the report's
header fields (device slug, package versions, git commit)."""
from __future__ import annotations

import gc
import os
import resource
import subprocess
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable

import torch

from gpu_check_models import Shapes

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Result:
    """One section's numbers (strings where the unit differs by section)."""

    step_s: float
    throughput: str
    settings: str
    detail: str = ""
    build_s: float = 0.0
    memory: str = ""
    resident: str = ""


@dataclass
class Ctx:
    """What every section gets: model shapes, the section plan, the device and a temp folder."""

    shapes: Shapes
    plan: Any
    device: torch.device
    tmp: Path

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self):
        """uae's mixed precision: bf16 autocast on CUDA, fp32 on CPU (training/precision.py's auto)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def built(ctx: Ctx, t0: float) -> tuple[float, str]:
    """After a section's models are built: (build seconds, resident memory), and the peak counter reset."""
    ctx.sync()
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats()
        return time.perf_counter() - t0, gib(torch.cuda.memory_allocated())
    return time.perf_counter() - t0, "n/a (cpu)"


def peak(ctx: Ctx) -> str:
    if ctx.cuda:
        return f"{gib(torch.cuda.max_memory_allocated())} (cuda max_memory_allocated over warm-up + timed steps)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (cpu: process peak RSS so far)"


def timed(ctx: Ctx, step: Callable[[int], object], warmup: int, steps: int) -> tuple[float, list]:
    """Mean seconds per step over `steps` after `warmup` untimed steps; also every timed step's return value."""
    for i in range(warmup):
        step(i)
    ctx.sync()
    t, outs = time.perf_counter(), []
    for i in range(warmup, warmup + steps):
        outs.append(step(i))
    ctx.sync()
    return (time.perf_counter() - t) / steps, outs


def device_slug(device: torch.device, tiny: bool) -> str:
    if device.type != "cuda":
        return "cpu-tiny" if tiny else "cpu"
    name = torch.cuda.get_device_name().lower()
    slug = next((w for w in name.replace("-", " ").split() if w[:1] in "abhlv" and w[1:].isdigit()), None)
    slug = slug or "".join(c if c.isalnum() else "-" for c in name.removeprefix("nvidia ")).strip("-")
    return slug + ("-tiny" if tiny else "")


def versions() -> str:
    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return ", ".join(f"{n} {v(n)}" for n in ("torch", "transformers", "diffusers", "peft", "open_clip_torch"))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                             text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("UAE_GIT_COMMIT", "unknown (no .git here; set UAE_GIT_COMMIT)")


def section_lines(i: int, name: str, status: str, r: Result | None) -> list[str]:
    lines = [f"[{i}] {name}", f"  status: {status}"]
    if r is not None:
        lines += [f"  time: {r.step_s:.4f} s/step", f"  throughput: {r.throughput}", f"  peak memory: {r.memory}",
                  f"  resident after build: {r.resident}", f"  build: {r.build_s:.1f} s",
                  f"  settings: {r.settings}"] + ([f"  detail: {r.detail}"] if r.detail else [])
    return lines


def attempt(fn: Callable[[Ctx], Result], ctx: Ctx) -> tuple[Result | None, str, bool]:
    """(result, status, out of memory?): a failure becomes one status line (its traceback goes to stderr); the
    exception is dropped on return, so the failed section's models can be freed."""
    try:
        return fn(ctx), "ok", False
    except Exception as err:  # noqa: BLE001 - one line per failed section, then the next section
        traceback.print_exc()
        text = str(err).strip()
        return None, f"error: {type(err).__name__}: {text.splitlines()[0] if text else ''}", \
            isinstance(err, torch.cuda.OutOfMemoryError)


def free(device: torch.device) -> None:
    """Release the last section's models (they are locals of the section function, gone by now)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
