"""What the uae_data.sources plug-ins share: the registry, the config and item types (the package's
`build_*` imports the plug-ins; they import this module, never the package, so no import cycle)."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

from PIL import Image

from uae_data.core.config import help_field
from uae_data.core.registry import Registry

SOURCE_NAMES = ("scenes", "urls", "folder", "parquet", "shards")


@dataclass
class SourceConfig:
    name: str = help_field("scenes", help="source backend: " + " | ".join(SOURCE_NAMES))
    input: str | None = help_field(None, help="input path: url list (csv/tsv/parquet/jsonl), image folder, parquet table or shard folder")
    n: int = help_field(10000, help="scenes: number of items to produce (other sources: use limit)")
    min_objects: int = help_field(1, help="scenes: fewest objects per scene")
    max_objects: int = help_field(6, help="scenes: most objects per scene (the 3x3 grid holds 9)")
    prompt_scenes: float = help_field(0.0, help="scenes: share of items drawn from a short GenEval-style prompt (exactly "
                                                "the objects it names; the prompt is the item's short caption); when > 0, only these "
                                                "items carry a short caption")
    url_col: str = help_field("url", help="urls: column holding the image URL")
    caption_col: str | None = help_field("caption", help="urls/parquet/shards: column (or shard field) of the source caption; missing column = no caption")
    image_col: str = help_field("image", help="parquet: column of image bytes, a path (relative to the table) or an HF {bytes, path} struct")
    options: dict[str, Any] = help_field({}, help="passed through: img2dataset download() arguments (urls) or its resize options (folder, parquet, shards)")

    def validate(self) -> None:
        if self.name not in SOURCE_NAMES:
            raise ValueError(f"source.name must be one of {', '.join(SOURCE_NAMES)}; got {self.name!r}")
        if self.n < 1:
            raise ValueError(f"source.n must be >= 1, got {self.n}")
        if not 1 <= self.min_objects <= self.max_objects <= 9:
            raise ValueError("source.min_objects/max_objects must satisfy 1 <= min <= max <= 9")
        if not 0.0 <= self.prompt_scenes <= 1.0:
            raise ValueError(f"source.prompt_scenes must be in [0, 1], got {self.prompt_scenes}")
        if self.name == "scenes" and self.input:  # an option that is not read must not look as if it were
            raise ValueError(f"source.input ({self.input}) is not read by the scenes source, which makes its own items; "
                             "drop --input or choose --source urls | folder | parquet | shards")
        if self.name != "scenes" and not self.input:
            raise ValueError(f"source.input is required for source '{self.name}' (a path; CLI --input)")
        from uae_data.sources.options import check_source_options

        check_source_options(self.name, self.options)


@dataclass
class SourceContext:
    """What a source needs from the corpus config and the build, beyond its own section."""

    image_size: int
    seed: int
    image_format: str = "png"
    shard_size: int = 1000
    staging: Path | None = None  # OUT/.staging: sources keep their input snapshot here
    limit: int | None = None  # read at most this many input rows
    distributor: str | None = None  # img2dataset distributor for downloads (default: multiprocessing)


@dataclass
class SourceItem:
    """One input row. status 'ok' items carry an image; 'failed'/'dropped' carry a reason.

    `image_bytes` (already encoded as `image_ext`) lets a source hand over an image without a
    decode/re-encode round trip; `image` is then decoded lazily by `pil()`. `original_size` is the
    size before the source resized it (the size filters look at it, as img2dataset's do).
    """

    index: int
    image: Image.Image | None
    caption: str | None = None
    url: str | None = None
    status: str = "ok"
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    image_bytes: bytes | None = None
    image_ext: str | None = None
    original_size: tuple[int, int] | None = None
    source_status: str = ""

    def pil(self) -> Image.Image:
        """The image as RGB PIL (decoded once from image_bytes when the source gave bytes)."""
        if self.image is None and self.image_bytes is not None:
            self.image = Image.open(io.BytesIO(self.image_bytes)).convert("RGB")
        return self.image

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) as stored."""
        if self.image is None and self.image_bytes is not None:
            return Image.open(io.BytesIO(self.image_bytes)).size  # header only, no decode
        return self.pil().size

    def fail(self, status: str, reason: str) -> None:
        self.status, self.reason = status, reason
        self.image = self.image_bytes = None


class Source(Protocol):
    name: str

    def prepare(self) -> None: ...

    def __len__(self) -> int: ...

    def items(self, start: int, stop: int) -> Iterator[SourceItem]: ...


SOURCES: Registry = Registry("source")




def staging_dir(ctx: SourceContext) -> Path:
    if ctx.staging is None:
        raise ValueError("this source needs a staging folder (SourceContext.staging)")
    ctx.staging.mkdir(parents=True, exist_ok=True)
    return ctx.staging
