"""The per-shard stages of a corpus build: load -> size filters -> dedup -> CLIP -> caption -> write.

Both engines run these same functions: the local engine calls them in order inside one worker
per shard; the Ray engine runs `load_shard` as a task per shard and CLIP scoring and captioning as
`map_batches` actor pools, then `write_shard_outputs` in the driver. Rows cross process
boundaries as plain dicts (`item_to_row` / `row_to_item`) so Ray can move them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from uae_data import shards as sh
from uae_data.captioners import Caption
from uae_data.core.io import atomic_write
from uae_data.corpus_config import CorpusConfig
from uae_data.filters import apply_size_filters
from uae_data.phash import phash_many
from uae_data.sources import SourceContext, SourceItem, build_source

if TYPE_CHECKING:
    from PIL import Image

    from uae_data.clip_score import ClipScore

STATS_COLUMNS = ["key", "status", "reason", "shard", "url", "stage", "source_status"]
# per-row counts a captioner may report (web captions), kept in stats.parquet for the corpus audit
AUDIT_COLUMNS = ["objects", "objects_named", "objects_named_full"]
STAGING = ".staging"


@dataclass
class ShardResult:
    index: int
    count: int
    sha256: str
    statuses: dict[str, int]


def source_context(cfg: CorpusConfig, out: Path, distributor: str | None = None) -> SourceContext:
    return SourceContext(image_size=cfg.image_size, seed=cfg.seed, image_format=cfg.image_format,
                         shard_size=cfg.shard_size, staging=Path(out) / STAGING, distributor=distributor, limit=cfg.limit)


def shard_range(cfg: CorpusConfig, k: int, n_rows: int) -> tuple[int, int]:
    return k * cfg.shard_size, min((k + 1) * cfg.shard_size, n_rows)


def phash_part(out: Path, k: int) -> Path:
    return Path(out) / STAGING / "phash" / f"{sh.shard_name(k)}.parquet"


def dedup_path(out: Path) -> Path:
    return Path(out) / STAGING / "dedup.parquet"


def load_items(cfg: CorpusConfig, k: int, n_rows: int, out: Path) -> list[SourceItem]:
    """Shard k's source rows with the size filters applied (no dedup, no model)."""
    source = build_source(cfg.source, source_context(cfg, out))
    items = list(source.items(*shard_range(cfg, k, n_rows)))
    for it in items:
        if it.status != "ok":
            it.meta.setdefault("stage", "source")
    apply_size_filters(cfg.filters, items)
    return items


def hash_shard(cfg: CorpusConfig, k: int, n_rows: int, out: Path) -> int:
    """Dedup pre-pass for one shard: pHash of every ok row, saved for `dedup` and reused when writing."""
    items = [it for it in load_items(cfg, k, n_rows, out) if it.status == "ok"]
    table = pd.DataFrame({"index": [it.index for it in items], "phash": phash_many([it.pil() for it in items])})
    atomic_write(phash_part(out, k), lambda f: table.to_parquet(f, index=False), binary=True)
    return k


def load_shard(cfg: CorpusConfig, k: int, n_rows: int, out: Path) -> list[SourceItem]:
    """Shard k's rows after size filters and (when on) the global near-duplicate decisions; ok rows carry a phash."""
    items = load_items(cfg, k, n_rows, out)
    ok = [it for it in items if it.status == "ok"]
    if cfg.filters.dedup_threshold is not None:
        hashes = dict(pd.read_parquet(phash_part(out, k)).itertuples(index=False, name=None))
        dups = pd.read_parquet(dedup_path(out)).set_index("index")
        for it in ok:
            it.meta["phash"] = hashes[it.index]
            if it.index in dups.index:
                first, dist = dups.loc[it.index, "dup_of"], dups.loc[it.index, "distance"]
                it.status, it.meta["stage"] = "dropped", "dedup"
                it.reason = f"near-duplicate of {sh.sample_key(int(first))} (phash distance {int(dist)} <= {cfg.filters.dedup_threshold})"
    else:
        for it, ph in zip(ok, phash_many([it.pil() for it in ok])):
            it.meta["phash"] = ph
    if cfg.captioner.name == "keep":  # keeping the source's captions: a row without one is not an image-caption pair
        for it in ok:
            if it.status == "ok" and not (it.caption or "").strip():
                it.status, it.meta["stage"] = "failed", "caption"
                it.reason = ("no caption in the source (null, empty or no .txt); write one with --captioner hf "
                             "--caption-model VLM")
    return items


def apply_clip(cfg: CorpusConfig, scorer: Callable[[list[Image.Image], list[str]], list[ClipScore]],
               items: list[SourceItem]) -> None:
    """Score ok rows against their source caption; record clip_score and drop those below min_score."""
    ok = [it for it in items if it.status == "ok"]
    if not ok:
        return
    scores = scorer([it.pil() for it in ok], [it.caption or "" for it in ok])
    for it, s in zip(ok, scores):
        it.meta.update(clip_score=round(s.score, 6), clip_chunks=s.chunks)
        if s.truncated:
            it.meta["clip_truncated"] = True
        limit = cfg.filters.clip.min_score
        if limit is not None and s.score < limit:
            it.status, it.meta["stage"] = "dropped", "clip"
            it.reason = f"clip score {s.score:.4f} < {limit:g}"


def sample_meta(cfg: CorpusConfig, item: SourceItem, caption: Caption) -> dict:
    width, height = item.size
    meta = {
        "key": sh.sample_key(item.index),
        "source": cfg.source.name,
        "width": width,
        "height": height,
        "caption_model": caption.model,
        "caption_words": len(caption.text.split()),
        "caption_truncated": bool(caption.truncated),
        "phash": item.meta["phash"],
    }
    if item.url:
        meta["url"] = item.url
    if item.caption and caption.model != "source":
        meta["short_caption"] = item.caption
    for k in ("clip_score", "clip_chunks", "clip_truncated"):
        if k in item.meta:
            meta[k] = item.meta[k]
    scene = item.meta.get("scene")
    if scene is not None:
        meta["scene"] = scene.to_dict()
    meta.update(caption.meta)
    return meta


def _image_bytes(cfg: CorpusConfig, item: SourceItem) -> bytes:
    if item.image_bytes is not None and item.image_ext == cfg.image_format:
        return item.image_bytes  # the source already encoded it in the corpus format: no lossy round trip
    return sh.encode_image(item.pil(), cfg.image_format)


def write_shard_outputs(cfg: CorpusConfig, k: int, items: list[SourceItem], captions: list[Caption],
                        out: Path) -> ShardResult:
    """Shard k's tar and stats part (each written atomically); `captions` match the ok items."""
    out = Path(out)
    name = sh.shard_name(k)
    ok = [it for it in items if it.status == "ok"]
    usage = {sh.sample_key(it.index): cap.stats for it, cap in zip(ok, captions, strict=True) if cap.stats}
    for it, cap in zip(ok, captions):
        if cap.error is not None:  # captioning failed for good (openai: after retries): the row stays, as failed
            it.status, it.reason, it.meta["stage"] = "failed", cap.error, "caption"
    captions = [cap for cap in captions if cap.error is None]
    ok = [it for it in ok if it.status == "ok"]
    samples = [sh.Sample(key=sh.sample_key(it.index), image=_image_bytes(cfg, it), image_ext=cfg.image_format,
                         caption=cap.text, meta=sample_meta(cfg, it, cap)) for it, cap in zip(ok, captions, strict=True)]
    rows = [{"key": sh.sample_key(it.index), "status": it.status, "reason": it.reason,
             "shard": name if it.status == "ok" else "", "url": it.url or "", "stage": it.meta.get("stage", ""),
             "source_status": it.source_status} for it in items]
    audit = {sh.sample_key(it.index): {c: cap.meta[c] for c in AUDIT_COLUMNS if c in cap.meta} | {
        "caption_words": len(cap.text.split())} for it, cap in zip(ok, captions)}
    extra = [c for c in AUDIT_COLUMNS if any(c in a for a in audit.values())]
    if extra:  # web captions: per-row counts behind the corpus audit (manifest.json "caption_audit")
        for r in rows:
            r.update({c: audit.get(r["key"], {}).get(c, -1) for c in [*extra, "caption_words"]})
    usage_cols = list(dict.fromkeys(c for u in usage.values() for c in u))
    for r in rows:  # openai: tokens, latency, attempts of every captioned row (-1: never sent)
        r.update({c: usage.get(r["key"], {}).get(c, -1) for c in usage_cols})
    stats = pd.DataFrame(rows, columns=[*STATS_COLUMNS, *([*extra, "caption_words"] if extra else []), *usage_cols])
    atomic_write(out / ".parts" / f"{name}.parquet", lambda f: stats.to_parquet(f, index=False), binary=True)
    count, digest = sh.write_shard(out / "shards" / name, samples)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return ShardResult(k, count, digest, statuses)


def item_to_row(k: int, it: SourceItem, image_format: str) -> dict:
    """A SourceItem as a flat, Arrow-friendly dict (for Ray); ok rows carry encoded image bytes."""
    meta = dict(it.meta)
    if meta.get("scene") is not None:
        meta["scene"] = meta["scene"].to_dict()
    image = None
    if it.status == "ok":
        image = it.image_bytes if it.image_bytes is not None else sh.encode_image(it.pil(), image_format)
    return {"shard": k, "index": it.index, "status": it.status, "reason": it.reason, "url": it.url or "",
            "caption": it.caption, "source_status": it.source_status, "meta": json.dumps(meta),
            "image": image, "image_ext": (it.image_ext or image_format) if image is not None else None,
            "original_size": list(it.original_size) if it.original_size else None}


def row_to_item(row: dict) -> SourceItem:
    from uae_data.scenes import Scene

    meta = json.loads(row["meta"])
    if meta.get("scene") is not None:
        meta["scene"] = Scene.from_dict(meta["scene"])
    size = row.get("original_size")
    caption = row.get("caption")
    return SourceItem(index=int(row["index"]), image=None, caption=caption if isinstance(caption, str) else None,
                      url=row["url"] or None, status=row["status"], reason=row["reason"], meta=meta,
                      image_bytes=row["image"] if row["status"] == "ok" else None, image_ext=row.get("image_ext"),
                      original_size=tuple(int(v) for v in size) if size is not None else None,
                      source_status=row["source_status"])
