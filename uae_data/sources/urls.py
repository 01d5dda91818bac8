"""`urls` source: a URL list (csv/tsv/parquet/jsonl/json/txt) downloaded BY img2dataset.

prepare() snapshots the first `limit` rows' url (+ caption) columns into OUT/.staging/urls.parquet
and calls img2dataset's Python `download()` on it, writing webdataset shards into
OUT/.staging/img2dataset/ (its own folder: other top-level *.json files break its re-runs) with
one img2dataset shard per corpus shard. img2dataset is itself resumable (incremental mode: a shard
with a `_stats.json` is done), so an interrupted download continues where it stopped. Its
resize / min-size / aspect / timeout / distributor options pass through `source.options`; its
per-row status and error message become the row's `source_status` and `reason`.
"""
from __future__ import annotations

import math
import os
import signal
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from uae_data.core.errors import ConfigError, CorpusError
from uae_data.core.io import atomic_write
from uae_data.sources.options import check_download_options
from uae_data.sources.base import SOURCES, SourceConfig, SourceContext, SourceItem, staging_dir

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations (img2dataset) phones home on import

FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "json", ".txt": "txt"}


def input_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    ext = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if ext not in FORMATS:
        raise ConfigError(f"{path}: unknown url list format '{ext}' (use one of {', '.join(FORMATS)}, optionally .gz)")
    return FORMATS[ext]


def read_url_table(path: Path, url_col: str, caption_col: str | None, limit: int | None) -> pd.DataFrame:
    """The url (+ caption) columns, renamed to url/caption; one-line errors for missing or empty files."""
    if not path.is_file():
        raise ConfigError(f"{path}: url list not found (source.input)")
    if path.stat().st_size == 0:
        raise ConfigError(f"{path}: input file is empty (no header, no rows)")
    fmt = input_format(path)
    try:
        if fmt == "parquet":
            df = pd.read_parquet(path)
        elif fmt in ("csv", "tsv"):
            df = pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", dtype=str, keep_default_na=False, nrows=limit)
        elif fmt == "txt":
            df = pd.read_csv(path, names=["url"], dtype=str, keep_default_na=False, nrows=limit)
        else:
            df = pd.read_json(path, lines=fmt == "jsonl", dtype=False)
    except (ValueError, pd.errors.ParserError, OSError) as e:
        raise ConfigError(f"{path}: cannot read as {fmt}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if fmt == "txt":
        url_col = "url"
    if url_col not in df.columns:
        raise ConfigError(f"{path}: no url column '{url_col}' (columns: {', '.join(map(str, df.columns)) or 'none'}); "
                          "set source.url_col")
    cols = {url_col: "url"}
    if caption_col and caption_col in df.columns:
        cols[caption_col] = "caption"
    df = df[list(cols)].rename(columns=cols)
    if limit is not None:
        df = df.iloc[:limit]
    if len(df) == 0:
        raise ConfigError(f"{path}: input file has no rows")
    df["url"] = df["url"].astype(str)
    if "caption" in df:
        df["caption"] = df["caption"].fillna("").astype(str)
    return df.reset_index(drop=True)


def download_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validate the pass-through options against img2dataset.download's own signature."""
    check_download_options(options)
    return dict(options)


@SOURCES.register("urls")
class UrlSource:
    name = "urls"

    def __init__(self, cfg: SourceConfig, ctx: SourceContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.digits = math.ceil(math.log10(ctx.shard_size))  # img2dataset's key = shard * 10**digits + row

    @property
    def folder(self) -> Path:
        return staging_dir(self.ctx) / "img2dataset"

    @property
    def table(self) -> Path:
        return staging_dir(self.ctx) / "urls.parquet"

    def prepare(self) -> None:
        if not self.table.exists():
            df = read_url_table(Path(self.cfg.input), self.cfg.url_col, self.cfg.caption_col, self.ctx.limit)
            atomic_write(self.table, lambda f: df.to_parquet(f, index=False), binary=True)
        n_shards = math.ceil(len(self) / self.ctx.shard_size)
        if all((self.folder / f"{k:05d}_stats.json").exists() for k in range(n_shards)):
            return
        self.download()
        missing = [k for k in range(n_shards) if not (self.folder / f"{k:05d}_stats.json").exists()]
        if missing:
            raise CorpusError(f"{self.folder}: img2dataset did not finish shard {missing[0]} ({len(missing)} unfinished); "
                              "run the same command again to resume the download")

    def download(self) -> None:
        from img2dataset import download

        opts = {"processes_count": 1, "timeout": 10, "retries": 0, **download_options(self.cfg.options)}
        if self.ctx.distributor and "distributor" not in self.cfg.options:
            opts["distributor"] = self.ctx.distributor
        if self.ctx.image_format == "png":
            opts.setdefault("encode_quality", 1)  # png: zlib level (0-9), lossless whatever it is
        has_caption = "caption" in pd.read_parquet(self.table, columns=None).columns
        old = signal.getsignal(signal.SIGINT)
        try:
            download(url_list=str(self.table), output_folder=str(self.folder), output_format="webdataset",
                     input_format="parquet", url_col="url", caption_col="caption" if has_caption else None,
                     image_size=self.ctx.image_size, encode_format=self.ctx.image_format,
                     number_sample_per_shard=self.ctx.shard_size, incremental_mode="incremental", **opts)
        except SystemExit:
            # img2dataset's SIGINT handler exits with status 0; an interrupted download is an interruption
            raise KeyboardInterrupt from None
        finally:
            signal.signal(signal.SIGINT, old)

    def __len__(self) -> int:
        import pyarrow.parquet as pq

        if not hasattr(self, "_n"):
            self._n = pq.ParquetFile(self.table).metadata.num_rows
        return self._n

    def _shard_items(self, shard: int) -> dict[int, SourceItem]:
        import webdataset as wds

        rows = pd.read_parquet(self.folder / f"{shard:05d}.parquet")
        images = {}
        tar = self.folder / f"{shard:05d}.tar"
        if tar.exists() and tar.stat().st_size > 0:
            for s in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
                images[s["__key__"]] = s.get(self.ctx.image_format)
        out = {}
        for r in rows.itertuples(index=False):
            key = int(r.key)
            index = (key // 10 ** self.digits) * self.ctx.shard_size + key % 10 ** self.digits
            caption = getattr(r, "caption", None)
            item = SourceItem(index=index, image=None, url=r.url, caption=caption if isinstance(caption, str) else None,
                              source_status=str(r.status))
            if r.status == "success" and images.get(r.key) is not None:
                item.image_bytes, item.image_ext = images[r.key], self.ctx.image_format
                if pd.notna(r.original_width):
                    item.original_size = (int(r.original_width), int(r.original_height))
            else:
                item.fail("failed", str(r.error_message or r.status))
            out[index] = item
        return out

    def items(self, start: int, stop: int) -> Iterator[SourceItem]:
        stop = min(stop, len(self))
        for shard in range(start // self.ctx.shard_size, math.ceil(stop / self.ctx.shard_size)):
            got = self._shard_items(shard)
            for i in range(max(start, shard * self.ctx.shard_size), min(stop, (shard + 1) * self.ctx.shard_size)):
                yield got.get(i) or SourceItem(index=i, image=None, status="failed", reason="missing from img2dataset output")
