"""`shards` source: existing WebDataset shards (ours, img2dataset's, anyone's) as input rows.

Rows are the samples of the input's *.tar files (sorted), in tar order. prepare() counts samples
per tar from the tar headers alone (webdataset's own key rule, `base_plus_ext`) and snapshots the
counts in staging, so a worker seeks to its range without decoding earlier shards. A sample
without an image field, or whose image does not decode, is a failed row.
"""
from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Iterator

import pandas as pd

from uae_data.core.errors import ConfigError
from uae_data.core.io import atomic_write
from uae_data.sources.base import SOURCES, SourceConfig, SourceContext, SourceItem, staging_dir
from uae_data.sources.images import load_bytes, make_resizer

IMAGE_FIELDS = ("jpg", "jpeg", "png", "webp")


def list_tars(path: Path) -> list[Path]:
    if path.is_file() and path.suffix == ".tar":
        return [path]
    if path.is_dir():
        tars = sorted(path.glob("*.tar")) or sorted((path / "shards").glob("*.tar"))
        if tars:
            return tars
    raise ConfigError(f"{path}: no WebDataset shards (*.tar) found (source.input: a .tar or a folder of them)")


def count_samples(tar: Path) -> int:
    """Samples in a tar, from headers only, grouped the way webdataset groups them (adjacent keys)."""
    from webdataset.tariterators import base_plus_ext

    n, last = 0, None
    try:
        with tarfile.open(tar) as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, _ = base_plus_ext(m.name)
                if key is not None and key != last:
                    n, last = n + 1, key
    except (tarfile.TarError, OSError) as e:
        raise ConfigError(f"{tar}: not a readable tar: {e}") from None
    return n


@SOURCES.register("shards")
class ShardSource:
    name = "shards"

    def __init__(self, cfg: SourceConfig, ctx: SourceContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self._index: pd.DataFrame | None = None
        self._resizer = None

    @property
    def _index_path(self) -> Path:
        return staging_dir(self.ctx) / "shards_index.parquet"

    def prepare(self) -> None:
        if self._index_path.exists():
            return
        tars = list_tars(Path(self.cfg.input))
        df = pd.DataFrame({"tar": [str(t.resolve()) for t in tars], "count": [count_samples(t) for t in tars]})
        atomic_write(self._index_path, lambda f: df.to_parquet(f, index=False), binary=True)

    @property
    def index(self) -> pd.DataFrame:
        if self._index is None:
            self._index = pd.read_parquet(self._index_path)
            self._index["first"] = self._index["count"].cumsum() - self._index["count"]
        return self._index

    def __len__(self) -> int:
        n = int(self.index["count"].sum())
        return n if self.ctx.limit is None else min(n, self.ctx.limit)

    def _item(self, i: int, raw: dict) -> SourceItem:
        field = next((f for f in IMAGE_FIELDS if raw.get(f)), None)
        caption = raw.get("txt")
        meta = {}
        if raw.get("json"):
            try:
                meta = json.loads(raw["json"])
            except ValueError:
                meta = {}
        url = meta.get("url") if isinstance(meta, dict) else None
        item = SourceItem(index=i, image=None, url=url or f"{Path(raw['__url__']).name}:{raw['__key__']}",
                          caption=caption.decode("utf-8", "replace").strip() if caption else None,
                          reason="" if field else "no image field (" + ", ".join(IMAGE_FIELDS) + ") in sample")
        return load_bytes(item, raw[field] if field else None, self._resizer, self.ctx.image_format)

    def items(self, start: int, stop: int) -> Iterator[SourceItem]:
        import webdataset as wds

        self._resizer = self._resizer or make_resizer(self.ctx, self.cfg.options)
        stop = min(stop, len(self))
        for row in self.index.itertuples(index=False):
            if row.first >= stop or row.first + row.count <= start:
                continue
            i = row.first
            for raw in wds.WebDataset(row.tar, shardshuffle=False, empty_check=False):
                if start <= i < stop:
                    yield self._item(i, raw)
                i += 1
                if i >= stop:
                    break
