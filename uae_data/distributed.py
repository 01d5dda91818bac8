"""Multi-process training on torch.distributed, set up by accelerate (`torchrun` / `accelerate launch`;
gloo on CPU, NCCL on CUDA). One process without a launcher is the same code with world size 1.

The scheme is "same numbers for any N": every rank walks the same seeded sample stream and makes the same
random draws for the whole global batch, keeps its own contiguous slice of it, scales its loss to the
global normaliser (tokens or samples of the global batch, as TRL normalises GRPO losses over the global
batch) and the gradients are summed across ranks before each optimizer step. So a run's loss curve,
checkpoints and resume do not depend on the number of processes (up to float summation order), which is
what the tests check against a 1-process run. Each rank therefore needs the global batch's metadata
(captions, scene specs), but decodes only its own slice's images (uae_train/training/loader.py).

Why summed gradients instead of wrapping models in DistributedDataParallel: our Encoder / Decoder call their
inner modules through several entry points (sft_loss, encode_text, sample, generate, LoRA adapters that are
switched on and off), which DDP's forward hooks do not all see; one flattened all-reduce per optimizer step
is DDP's arithmetic without that constraint, and exact when ranks hold different token counts.
"""
from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass
class Dist:
    """This process's place in the run. `world == 1` when not launched by torchrun / accelerate."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def bounds(self, n: int, what: str = "batch") -> tuple[int, int]:
        """[lo, hi) of this rank's contiguous share of n items; n must divide evenly (equal shares keep
        every rank's step in lock-step and the normalisers exact)."""
        if n % self.world:
            from uae_data.core.errors import ConfigError

            raise ConfigError(f"{what} of {n} does not split over {self.world} processes; make it a multiple of {self.world}")
        k = n // self.world
        return self.rank * k, (self.rank + 1) * k

    def shard(self, items: Sequence[T], what: str = "batch") -> list[T]:
        lo, hi = self.bounds(len(items), what)
        return list(items[lo:hi])

    def split(self, items: Sequence[T]) -> list[T]:
        """A round-robin share for evaluation (any n; rank r takes items r, r+N, ...)."""
        return list(items[self.rank::self.world])

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def sum(self, *values: float) -> list[float]:
        """Each value summed over ranks (float64 on CPU, as the logged metrics are)."""
        if not self.active:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self._comm_device)
        torch.distributed.all_reduce(t)
        return [float(v) for v in t.cpu()]

    def sync_grads(self, params: Iterable[torch.nn.Parameter], average: bool = False) -> None:
        """Sum (or average) gradients over ranks, in one flattened all-reduce (a missing grad counts as zero)."""
        if not self.active:
            return
        params = [p for p in params if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).to(self._comm_device, torch.float32) for g in grads])
        torch.distributed.all_reduce(flat)
        if average:
            flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(p.device, p.dtype)
            offset += n

    def broadcast_params(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Rank 0's weights on every rank (they start equal from one seed; this makes it certain)."""
        if not self.active:
            return
        with torch.no_grad():
            for p in params:
                t = p.data.to(self._comm_device)
                torch.distributed.broadcast(t, 0)
                p.data.copy_(t.to(p.device))

    def gather(self, obj):
        """Every rank's picklable `obj`, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    @property
    def _comm_device(self) -> torch.device:
        return self.device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


_STATE: Dist | None = None


def launched() -> bool:
    """True inside torchrun / accelerate launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str = "auto") -> Dist:
    """Join the process group the launcher describes (once per process) and pick this rank's device.

    device "auto": cuda:LOCAL_RANK when CUDA is visible, else cpu (gloo). Without a launcher: world 1 (and
    the device is the caller's to choose).
    """
    global _STATE
    if _STATE is not None:
        return _STATE
    if not launched():  # the caller resolves its own device (one process)
        _STATE = Dist()
        return _STATE
    want_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    from accelerate import PartialState

    state = PartialState(cpu=want_cpu)
    _STATE = Dist(rank=state.process_index, world=state.num_processes, device=state.device)
    atexit.register(_leave)
    return _STATE


def _leave() -> None:
    """Tear the process group down before the interpreter does. Why: a gloo group left to the exit's static
    destructors aborted the process now and then ("terminate called without an active exception", exit
    -6 after a finished run: 9 of 25 two-process runs of a script that all-reduced and exited, 0 of 25 with
    this; benchmarks/results/gloo_exit.txt)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Code that one rank runs by itself (rank 0's evaluations during training) sees a 1-process world, so
    harnesses that split their items over processes do not wait for ranks that are not there."""
    global _STATE
    saved = _STATE
    _STATE = Dist(device=saved.device if saved else torch.device("cpu"))
    try:
        yield
    finally:
        _STATE = saved


def current() -> Dist:
    """The state `setup` made, or a 1-process one."""
    return _STATE or Dist()
