"""Global batches for training, with this rank's images decoded in DataLoader workers.

Every rank walks the same seeded stream of sample metadata (`data.sample_stream`: cheap, no pixels) and cuts
it into global batches, so what a step trains on does not depend on the number of processes; only the
images at this rank's positions (`need`) are decoded. With `workers` > 0, a torch DataLoader's worker w
prepares global batches w, w + workers, ... (each worker walks the cheap stream itself), and the
DataLoader hands them back in batch order, so the batches equal the in-process ones (tested).
"""
from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from uae_train.training.data import batch_images, sample_stream

Batch = tuple[list[dict], list]  # (every sample of the global batch, images at `need`, None elsewhere)


class GlobalBatches(IterableDataset):
    """The endless sequence of global batches of `batch_size` samples from the seeded stream."""

    def __init__(self, corpus: Path, shuffle: int, seed: int, skip: int, keep: Callable[[dict], bool] | None,
                 batch_size: int, image_size: int, need: Iterable[int]) -> None:
        self.stream_args = (Path(corpus), shuffle, seed, skip, keep)
        self.batch_size, self.image_size, self.need = batch_size, image_size, sorted(set(need))

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        stream = sample_stream(*self.stream_args)
        for b in itertools.count():
            batch = [next(stream) for _ in range(self.batch_size)]
            if b % workers == worker:  # the others' batches: metadata only, skipped
                yield batch, batch_images(batch, self.image_size, self.need)


def resolve_workers(setting: int | None, device: torch.device) -> int:
    """loader_workers: as set, or (None) 0 on CPU, where the training processes already use the cores,
    and on accelerators up to 4 per process from the cores this machine's processes share."""
    if setting is not None:
        return setting
    if device.type == "cpu":
        return 0
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(4, (os.cpu_count() or 1) // max(1, local) - 1))


def _as_is(batch: Batch) -> Batch:
    return batch


@contextlib.contextmanager
def global_batches(corpus: Path, shuffle: int, seed: int, skip: int, keep: Callable[[dict], bool] | None,
                   batch_size: int, image_size: int, need: Iterable[int],
                   workers: int = 0) -> Iterator[Iterator[Batch]]:
    """An iterator of global batches (see module doc); its workers stop when the block ends."""
    dataset = GlobalBatches(corpus, shuffle, seed, skip, keep, batch_size, image_size, need)
    if workers <= 0:
        yield iter(dataset)
        return
    next(sample_stream(*dataset.stream_args))  # a corpus error surfaces here, in one line, not from a worker
    # fork: the workers inherit the shard index and the stage's filter (a closure that does not pickle)
    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    it = iter(DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_as_is, prefetch_factor=2,
                         multiprocessing_context=context))
    try:
        yield it
    finally:
        it._shutdown_workers()
