"""CorpusConfig: the `kind: corpus` manifest schema (what `uae build-corpus` reads).

Why its own module: the build engines (pipeline.py's local engine, engine_ray.py) and the per-shard
stages all need the config class, while the pipeline imports the Ray engine; with the class here
every one of them imports it from below and the package's imports point one way.
"""
from __future__ import annotations

from dataclasses import dataclass

from uae_data.captioners import CaptionerConfig
from uae_data.core.config import config_kind, help_field, require_at_least_one
from uae_data.filters import FilterConfig
from uae_data.sources import SourceConfig


@config_kind("corpus")
@dataclass
class CorpusConfig:
    name: str = help_field("corpus", help="corpus name, recorded in manifest.json")
    seed: int = help_field(0, help="seed of every random choice (scene sampling, caption paraphrase)")
    source: SourceConfig = help_field(None, help="where items come from")
    filters: FilterConfig = help_field(None, help="quality filters and near-duplicate removal (all off by default)")
    captioner: CaptionerConfig = help_field(None, help="how long captions are written")
    image_size: int = help_field(64, help="side of stored images in pixels (urls/folder/...: img2dataset's image_size)")
    image_format: str = help_field("png", help="png (lossless) or jpg")
    shard_size: int = help_field(1000, help="samples per shard (input rows per shard)")
    limit: int | None = help_field(None, help="use at most this many input rows (CLI --limit)")

    def __post_init__(self) -> None:
        self.source = self.source or SourceConfig()
        self.filters = self.filters or FilterConfig()
        self.captioner = self.captioner or CaptionerConfig()

    def validate(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be png or jpg, got {self.image_format!r}")
        require_at_least_one(self, "shard_size", "limit")
        if self.captioner.name in ("scene", "web") and self.source.name != "scenes":
            raise ValueError(f"captioner '{self.captioner.name}' writes captions of scene items only; source '{self.source.name}' "
                             "needs captioner keep, hf or openai")
