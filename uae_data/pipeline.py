"""build(CorpusConfig): source -> caption -> shard, streamed shard by shard, resumable.

Shard k holds input rows [k*shard_size, (k+1)*shard_size). Every shard depends only on the
config and its row range, so shards are built in parallel, and a resumed build rebuilds exactly
the shards that were not finished and ends with the same bytes as an uninterrupted one.

Folder layout (DESIGN.md): shards/*.tar, sizes.json, stats.parquet, manifest.json, plus
config.yaml (the resolved config, written first: it is how a re-run knows it is resuming the
same build) and .parts/ (per-shard stats, merged at the end).
"""
from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import yaml

from uae_data import shards as sh
from uae_data.phash import phash_many
from uae_data.captioners import CaptionerConfig, build_captioner
from uae_data.config import config_kind, dump_yaml, from_dict, help_field, to_dict
from uae_data.sources import SourceConfig, SourceItem, build_source
from uae_data.versions import git_hash, package_versions

STATS_COLUMNS = ["key", "status", "reason", "shard", "url"]


@config_kind("corpus")
@dataclass
class CorpusConfig:
    name: str = help_field("corpus", help="corpus name, recorded in manifest.json")
    seed: int = help_field(0, help="seed of every random choice (scene sampling, caption paraphrase)")
    source: SourceConfig = help_field(None, help="where items come from")
    captioner: CaptionerConfig = help_field(None, help="how long captions are written")
    image_size: int = help_field(64, help="side of stored images in pixels")
    image_format: str = help_field("png", help="png (lossless) or jpg")
    shard_size: int = help_field(1000, help="samples per shard (input rows per shard)")
    limit: int | None = help_field(None, help="use at most this many input rows (CLI --limit)")

    def __post_init__(self) -> None:
        self.source = self.source or SourceConfig()
        self.captioner = self.captioner or CaptionerConfig()

    def validate(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if self.image_format not in ("png", "jpg"):
            raise ValueError(f"image_format must be png or jpg, got {self.image_format!r}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be >= 1, got {self.shard_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")


@dataclass
class ShardResult:
    index: int
    count: int
    sha256: str
    statuses: dict[str, int]


def _sample_meta(cfg: CorpusConfig, item: SourceItem, caption, phash: str) -> dict:
    image = item.image
    meta = {
        "key": sh.sample_key(item.index),
        "source": cfg.source.name,
        "width": image.width,
        "height": image.height,
        "caption_model": caption.model,
        "caption_words": len(caption.text.split()),
        "caption_truncated": bool(caption.truncated),
        "phash": phash,
    }
    if item.url:
        meta["url"] = item.url
    if item.caption and caption.model != "source":
        meta["short_caption"] = item.caption
    scene = item.meta.get("scene")
    if scene is not None:
        meta["scene"] = scene.to_dict()
    return meta


def build_shard(cfg: CorpusConfig, shard_index: int, n_rows: int, out: Path) -> ShardResult:
    """Build one shard and its stats part; both appear only complete."""
    start = shard_index * cfg.shard_size
    stop = min(start + cfg.shard_size, n_rows)
    source = build_source(cfg.source, cfg.image_size, cfg.seed)
    captioner = build_captioner(cfg.captioner, cfg.seed)
    items = list(source.items(start, stop))
    ok = [it for it in items if it.status == "ok"]
    captions = captioner(ok) if ok else []
    hashes = phash_many([it.image for it in ok])
    samples = []
    for item, cap, ph in zip(ok, captions, hashes):
        samples.append(
            sh.Sample(
                key=sh.sample_key(item.index),
                image=sh.encode_image(item.image, cfg.image_format),
                image_ext=cfg.image_format,
                caption=cap.text,
                meta=_sample_meta(cfg, item, cap, ph),
            )
        )
    name = sh.shard_name(shard_index)
    rows = [
        {"key": sh.sample_key(it.index), "status": it.status, "reason": it.reason, "shard": name if it.status == "ok" else "", "url": it.url or ""}
        for it in items
    ]
    part = out / ".parts" / f"{name}.parquet"
    tmp = part.with_name(part.name + ".tmp")
    pd.DataFrame(rows, columns=STATS_COLUMNS).to_parquet(tmp, index=False)
    os.replace(tmp, part)
    count, digest = sh.write_shard(out / "shards" / name, samples)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return ShardResult(shard_index, count, digest, statuses)


def _build_shard_job(args: tuple) -> ShardResult:
    cfg_dict, shard_index, n_rows, out = args
    return build_shard(from_dict(CorpusConfig, cfg_dict), shard_index, n_rows, Path(out))


def _check_out_dir(cfg: CorpusConfig, out: Path) -> None:
    """Refuse an --out that holds something else; a matching config.yaml means resume."""
    saved = out / "config.yaml"
    if saved.exists():
        old = yaml.safe_load(saved.read_text()) or {}
        old.pop("kind", None)
        new = to_dict(cfg)
        if old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise sh.CorpusError(
                f"{out}: holds a corpus built with a different config (differs in: {', '.join(diff)}); "
                "choose another --out or delete it"
            )
    elif out.exists() and any(out.iterdir()):
        raise sh.CorpusError(f"{out}: folder is not empty and is not a corpus built by uae; choose another --out")


def build(
    cfg: CorpusConfig,
    out: Path,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Build (or resume) a corpus in `out`; returns the manifest dict.

    on_progress(done_rows, total_rows) is called as shards finish (the CLI draws a bar with it).
    """
    out = Path(out)
    _check_out_dir(cfg, out)
    source = build_source(cfg.source, cfg.image_size, cfg.seed)
    n_rows = len(source) if cfg.limit is None else min(len(source), cfg.limit)
    n_shards = math.ceil(n_rows / cfg.shard_size)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / ".parts").mkdir(exist_ok=True)
    if not (out / "config.yaml").exists():
        (out / "config.yaml").write_text(dump_yaml(cfg, kind="corpus"))
    for stale in list((out / "shards").glob("*.tmp")) + list((out / ".parts").glob("*.tmp")):
        stale.unlink()  # left by an interrupted run

    def done(k: int) -> bool:
        name = sh.shard_name(k)
        return (out / "shards" / name).exists() and (out / ".parts" / f"{name}.parquet").exists()

    todo = [k for k in range(n_shards) if not done(k)]
    finished = set(range(n_shards)) - set(todo)
    rows_done = sum(min(cfg.shard_size, n_rows - k * cfg.shard_size) for k in finished)
    if on_progress:
        on_progress(rows_done, n_rows)
    t0 = time.perf_counter()
    jobs = [(to_dict(cfg), k, n_rows, str(out)) for k in todo]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    if workers == 1:
        results = map(_build_shard_job, jobs)
        for r in results:
            rows_done += sum(r.statuses.values())
            if on_progress:
                on_progress(rows_done, n_rows)
    else:
        pool = mp.get_context("fork").Pool(workers)
        try:
            for r in pool.imap_unordered(_build_shard_job, jobs):
                rows_done += sum(r.statuses.values())
                if on_progress:
                    on_progress(rows_done, n_rows)
            pool.close()
        except BaseException:
            pool.terminate()
            raise
        finally:
            pool.join()
    return finalize(cfg, out, n_rows, n_shards, time.perf_counter() - t0)


def finalize(cfg: CorpusConfig, out: Path, n_rows: int, n_shards: int, seconds: float) -> dict:
    """Write sizes.json, stats.parquet and manifest.json from the finished shards."""
    names = [sh.shard_name(k) for k in range(n_shards)]
    stats = pd.concat([pd.read_parquet(out / ".parts" / f"{n}.parquet") for n in names], ignore_index=True)
    stats.to_parquet(out / "stats.parquet.tmp", index=False)
    os.replace(out / "stats.parquet.tmp", out / "stats.parquet")
    sizes = {n: int((stats["shard"] == n).sum()) for n in names}
    sh.write_json_atomic(out / "sizes.json", sizes)
    manifest = {
        "name": cfg.name,
        "config": to_dict(cfg),
        "counts": {
            "input_rows": n_rows,
            "shards": n_shards,
            "samples": int(sum(sizes.values())),
            **{f"status_{k}": int(v) for k, v in stats["status"].value_counts().items()},
        },
        "sha256": {n: sh.file_sha256(out / "shards" / n) for n in names},
        "versions": package_versions(),
        "git_hash": git_hash(),
        "build_seconds_last_run": round(seconds, 3),
    }
    sh.write_json_atomic(out / "manifest.json", manifest)
    return manifest
