"""`folder` source: images under a directory, each with an optional same-name .txt caption.

Rows are every entry (recursively) whose name ends in an image extension, in sorted path order;
an entry that cannot be read (a directory named x.jpg, a broken link, no permission, not an
image) becomes a failed row with the OS or decoder message. The list is snapshot in staging on
the first run, so a resumed build reads the same rows even if the folder changed meanwhile.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pandas as pd

from uae_data.core.errors import ConfigError
from uae_data.core.io import atomic_write
from uae_data.sources.base import SOURCES, SourceConfig, SourceContext, SourceItem, staging_dir
from uae_data.sources.images import load_bytes, make_resizer

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


@SOURCES.register("folder")
class FolderSource:
    name = "folder"

    def __init__(self, cfg: SourceConfig, ctx: SourceContext) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.root = Path(cfg.input)
        self._files: list[str] | None = None
        self._resizer = None

    @property
    def _list_path(self) -> Path:
        return staging_dir(self.ctx) / "folder_files.parquet"

    def prepare(self) -> None:
        if self._list_path.exists():
            return
        if not self.root.is_dir():
            raise ConfigError(f"{self.root}: source.input must be a folder of images (folder source)")
        names = sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        if not names:
            raise ConfigError(f"{self.root}: no images ({', '.join(IMAGE_EXTS)}) found under the folder")
        listing = pd.DataFrame({"path": names})
        atomic_write(self._list_path, lambda f: listing.to_parquet(f, index=False), binary=True)

    def files(self) -> list[str]:
        if self._files is None:
            self._files = pd.read_parquet(self._list_path)["path"].tolist()
        return self._files

    def __len__(self) -> int:
        return len(self.files())

    def items(self, start: int, stop: int) -> Iterator[SourceItem]:
        self._resizer = self._resizer or make_resizer(self.ctx, self.cfg.options)
        for i in range(start, min(stop, len(self))):
            rel = self.files()[i]
            path = self.root / rel
            item = SourceItem(index=i, image=None, url=rel, caption=_read_text(path.with_suffix(".txt")))
            try:
                raw = path.read_bytes()
            except OSError as e:
                item.reason, raw = f"unreadable: {e.strerror or e}", None
            yield load_bytes(item, raw, self._resizer, self.ctx.image_format)
