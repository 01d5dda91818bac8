"""WebDataset shards: atomic writing, sizes.json, and readers used by training and eval.

Writing produces exactly the bytes of `webdataset.TarWriter` with a fixed mtime (`ShardTarWriter`, a
faster equivalent), so the same samples give the same bytes (and sha256) on every run; a shard is
written under a temporary name and renamed when complete, so a reader never sees half a shard.
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import webdataset as wds
from PIL import Image

SHARD_PREFIX = "corpus-"
SHARD_GLOB = f"{SHARD_PREFIX}*.tar"
FIXED_MTIME = 0  # reproducible tars; an int (a float forces a PAX header per file, 2x slower)


from uae_data.core.errors import CorpusError  # noqa: E402  (re-exported)
from uae_data.core.io import atomic_write  # noqa: E402


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:06d}.tar"


def sample_key(index: int) -> str:
    """9-digit key, as img2dataset; keys never contain dots (webdataset splits on the first one)."""
    return f"{index:09d}"


def encode_image(image: Image.Image, fmt: str = "png") -> bytes:
    buf = io.BytesIO()
    if fmt == "png":
        # fast; PNG is lossless whatever the level or strategy. Z_RLE suits flat renders: at 64x64 scenes it
        # is a little faster than the default strategy and ~15% smaller (430 vs 507 bytes on average).
        image.save(buf, format="PNG", compress_level=1, compress_type=zlib.Z_RLE)
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
            "json": _META_JSON.encode(self.meta).encode("utf-8"),
        }


_META_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))  # = json.dumps(meta, sort_keys=..., separators=...)


class ShardTarWriter:
    """Writes exactly the bytes `webdataset.TarWriter(fileobj, mtime=FIXED_MTIME, encoder=False)` writes.

    Why: tarfile builds every 512-byte header in Python (~15 us each, 3 per sample at 64x64, a sixth of a
    scene sample's cost). Our members differ only in name and size, so a header is a fixed template with
    those two fields and the checksum filled in (the ustar layout, POSIX.1-1988). Names that are not short
    ASCII, and sizes beyond the ustar field, go through tarfile itself as webdataset's do (tarfile's default
    PAX format, which webdataset uses whatever `format` it is given). Members as webdataset writes them: sorted by field, `key.field`, mode 0o444, owner bigdata.
    """

    def __init__(self, fileobj) -> None:
        self.fileobj, self.offset = fileobj, fileobj.tell()  # tarfile counts record padding from here too

    def write(self, obj: dict[str, Any]) -> None:
        key = obj["__key__"]
        for field in sorted(obj):
            if field[0] == "_":
                continue
            data = obj[field]
            if isinstance(data, str):
                data = data.encode("utf-8")
            self._add(f"{key}.{field}", bytes(data))

    def _add(self, name: str, data: bytes) -> None:
        size = len(data)
        header = _ustar_header(name, size) if _FAST_HEADERS else None
        if header is None:
            header = _tarinfo(name, size).tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
        pad = -size % tarfile.BLOCKSIZE
        self.fileobj.write(header + data + b"\0" * pad if pad else header + data)
        self.offset += len(header) + size + pad

    def close(self) -> None:
        """End of archive: two zero blocks, then zeros up to a whole record (as tarfile.TarFile.close)."""
        end = tarfile.BLOCKSIZE * 2
        end += -(self.offset + end) % tarfile.RECORDSIZE
        self.fileobj.write(b"\0" * end)
        self.offset += end


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = size, FIXED_MTIME, 0o444, "bigdata", "bigdata"
    return info


def _header_template() -> bytearray:
    """tarfile's ustar header for an empty name and size 0, with the checksum field blank (8 spaces)."""
    header = bytearray(_tarinfo("", 0).tobuf(tarfile.USTAR_FORMAT, tarfile.ENCODING, "surrogateescape"))
    header[148:156] = b" " * 8
    return header


_HEADER = _header_template()
_MAX_SIZE = 8**11  # the ustar size field holds 11 octal digits


def _ustar_header(name: str, size: int) -> bytes | None:
    """The 512-byte header tarfile writes for member `name` of `size` bytes, or None when tarfile must write it."""
    if not (name.isascii() and len(name) <= 100 and size < _MAX_SIZE):
        return None
    header = _HEADER.copy()
    header[:len(name)] = name.encode("ascii")
    header[124:135] = b"%011o" % size
    header[148:155] = b"%06o\0" % sum(header)  # checksum: byte sum with the field as spaces, as tarfile
    return bytes(header)


# The template is checked against tarfile once at import; on any difference every header comes from tarfile.
_FAST_HEADERS = all(
    _ustar_header(n, k) == _tarinfo(n, k).tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
    for n, k in (("000000000.png", 0), ("000000007.json", 4321), ("a" * 100, _MAX_SIZE - 1)))


def write_shard(path: Path, samples: Iterable[Sample]) -> tuple[int, str]:
    """Write samples to `path` atomically; returns (count, sha256 of the file)."""
    n = 0

    def fill(f) -> None:
        nonlocal n
        writer = ShardTarWriter(f)  # = wds.TarWriter(f, mtime=FIXED_MTIME, encoder=False), byte for byte
        for s in samples:
            writer.write(s.as_wds())
            n += 1
        writer.close()

    path = atomic_write(path, fill, binary=True)
    return n, file_sha256(path)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
