"""`parquet` source: a table whose `image_col` holds image bytes, a path, or an HF {bytes, path} struct.

Row ranges are read by row group (pyarrow metadata), so a worker building shard k reads only the
row groups that overlap it, never the whole table. Relative paths resolve against the table's
folder. Any other file format or a missing column is a one-line ConfigError naming both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pyarrow.parquet as pq

from uae_data.core.errors import ConfigError
from uae_data.sources.base import SOURCES, SourceConfig, SourceContext, SourceItem
from uae_data.sources.images import load_bytes, make_resizer


def open_table(path: Path, image_col: str) -> pq.ParquetFile:
    if not path.is_file():
        raise ConfigError(f"{path}: parquet table not found (source.input)")
    if path.stat().st_size == 0:
        raise ConfigError(f"{path}: input file is empty (no header, no rows)")
    try:
        table = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
        raise ConfigError(f"{path}: not a readable parquet file: {str(e).splitlines()[0]}") from None
    names = table.schema_arrow.names
    if image_col not in names:
        raise ConfigError(f"{path}: no image column '{image_col}' (columns: {', '.join(names)}); set source.image_col")
    if table.metadata.num_rows == 0:
        raise ConfigError(f"{path}: input file has no rows")
    return table


@SOURCES.register("parquet")
class ParquetSource:
    name = "parquet"

    def __init__(self, cfg: SourceConfig, ctx: SourceContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.path = Path(cfg.input)
        self._table: pq.ParquetFile | None = None
        self._resizer = None

    @property
    def table(self) -> pq.ParquetFile:
        if self._table is None:
            self._table = open_table(self.path, self.cfg.image_col)
        return self._table

    def prepare(self) -> None:
        self.table  # noqa: B018  (validates the file and columns up front, in the main process)

    def __len__(self) -> int:
        n = self.table.metadata.num_rows
        return n if self.ctx.limit is None else min(n, self.ctx.limit)

    def _raw(self, value: Any) -> tuple[bytes | None, str, str]:
        """(bytes or None, reason, where) for one cell: bytes, a path, or an HF {bytes, path} struct."""
        if isinstance(value, dict):
            if value.get("bytes"):
                return value["bytes"], "", value.get("path") or ""
            value = value.get("path")
        if isinstance(value, (bytes, bytearray)):
            return bytes(value), "", ""
        if isinstance(value, str) and value:
            path = Path(value) if Path(value).is_absolute() else self.path.parent / value
            try:
                return path.read_bytes(), "", value
            except OSError as e:
                return None, f"unreadable: {e.strerror or e}", value
        return None, "no image in row", ""

    def items(self, start: int, stop: int) -> Iterator[SourceItem]:
        self._resizer = self._resizer or make_resizer(self.ctx, self.cfg.options)
        stop = min(stop, len(self))
        columns = [self.cfg.image_col] + ([self.cfg.caption_col] if self.cfg.caption_col in self.table.schema_arrow.names else [])
        first = 0
        for g in range(self.table.num_row_groups):
            n = self.table.metadata.row_group(g).num_rows
            if first + n > start and first < stop:
                rows = self.table.read_row_group(g, columns=columns).to_pylist()
                for j, row in enumerate(rows):
                    i = first + j
                    if start <= i < stop:
                        raw, reason, where = self._raw(row[self.cfg.image_col])
                        caption = row.get(self.cfg.caption_col) if self.cfg.caption_col else None
                        item = SourceItem(index=i, image=None, url=where or None, reason=reason,
                                          caption=caption if isinstance(caption, str) else None)
                        yield load_bytes(item, raw, self._resizer, self.ctx.image_format)
            first += n
            if first >= stop:
                break
