"""Training data that scales across processes: the indexed stream is `corpus_dataset`'s, sample for sample;
DataLoader workers give the batches the training process gives; a rank decodes only the images it asks for;
the shared-memory optimizer step equals the all-reduce one bit for bit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from uae_data.shard_index import ordered_refs, read_image, read_sample
from uae_data.shards import corpus_dataset
from uae_train.training import data
from uae_train.training.loader import global_batches, resolve_workers

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def corpus(scene_corpus):
    return scene_corpus(40, 16)  # two shards of 20


@pytest.mark.parametrize("shuffle,seed", [(0, 0), (7, 1), (500, 3)])
def test_the_indexed_stream_is_corpus_dataset_sample_for_sample(corpus, shuffle, seed):
    want = list(corpus_dataset(corpus, shuffle=shuffle, seed=seed))
    got = [read_sample(r) for r in ordered_refs(corpus, shuffle, seed)]
    assert [s["key"] for s in got] == [s["key"] for s in want]
    assert [(s["caption"], s["meta"]) for s in got] == [(s["caption"], s["meta"]) for s in want]
    assert all(np.array_equal(np.asarray(read_image(g["ref"])), np.asarray(w["image"])) for g, w in zip(got, want))



def test_the_index_holds_few_descriptors_and_rereads_a_rebuilt_shard(corpus, tmp_path, monkeypatch, scene_corpus):
    import os
    import shutil

    from uae_data import shard_index

    monkeypatch.setattr(shard_index, "_MAX_FDS", 1)  # two shards, room for one descriptor
    copy = tmp_path / "c"
    shutil.copytree(corpus, copy)
    for s in ordered_refs(copy):
        read_sample(s)
    assert len(shard_index._FDS) <= 1
    # a corpus rebuilt at the same path (the same scenes at another size, same shard names): the new files
    assert {read_image(r).size for r in ordered_refs(copy)} == {(16, 16)}
    other = scene_corpus(40, 24)  # the same scenes at 24 px: same shard names, other bytes
    shards = sorted(other.rglob("*.tar"))
    assert shards
    for shard in shards:  # written aside and renamed over the old file, as a build does: a new inode
        target = copy / shard.relative_to(other)
        shutil.copy(shard, target.with_suffix(".new"))
        os.replace(target.with_suffix(".new"), target)
    again = [np.asarray(read_image(r)) for r in ordered_refs(copy)]
    want = [np.asarray(s["image"]) for s in corpus_dataset(copy, shuffle=0)]
    assert again[0].shape == (24, 24, 3) and all(np.array_equal(a, w) for a, w in zip(again, want))

def _batches(corpus, workers: int, skip: int = 0, n: int = 7, need=range(2, 4)):
    with global_batches(corpus, 16, 0, skip, None, 6, 16, need, workers) as it:
        return [next(it) for _ in range(n)]


def _pixels(images: list) -> list:
    return [None if im is None else im.tobytes() for im in images]


def _same(a, b) -> bool:
    return len(a) == len(b) and all([s["key"] for s in x] == [s["key"] for s in y] and _pixels(xi) == _pixels(yi)
                                    for (x, xi), (y, yi) in zip(a, b))


def test_loader_workers_give_the_batches_of_the_training_process_and_resume_alike(corpus):
    inline = _batches(corpus, 0)
    assert _same(_batches(corpus, 2), inline)  # 7 batches of 6 over 40 samples: across an epoch boundary
    assert _same(_batches(corpus, 1, skip=12, n=5), inline[2:])  # a resumed run skips what it had seen
    # what was decoded is what the rank asked for, resized, as the old whole-sample stream decoded it
    stream = data.sample_stream(corpus, 16, 0)
    first = [next(stream) for _ in range(6)]
    assert [im is not None for im in inline[0][1]] == [False, False, True, True, False, False]
    old = [s["image"].resize((16, 16)) for s in corpus_dataset(corpus, shuffle=16, seed=0)][:6]
    assert [s["key"] for s in first] == [s["key"] for s in inline[0][0]]
    assert inline[0][1][2].tobytes() == old[2].tobytes() and inline[0][1][3].tobytes() == old[3].tobytes()


def test_a_rank_decodes_only_the_images_it_asks_for(corpus, monkeypatch):
    decoded = []
    real = data.read_image
    monkeypatch.setattr(data, "read_image", lambda ref: decoded.append(ref.key) or real(ref))
    batches = _batches(corpus, 0, n=4, need={1, 4})
    assert decoded == [b[i]["key"] for b, _ in batches for i in (1, 4)]


def test_loader_workers_default_to_none_on_cpu_and_some_on_accelerators(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert resolve_workers(None, torch.device("cpu")) == 0
    assert resolve_workers(3, torch.device("cpu")) == 3
    assert 1 <= resolve_workers(None, torch.device("cuda")) <= 4


# ---------------------------------------------------------------- the shared-memory optimizer step

SHAPES = [(6, 5), (5,), (40, 3), (1,), (17,), (9, 9)]


def _train(rank: int, world: int, out: str, shared: bool) -> None:
    """Three AdamW steps with clipping on per-rank gradients, the shared step or the all-reduce path."""
    from uae_data.distributed import Dist
    from uae_train.training.shared_step import SharedStep

    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{out}.pg", rank=rank, world_size=world)
    dist = Dist(rank=rank, world=world)
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    opt = torch.optim.AdamW(params, lr=0.1, weight_decay=0.01)
    step = SharedStep.create(dist, params) if shared else None
    assert (step is not None) == shared
    logged = []
    for k in range(3):
        g = torch.Generator().manual_seed(100 * k + rank)
        for i, p in enumerate(params):  # rank 1 leaves one gradient out: it counts as zero
            p.grad = None if (rank == 1 and i == 3) else torch.randn(p.shape, generator=g) * (1 + 10 * k)
        if step is not None:
            logged.append(step.reduce(float(rank + k), norms=True))
            step.clip(1.0)
            opt.step()
            step.share()
        else:
            dist.sync_grads(params)
            logged.append(dist.sum(float(rank + k)))
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
    if step is not None:
        step.gather_state(opt)
        step.release()
    if rank == 0:
        torch.save({"params": [p.detach().clone() for p in params], "logged": logged,
                    "state": [{k: v.clone() for k, v in opt.state[p].items()} for p in params]}, out)
    # both ranks done before either tears gloo down (a rank that destroyed its group while the other was
    # still in gather_state aborted now and then: "terminate called without an active exception")
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


def test_the_shared_memory_step_equals_the_all_reduce_step_bit_for_bit(tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    for shared in (False, True):
        mp.spawn(_train, args=(2, str(tmp_path / f"{shared}.pt"), shared), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"{s}.pt") for s in (False, True))
    assert a["logged"] == b["logged"] == [[1.0], [3.0], [5.0]]
    assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"]))
    assert all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x) for x, y in zip(a["state"], b["state"]))
