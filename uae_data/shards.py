"""WebDataset shards: atomic writing, sizes.json, and readers used by training and eval.

Writing goes through `webdataset.TarWriter` with a fixed mtime so the same samples give the same
bytes (and sha256) on every run; a shard is written under a temporary name and renamed when
complete, so a reader never sees half a shard.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import webdataset as wds
from PIL import Image

SHARD_PREFIX = "corpus-"
SHARD_GLOB = f"{SHARD_PREFIX}*.tar"
FIXED_MTIME = 0  # reproducible tars; an int (a float forces a PAX header per file, 2x slower)


from uae_data.errors import CorpusError  # noqa: E402  (re-exported)


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:06d}.tar"


def sample_key(index: int) -> str:
    """9-digit key, as img2dataset; keys never contain dots (webdataset splits on the first one)."""
    return f"{index:09d}"


def encode_image(image: Image.Image, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        image.save(buf, format="PNG", compress_level=1)  # fast; PNG is lossless whatever the level
    elif fmt in ("jpg", "jpeg"):
        image.convert("RGB").save(buf, format="JPEG", quality=95)
    else:
        raise ValueError(f"unknown image format {fmt!r} (png or jpg)")
    return buf.getvalue()


@dataclass
class Sample:
    """One corpus sample as stored: `{key}.{png|jpg}`, `{key}.txt`, `{key}.json`."""

    key: str
    image: bytes
    image_ext: str
    caption: str
    meta: dict[str, Any]

    def as_wds(self) -> dict[str, Any]:
        return {
            "__key__": self.key,
            self.image_ext: self.image,
            "txt": self.caption.encode("utf-8"),
            "json": json.dumps(self.meta, sort_keys=True, separators=(",", ":")).encode("utf-8"),
        }


def write_shard(path: Path, samples: Iterable[Sample]) -> tuple[int, str]:
    """Write samples to `path` atomically; returns (count, sha256 of the file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with open(tmp, "wb") as f:
            writer = wds.TarWriter(f, mtime=FIXED_MTIME, encoder=False, format=tarfile.USTAR_FORMAT)
            for s in samples:
                writer.write(s.as_wds())
                n += 1
            writer.close()
        digest = file_sha256(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n, digest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json_atomic(path: Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def list_shards(corpus_dir: Path) -> list[Path]:
    """Complete shards of a corpus folder (`shards/*.tar`), in order. Raises CorpusError if none."""
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusError(f"{corpus_dir}: corpus folder not found")
    shard_dir = corpus_dir / "shards" if (corpus_dir / "shards").is_dir() else corpus_dir
    shards = sorted(shard_dir.glob("*.tar"))
    if not shards:
        raise CorpusError(f"{corpus_dir}: no shards (*.tar) found; build one with `uae build-corpus`")
    return shards


def read_sizes(corpus_dir: Path) -> dict[str, int]:
    path = Path(corpus_dir) / "sizes.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _to_sample(raw: dict) -> dict:
    image = raw.get("png", raw.get("jpg", raw.get("jpeg", raw.get("webp"))))
    return {
        "key": raw["__key__"],
        "image": image.convert("RGB") if image is not None else None,
        "caption": raw.get("txt", ""),
        "meta": raw.get("json", {}),
    }


def _every_node(urls):
    return urls


def corpus_dataset(
    corpus_dir: Path,
    shuffle: int = 0,
    resampled: bool = False,
    seed: int = 0,
    epoch_size: int | None = None,
) -> wds.WebDataset:
    """A webdataset pipeline over a corpus yielding dicts {key, image (PIL RGB), caption, meta}.

    shuffle > 0 shuffles shards and keeps a sample buffer of that size; resampled=True draws
    shards with replacement forever (pair with epoch_size), as webdataset recommends for training.
    """
    urls = [str(p) for p in list_shards(corpus_dir)]
    ds = wds.WebDataset(
        urls,
        resampled=resampled,
        shardshuffle=len(urls) if (shuffle and not resampled) else False,
        seed=seed,
        empty_check=False,
        # every process reads every shard: multi-process training splits each global batch by rank itself
        # (uae_data.distributed), so that a run's samples do not depend on the number of processes
        nodesplitter=_every_node,
    )
    if shuffle:
        ds = ds.shuffle(shuffle, rng=__import__("random").Random(seed))
    ds = ds.decode("pil").map(_to_sample)
    if epoch_size is not None:
        ds = ds.with_epoch(epoch_size)
    return ds


def iter_samples(corpus_dir: Path) -> Iterator[dict]:
    """All samples of a corpus in shard order, decoded (for eval and tests)."""
    yield from corpus_dataset(corpus_dir)
