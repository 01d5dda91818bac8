"""Corpus sources (registry): each turns its input into numbered `SourceItem`s.

A source is built from (SourceConfig, SourceContext) and must be able to produce any index range
on its own (`items(start, stop)`), so shards can be built in parallel and rebuilt alone on resume
with identical bytes. Sources that read outside input first snapshot it in `prepare()` (run once,
in the main process, resumable): `urls` downloads through img2dataset into the staging folder,
`folder` and `shards` record their file lists there, so every worker and every resumed run sees
the same rows in the same order.
"""
from __future__ import annotations

from uae_data.sources.base import (  # noqa: F401  (the package's public names)
    SOURCES,
    SOURCE_NAMES,
    Source,
    SourceConfig,
    SourceContext,
    SourceItem,
    staging_dir,
)


def build_source(cfg: SourceConfig, ctx: SourceContext | int, seed: int | None = None) -> Source:
    """Instantiate the source named in cfg. (cfg, image_size, seed) is accepted for old callers."""
    from uae_data.sources import files, scenes, table, urls, wds_shards  # noqa: F401  (registers)

    if not isinstance(ctx, SourceContext):
        ctx = SourceContext(image_size=int(ctx), seed=int(seed or 0))
    return SOURCES.get(cfg.name)(cfg, ctx)
