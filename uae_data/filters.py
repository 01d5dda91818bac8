"""Quality filters: minimum side, maximum aspect ratio, pHash near-duplicates, CLIP image-text score.

Each filter turns an ok item into a `dropped` row with a reason naming the filter, the value and
the limit, so stats.parquet says why every row left. Size and aspect look at the image before
the source resized it (as img2dataset's own min_image_size/max_aspect_ratio do): a 20:1 strip
padded to a square by resize_mode=border is still a 20:1 image. Defaults keep everything, so a
manifest opts in; DataComp's basic filter is min_side 200, max_aspect 3 (facts/corpus.md §4).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from uae_data.core.config import help_field
from uae_data.sources import SourceItem


@dataclass
class ClipFilterConfig:
    model: str | None = help_field(None, help="open_clip model name (e.g. ViT-B-32); None = no CLIP score")
    pretrained: str | None = help_field(None, help="open_clip pretrained tag or local checkpoint file (None = random weights, tests only)")
    model_config: str | None = help_field(None, help="a local open_clip model config JSON to register (custom/tiny models)")
    min_score: float | None = help_field(None, help="drop rows whose score is below this cosine (DataComp B/32: 0.25..0.28)")
    long_captions: str = help_field("chunks", help="captions over the context length: chunks (mean over sentence chunks) | truncate")
    batch_size: int = help_field(32, help="images per CLIP forward pass")
    device: str | None = help_field(None, help="cpu | cuda (default: cuda when present)")

    def validate(self) -> None:
        if self.long_captions not in ("chunks", "truncate"):
            raise ValueError(f"filters.clip.long_captions must be chunks or truncate, got {self.long_captions!r}")
        if self.min_score is not None and self.model is None:
            raise ValueError("filters.clip.min_score needs filters.clip.model")
        if self.batch_size < 1:
            raise ValueError(f"filters.clip.batch_size must be >= 1, got {self.batch_size}")


@dataclass
class FilterConfig:
    min_side: int = help_field(0, help="drop images whose shorter side (before resizing) is below this, in pixels")
    max_aspect: float | None = help_field(None, help="drop images whose long/short side ratio exceeds this (e.g. 3)")
    dedup_threshold: int | None = help_field(None, help="drop an image within this pHash Hamming distance of an earlier kept one (0 = exact; imagededup uses 10); None = off")
    clip: ClipFilterConfig = help_field(None, help="CLIP image-text score (open_clip); recorded as clip_score, optional threshold")

    def __post_init__(self) -> None:
        self.clip = self.clip or ClipFilterConfig()

    def validate(self) -> None:
        if self.min_side < 0:
            raise ValueError(f"filters.min_side must be >= 0, got {self.min_side}")
        if self.max_aspect is not None and self.max_aspect < 1:
            raise ValueError(f"filters.max_aspect must be >= 1, got {self.max_aspect}")
        if self.dedup_threshold is not None and not 0 <= self.dedup_threshold <= 32:
            raise ValueError(f"filters.dedup_threshold must be in 0..32, got {self.dedup_threshold}")


def original_size(item: SourceItem) -> tuple[int, int]:
    return item.original_size or item.size


def size_reason(cfg: FilterConfig, width: int, height: int) -> str | None:
    """Why an image of this (original) size is dropped, or None to keep it."""
    short, long = min(width, height), max(width, height)
    if short < cfg.min_side:
        return f"min side {short} < {cfg.min_side}"
    if cfg.max_aspect is not None and (short == 0 or long / short > cfg.max_aspect):
        return f"aspect {long / max(short, 1):.3g} > {cfg.max_aspect:g}"
    return None


def apply_size_filters(cfg: FilterConfig, items: Iterable[SourceItem]) -> None:
    """Mark ok items that fail min_side / max_aspect as dropped (in place)."""
    if cfg.min_side <= 0 and cfg.max_aspect is None:
        return
    for it in items:
        if it.status == "ok":
            reason = size_reason(cfg, *original_size(it))
            if reason:
                it.status, it.reason, it.meta["stage"] = "dropped", reason, "size"


def near_duplicates(indices: list[int], hashes: list[str], threshold: int) -> dict[int, tuple[int, int]]:
    """{index: (kept index it duplicates, Hamming distance)} keeping the first of every group.

    Greedy in index order against every kept hash, so the result depends on the input alone (not
    on shards or workers). Written with numpy because imagehash compares one pair per call: one
    XOR + popcount against all kept hashes per image is O(N * kept); fine to ~1e5-1e6 images.
    """
    order = np.argsort(indices, kind="stable")
    values = np.array([int(h, 16) for h in hashes], dtype=np.uint64)
    kept_values = np.empty(len(values), dtype=np.uint64)
    kept_index: list[int] = []
    dups: dict[int, tuple[int, int]] = {}
    for pos in order:
        h, idx = values[pos], indices[pos]
        if kept_index:
            dist = np.bitwise_count(kept_values[: len(kept_index)] ^ h)
            j = int(np.argmin(dist))
            if dist[j] <= threshold:
                dups[idx] = (kept_index[j], int(dist[j]))
                continue
        kept_values[len(kept_index)] = h
        kept_index.append(idx)
    return dups
