"""Corpus sources (registry): each turns its input into numbered `SourceItem`s.

A source is built from (SourceConfig, image_size, seed) and must be able to produce any index
range on its own (`items(start, stop)`), so shards can be built in parallel and rebuilt alone
on resume with identical bytes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from PIL import Image

from uae_data.config import help_field
from uae_data.registry import Registry


@dataclass
class SourceConfig:
    name: str = help_field("scenes", help="source backend: " + "scenes")
    input: str | None = help_field(None, help="input path or URL list (sources that read one)")
    n: int = help_field(10000, help="number of items to produce (scenes) or read at most")
    min_objects: int = help_field(1, help="scenes: fewest objects per scene")
    max_objects: int = help_field(6, help="scenes: most objects per scene (the 3x3 grid holds 9)")
    options: dict[str, Any] = help_field({}, help="backend-specific options passed through")

    def validate(self) -> None:
        if self.n < 1:
            raise ValueError(f"source.n must be >= 1, got {self.n}")
        if not 1 <= self.min_objects <= self.max_objects <= 9:
            raise ValueError("source.min_objects/max_objects must satisfy 1 <= min <= max <= 9")


@dataclass
class SourceItem:
    """One input row. status 'ok' items carry an image; 'failed'/'dropped' carry a reason."""

    index: int
    image: Image.Image | None
    caption: str | None = None
    url: str | None = None
    status: str = "ok"
    reason: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


class Source(Protocol):
    name: str

    def __len__(self) -> int: ...

    def items(self, start: int, stop: int) -> Iterator[SourceItem]: ...


SOURCES: Registry = Registry("source")


def build_source(cfg: SourceConfig, image_size: int, seed: int) -> Source:
    from uae_data.sources import scenes  # noqa: F401  (registers)

    return SOURCES.get(cfg.name)(cfg, image_size, seed)
