"""The optimizer step of several CPU processes on one machine: gradients summed through shared memory, and
each rank clips and steps only its share of the parameters (ZeRO-1's split), whose weights live in shared
memory for all ranks to read.

Why: with N processes every rank used to all-reduce the whole gradient over gloo (TCP on one machine:
~10 ms and ~5 ms of CPU per rank for the 2.5 M-parameter scene DiT) and then run the same AdamW step and
gradient norm as every other rank (~10 ms): work that does not shrink with N and bounded the speed-up of
`benchmarks/pretrain_scaling.py`. Here a rank publishes the gradients of the parameters other ranks own,
sums its own parameters' gradients over the ranks, clips and steps those in place; after one barrier every
rank reads the new weights from the same memory.

The numbers are those of the replicated path: gradients are summed in rank order (for 2 ranks a + b, as
gloo), AdamW is elementwise (a parameter's update does not depend on which others share its step), and the
clip norm is torch's own reduction of every parameter's norm in parameter order. Before a checkpoint the
owners send their AdamW state to rank 0, so checkpoints keep the ordinary layout.
"""
from __future__ import annotations

import atexit
import itertools
import mmap
import os
import socket
import tempfile
from pathlib import Path
from typing import Sequence

import torch

_VALUES = 8  # float64 slots per rank for the step's logged sums (loss, accuracy)


class SharedStep:
    """Sum, clip, step and share one parameter list across the ranks of one machine (see module doc)."""

    @classmethod
    def create(cls, dist, params: Sequence[torch.nn.Parameter]) -> SharedStep | None:
        """A SharedStep, or None where it does not apply (one process, not gloo, parameters not float32 on
        the CPU, ranks on several machines, no room in shared memory): the caller keeps the all-reduce path."""
        if not dist.active or torch.distributed.get_backend() != "gloo":
            return None
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in params):
            return None
        if len(set(dist.gather(socket.gethostname()))) != 1:
            return None
        n = sum(p.numel() for p in params)
        buf = _shared_buffer(dist, 8 * dist.world * _VALUES + 4 * (dist.world * n + n + len(params)))
        if buf is None:
            return None
        step = cls(dist, list(params), buf)
        atexit.register(step.release)  # runs before the group's teardown (registered earlier) and the exit
        return step

    def __init__(self, dist, params: list[torch.nn.Parameter], buf: mmap.mmap) -> None:
        self.dist, self.params, self._map = dist, params, buf
        self.offsets = [0, *itertools.accumulate(p.numel() for p in params)]
        n, world = self.offsets[-1], dist.world
        # parameter i goes to the rank whose equal share of the flat vector holds its middle: contiguous ranges
        owner = [min(world - 1, (self.offsets[i] + self.offsets[i + 1]) * world // max(1, 2 * n))
                 for i in range(len(params))]
        self.mine = [i for i, o in enumerate(owner) if o == dist.rank]
        self.others = [i for i, o in enumerate(owner) if o != dist.rank]
        floats = world * n + n + len(params)  # gradients per rank, weights, parameter norms
        values = torch.frombuffer(buf, dtype=torch.float64, count=world * _VALUES)
        rest = torch.frombuffer(buf, dtype=torch.float32, count=floats, offset=8 * world * _VALUES)
        self.values = values.view(world, _VALUES)
        self.grads = rest[:world * n].view(world, n)
        self.weights = rest[world * n:world * n + n]
        self.norms = rest[world * n + n:]
        with torch.no_grad():  # rank 0's weights (all ranks hold the same) become every rank's parameters
            if dist.main:
                for i, p in enumerate(params):
                    self._part(self.weights, i).copy_(p.reshape(-1))
            dist.barrier()
            for i, p in enumerate(params):
                p.data = self._part(self.weights, i).view_as(p)

    def _part(self, flat: torch.Tensor, i: int) -> torch.Tensor:
        return flat[self.offsets[i]:self.offsets[i + 1]]

    def reduce(self, *values: float, norms: bool = True) -> list[float]:
        """Sum the gradients: this rank's parameters get the global sum as .grad, the others none (a missing
        gradient counts as zero). Returns `values` summed over ranks (float64, rank order). norms: also
        publish this rank's parameter norms for `clip`."""
        rank, world = self.dist.rank, self.dist.world
        assert len(values) <= _VALUES, "reduce sums at most _VALUES floats"
        local = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        for i in self.others:  # what the owners of the other parameters need from this rank
            self._part(self.grads[rank], i).copy_(local[i].reshape(-1))
        for p in self.params:
            p.grad = None
        self.values[rank, :len(values)] = torch.tensor(values, dtype=torch.float64)
        self.dist.barrier()
        for i in self.mine:  # rank order, this rank's own gradient where its row would be
            parts = [local[i] if r == rank else self._part(self.grads[r], i).view_as(local[i]) for r in range(world)]
            total = parts[0] + parts[1]
            for part in parts[2:]:
                total += part
            self.params[i].grad = total
        out = self.values[0, :len(values)].clone()
        for r in range(1, world):
            out += self.values[r, :len(values)]
        if norms and self.mine:  # torch.nn.utils.clip_grad_norm_'s per-tensor norms (foreach, as it uses them)
            self.norms[self.mine[0]:self.mine[-1] + 1] = torch.stack(
                torch._foreach_norm([self.params[i].grad for i in self.mine], 2.0))
        self.dist.barrier()  # every rank has read the gradients and written its norms
        return [float(v) for v in out]

    def clip(self, max_norm: float) -> torch.Tensor:
        """Clip this rank's gradients by the global norm, computed as clip_grad_norm_ computes it."""
        total = torch.linalg.vector_norm(self.norms.clone(), 2.0)
        torch.nn.utils.clip_grads_with_norm_([self.params[i] for i in self.mine], max_norm, total)
        return total

    def share(self) -> None:
        """After optimizer.step() (which stepped this rank's parameters, in shared memory): wait until every
        owner has written its weights."""
        self.dist.barrier()

    def release(self) -> None:
        """Give every parameter a private copy of its weights and unmap the shared memory (after the last step;
        also run at exit). Why: left to the interpreter's exit, the mapping could go before the parameters on
        it, and a rank died after a finished run (SIGABRT "terminate called without an active exception", or
        SIGBUS: 3 of 20 two-process runs of tests/test_loader.py's job, 0 of 20 with this)."""
        if self._map is None:
            return
        with torch.no_grad():
            for p in self.params:
                p.data = p.data.clone()
        self.values = self.grads = self.weights = self.norms = None
        try:
            self._map.close()
        except BufferError:  # a view of it is still held somewhere: the mapping then ends with the process
            pass
        self._map = None

    def gather_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Rank 0's optimizer gets every parameter's state from its owner (before a checkpoint; all ranks call)."""
        mine = {i: optimizer.state[self.params[i]] for i in self.mine if self.params[i] in optimizer.state}
        parts: list | None = [None] * self.dist.world if self.dist.main else None
        torch.distributed.gather_object(mine, parts, dst=0)
        for part in parts or []:
            for i, state in part.items():
                optimizer.state[self.params[i]] = state


def _shared_buffer(dist, size: int) -> mmap.mmap | None:
    """A zeroed shared mapping of `size` bytes on every rank, or None on every rank when there is no room.

    Rank 0 creates a file in /dev/shm (else the temp folder) and reserves its pages (a tmpfs that runs out
    would otherwise kill a rank with SIGBUS on first write: containers often give /dev/shm 64 MB), every
    rank maps it, then rank 0 removes the name (the mapping lives until the processes end)."""
    path = None
    if dist.main:
        folder = "/dev/shm" if Path("/dev/shm").is_dir() else None
        fd, path = tempfile.mkstemp(prefix="uae-step-", dir=folder)
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError:
            os.unlink(path)
            path = None
        finally:
            os.close(fd)
    path = dist.gather(path)[0]
    if path is None:
        return None
    fd = os.open(path, os.O_RDWR)
    try:
        buf = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    dist.barrier()
    if dist.main:
        os.unlink(path)
    return buf
