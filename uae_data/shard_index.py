"""Indexed reading of corpus shards, in exactly the order `shards.corpus_dataset` yields them.

Why: a multi-process run needs every sample's place in the seeded stream (and its cheap metadata) on every
rank, but each rank only needs the pixels of the samples it trains on. Walking the webdataset pipeline
reads and decodes every member of every sample (~0.2 ms a sample in Python); here each shard's tar headers
are read once per process into an index, the stream is webdataset's own shard and sample shuffle applied to
those index entries (their random draws do not depend on the items, so the order is the same), and a
member's bytes are read with one pread when asked for. Fields are decoded by webdataset's own decoder, so a
sample here equals the one `corpus_dataset` yields (tested).
"""
from __future__ import annotations

import collections
import os
import random
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import webdataset as wds
from PIL import Image

from uae_data.shards import list_shards

IMAGE_FIELDS = ("png", "jpg", "jpeg", "webp")  # `shards._to_sample`'s order of preference
_DECODER = wds.autodecode.Decoder([wds.autodecode.ImageHandler("pil")])  # = corpus_dataset's .decode("pil")
_SKIP_META = re.compile(r"__[^/]*__($|/)")  # webdataset's tar_file_iterator skips these members


@dataclass(frozen=True, slots=True)  # slots: a 700,000-sample corpus holds one per sample in every rank
class SampleRef:
    """Where one sample's members lie: shard path, key and {field: (offset, size)}."""

    path: str
    key: str
    fields: tuple[tuple[str, int, int], ...]

    def read(self, field: str) -> bytes:
        for name, offset, size in self.fields:
            if name == field:
                return os.pread(_fd(self.path), size, offset)
        raise KeyError(field)

    @property
    def image_field(self) -> str | None:
        names = {f for f, _, _ in self.fields}
        return next((f for f in IMAGE_FIELDS if f in names), None)


_INDEX: dict[tuple[str, int, int], list[SampleRef]] = {}
_FDS: collections.OrderedDict[str, int] = collections.OrderedDict()
_MAX_FDS = 64  # a corpus of thousands of shards must not hold a descriptor each (ulimit -n is often 1,024)


def _fd(path: str) -> int:
    """A read-only descriptor for the shard, from a small per-process cache of the most recently read ones
    (pread does not move a shared offset, so forked loader workers may use an inherited one)."""
    fd = _FDS.get(path)
    if fd is None:
        fd = _FDS[path] = os.open(path, os.O_RDONLY)
        while len(_FDS) > _MAX_FDS:
            os.close(_FDS.popitem(last=False)[1])
    else:
        _FDS.move_to_end(path)
    return fd


def _forget(path: str) -> None:
    """Drop the index and descriptor of a shard whose file changed (a rebuilt corpus at the same path)."""
    for key in [k for k in _INDEX if k[0] == path]:
        del _INDEX[key]
    fd = _FDS.pop(path, None)
    if fd is not None:
        os.close(fd)


def shard_refs(path: str) -> list[SampleRef]:
    """The samples of one shard, grouped as webdataset's group_by_keys groups its members (cached)."""
    st = os.stat(path)
    cache_key = (path, st.st_size, st.st_mtime_ns)
    if cache_key in _INDEX:
        return _INDEX[cache_key]
    _forget(path)
    members = []
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            name = info.name
            if not info.isreg() or name is None:
                continue
            if "/" not in name and name.startswith("__") and name.endswith("__"):
                continue
            if _SKIP_META.match(name):
                continue
            members.append({"fname": name, "data": (info.offset_data, info.size), "__url__": path})
    members.append({})  # end of shard: a sample never spans two shards
    refs = []
    for group in wds.tariterators.group_by_keys(iter(members)):
        fields = tuple((k, *v) for k, v in group.items() if not k.startswith("__"))
        refs.append(SampleRef(path=path, key=group["__key__"], fields=fields))
    _INDEX[cache_key] = refs
    return refs


def ordered_refs(corpus_dir: Path, shuffle: int = 0, seed: int = 0) -> Iterator[SampleRef]:
    """The samples of `corpus_dataset(corpus_dir, shuffle, seed)` in its order, as references.

    That pipeline shuffles the shard list (buffer = number of shards, seeded) and then samples (buffer
    `shuffle`, random.Random(seed)); webdataset's _shuffle draws the same numbers whatever the items are.
    """
    urls = [str(p) for p in list_shards(corpus_dir)]
    if shuffle:
        urls = list(wds.filters._shuffle(iter(urls), len(urls), seed=seed))
    refs: Iterator[SampleRef] = (r for u in urls for r in shard_refs(u))
    if shuffle:
        refs = wds.filters._shuffle(refs, shuffle, rng=random.Random(seed))
    yield from refs


def read_sample(ref: SampleRef) -> dict:
    """The sample without its pixels: {key, caption, meta, ref} (the image stays in the shard)."""
    raw = {"__key__": ref.key, **{f: ref.read(f) for f, _, _ in ref.fields if f not in IMAGE_FIELDS}}
    dec = _DECODER(raw)
    return {"key": ref.key, "caption": dec.get("txt", ""), "meta": dec.get("json", {}), "ref": ref}


def read_image(ref: SampleRef) -> Image.Image | None:
    """The sample's image as corpus_dataset decodes it (PIL RGB), or None when it has none."""
    field = ref.image_field
    if field is None:
        return None
    return _DECODER({field: ref.read(field)})[field].convert("RGB")
