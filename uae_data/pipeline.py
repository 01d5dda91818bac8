"""build(CorpusConfig): source -> filters -> caption -> shard, streamed shard by shard, resumable.

Shard k holds input rows [k*shard_size, (k+1)*shard_size). Every shard depends only on the
config, its row range and the source's staged input snapshot, so shards are built in parallel,
and a resumed build rebuilds exactly the shards that were not finished and ends with the same
bytes as an uninterrupted one. Near-duplicate removal is the one global stage: a pre-pass hashes
every shard, `dedup.parquet` fixes which rows go (keep the first of each group), then shards build.

Folder layout (DESIGN.md): shards/*.tar, sizes.json, stats.parquet, manifest.json, plus
config.yaml (the resolved config, written first: it is how a re-run knows it is resuming the
same build), .parts/ (per-shard stats, merged at the end) and .staging/ (the source's input
snapshot: img2dataset's download folder, file lists, pHashes, dedup decisions).

Engines: `local` runs one worker process per shard (multiprocessing); `ray` runs loading as Ray
tasks and CLIP scoring / recaptioning as Ray Data `map_batches` actor pools (uae_data/engine_ray.py).
"""
from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import pandas as pd
import yaml

from uae_data import shards as sh
from uae_data.captioners import build_captioner
from uae_data.core.errors import UserError
from uae_data.core.io import atomic_write, atomic_write_text
from uae_data.core.config import dump_yaml, from_dict, to_dict
from uae_data.corpus_config import CorpusConfig
from uae_data.engine_ray import build_shards_ray
from uae_data.filters import near_duplicates
from uae_data.sources import build_source
from uae_data.stages import (ShardResult, apply_clip, dedup_path, hash_shard, load_shard, phash_part, shard_range,
                             source_context, write_shard_outputs)
from uae_data.core.versions import git_hash, package_versions

ENGINES = ("local", "ray")


def build_shard(cfg: CorpusConfig, shard_index: int, n_rows: int, out: Path) -> ShardResult:
    """Build one shard and its stats part (local engine); both appear only complete."""
    items = load_shard(cfg, shard_index, n_rows, out)
    if cfg.filters.clip.model:
        apply_clip(cfg, _clip_scorer(cfg), items)
    ok = [it for it in items if it.status == "ok"]
    captions = _captioner(cfg)(ok) if ok else []
    return write_shard_outputs(cfg, shard_index, items, captions, out)


_MODELS: dict = {}  # one captioner / CLIP model per worker process, reused across its shards


def _captioner(cfg: CorpusConfig):
    key = ("cap", repr(cfg.captioner), cfg.seed)
    if key not in _MODELS:
        _MODELS[key] = build_captioner(cfg.captioner, cfg.seed)
    return _MODELS[key]


def _clip_scorer(cfg: CorpusConfig):
    from uae_data.clip_score import ClipScorer

    key = ("clip", repr(cfg.filters.clip))
    if key not in _MODELS:
        _MODELS[key] = ClipScorer(cfg.filters.clip)
    return _MODELS[key]


def _build_shard_job(args: tuple) -> ShardResult:
    cfg_dict, shard_index, n_rows, out = args
    return build_shard(from_dict(CorpusConfig, cfg_dict), shard_index, n_rows, Path(out))


def _hash_shard_job(args: tuple) -> int:
    cfg_dict, shard_index, n_rows, out = args
    return hash_shard(from_dict(CorpusConfig, cfg_dict), shard_index, n_rows, Path(out))


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


def _ignore_interrupt() -> None:
    """Pool workers leave Ctrl-C to the parent: a worker interrupted inside the pool's queue machinery can
    leave a lock held, and then terminate()/join() wait forever (a multi-worker build once hung > 10 min)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_pool(pool: Any, grace_s: float = 5.0) -> None:
    """terminate() the pool, but never wait more than `grace_s`: SIGKILL whatever worker is still alive and
    move on (an unfinished shard is only ever a *.tmp file, which the next run deletes)."""
    procs = list(getattr(pool, "_pool", []))  # the worker processes (no public accessor)
    stopper = threading.Thread(target=pool.terminate, daemon=True)
    stopper.start()
    stopper.join(grace_s)
    for p in procs:
        if p.is_alive():
            p.kill()


def _run_jobs(fn: Callable, jobs: list[tuple], workers: int) -> Iterable:
    """fn over jobs, in a fork pool when workers > 1; yields results as they finish. Ctrl-C reaches only the
    parent, which stops the workers within seconds and re-raises (the CLI prints how to resume)."""
    workers = max(1, min(workers, len(jobs) or 1))
    if workers == 1:
        yield from map(fn, jobs)
        return
    pool = mp.get_context("fork").Pool(workers, initializer=_ignore_interrupt)
    try:
        yield from pool.imap_unordered(fn, jobs)
        pool.close()
        pool.join()
    except BaseException:
        _stop_pool(pool)
        raise


def _dedup(cfg: CorpusConfig, out: Path, n_rows: int, n_shards: int, workers: int) -> None:
    """Global near-duplicate decisions (resumable: hashes per shard, then one dedup.parquet)."""
    if dedup_path(out).exists():
        return
    todo = [k for k in range(n_shards) if not phash_part(out, k).exists()]
    for _ in _run_jobs(_hash_shard_job, [(to_dict(cfg), k, n_rows, str(out)) for k in todo], workers):
        pass
    parts = [pd.read_parquet(phash_part(out, k)) for k in range(n_shards)]
    hashes = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({"index": [], "phash": []})
    dups = near_duplicates(hashes["index"].tolist(), hashes["phash"].tolist(), cfg.filters.dedup_threshold)
    table = pd.DataFrame([(i, f, d) for i, (f, d) in sorted(dups.items())], columns=["index", "dup_of", "distance"])
    atomic_write(dedup_path(out), lambda f: table.to_parquet(f, index=False), binary=True)


def check_models(cfg: CorpusConfig) -> None:
    """Fail before any row is read when a model the build will need is missing (models load lazily)."""
    from uae_data.model_refs import require_model, require_open_clip

    if cfg.captioner.name == "hf":
        require_model(cfg.captioner.model, "--caption-model (captioner.model)", "captioner")
    if cfg.captioner.name == "openai":
        from uae_data.openai_chat import api_key

        api_key(cfg.captioner.api_key_env)  # a named key that is not set fails now, not on every row
    if cfg.filters.clip.model:
        require_open_clip(cfg.filters.clip.model, cfg.filters.clip.pretrained,
                          "filters.clip.model / filters.clip.pretrained")


def build(
    cfg: CorpusConfig,
    out: Path,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    engine: str = "local",
) -> dict:
    """Build (or resume) a corpus in `out`; returns the manifest dict.

    on_progress(done_rows, total_rows) is called as shards finish (the CLI draws a bar with it).
    engine: local (multiprocessing, `workers` processes) or ray (an existing Ray cluster, or a local one).
    """
    if engine not in ENGINES:
        raise sh.CorpusError(f"unknown engine {engine!r} (one of: {', '.join(ENGINES)})")
    if workers is not None and workers < 1:
        raise sh.CorpusError(f"--workers must be 1 or more, got {workers} (default: all cores)")
    out = Path(out)
    _check_out_dir(cfg, out)
    check_models(cfg)
    source = build_source(cfg.source, source_context(cfg, out, "ray" if engine == "ray" else None))
    created = not out.exists()
    try:
        manifest = _build_into(cfg, out, source, workers, on_progress, engine)
    except Exception:
        _drop_if_nothing_made(out, created)
        raise
    c = manifest["counts"]
    if c["input_rows"] and not c["samples"]:  # the folder stays for inspection (stats.parquet) or a rerun
        raise sh.CorpusError(f"{out}: no sample made it: all {c['input_rows']} rows failed or were dropped; "
                             f"commonest reason: {_commonest_reason(out)} (every row in {out / 'stats.parquet'})")
    return manifest


def _drop_if_nothing_made(out: Path, created: bool) -> None:
    """A build that fails before any shard or download exists leaves nothing: the folder it created, or (when
    resuming) the empty .parts/ and .staging/ it made; finished shards and downloads stay for the rerun."""
    made = [p for d in (".parts", ".staging", "shards") if (out / d).is_dir() for p in (out / d).rglob("*")
            if p.is_file() and p.suffix != ".tmp"]
    if made:
        return
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for d in (".parts", ".staging"):
        shutil.rmtree(out / d, ignore_errors=True)


def _commonest_reason(out: Path) -> str:
    """The failure reason most rows share (stats.parquet), as 'reason (N rows)'."""
    stats = pd.read_parquet(out / "stats.parquet")
    bad = stats[stats["status"] != "ok"]
    if not len(bad):
        return "unknown"
    reasons = bad["reason"].fillna("").replace("", "no reason recorded").value_counts()
    return f"{reasons.index[0]} ({int(reasons.iloc[0])} of {len(stats)} rows)"


def _build_into(cfg: CorpusConfig, out: Path, source: Any, workers: int | None,
                on_progress: Callable[[int, int], None] | None, engine: str) -> dict:
    """build()'s work once the source is known: prepare it, build the missing shards, finalize."""
    created = not out.exists()
    (out / "shards").mkdir(parents=True, exist_ok=True)
    (out / ".parts").mkdir(exist_ok=True)
    if not (out / "config.yaml").exists():
        atomic_write_text(out / "config.yaml", dump_yaml(cfg, kind="corpus"))
    try:
        source.prepare()  # downloads / snapshots the input (resumable); one-line errors for bad input
    except UserError:
        if created:  # bad input before any work: leave no half-made corpus folder behind
            shutil.rmtree(out, ignore_errors=True)
        raise
    n_rows = len(source) if cfg.limit is None else min(len(source), cfg.limit)
    n_shards = math.ceil(n_rows / cfg.shard_size)
    for stale in list(out.rglob("*.tmp")):
        stale.unlink()  # left by an interrupted run
    workers = workers or os.cpu_count() or 1
    if cfg.filters.dedup_threshold is not None:
        _dedup(cfg, out, n_rows, n_shards, workers)

    def done(k: int) -> bool:
        name = sh.shard_name(k)
        return (out / "shards" / name).exists() and (out / ".parts" / f"{name}.parquet").exists()

    todo = [k for k in range(n_shards) if not done(k)]
    rows_done = sum(len(range(*shard_range(cfg, k, n_rows))) for k in range(n_shards) if k not in set(todo))
    if on_progress:
        on_progress(rows_done, n_rows)
    t0 = time.perf_counter()
    if engine == "ray":
        results = build_shards_ray(cfg, out, todo, n_rows)
    else:
        results = _run_jobs(_build_shard_job, [(to_dict(cfg), k, n_rows, str(out)) for k in todo], workers)
    for r in results:
        rows_done += sum(r.statuses.values())
        if on_progress:
            on_progress(rows_done, n_rows)
    return finalize(cfg, out, n_rows, n_shards, time.perf_counter() - t0)


def finalize(cfg: CorpusConfig, out: Path, n_rows: int, n_shards: int, seconds: float) -> dict:
    """Write sizes.json, stats.parquet and manifest.json from the finished shards."""
    names = [sh.shard_name(k) for k in range(n_shards)]
    stats = pd.concat([pd.read_parquet(out / ".parts" / f"{n}.parquet") for n in names], ignore_index=True)
    atomic_write(out / "stats.parquet", lambda f: stats.to_parquet(f, index=False), binary=True)
    sizes = {n: int((stats["shard"] == n).sum()) for n in names}
    _write_json(out / "sizes.json", sizes)
    if "stage" not in stats:
        stats["stage"] = ""  # parts written before stages were recorded
    not_ok = stats[stats["status"] != "ok"]
    manifest = {
        "name": cfg.name,
        "config": to_dict(cfg),
        "counts": {
            "input_rows": n_rows,
            "shards": n_shards,
            "samples": int(sum(sizes.values())),
            **{f"status_{k}": int(v) for k, v in stats["status"].value_counts().items()},
        },
        "stages": {f"{status}_{stage or 'other'}": int(v)
                   for (status, stage), v in not_ok.groupby(["status", "stage"]).size().items()},
        **caption_audit(stats),
        **caption_usage(stats),
        "sha256": {n: sh.file_sha256(out / "shards" / n) for n in names},
        "versions": package_versions(),
        "git_hash": git_hash(),
        "build_seconds_last_run": round(seconds, 3),
    }
    _write_json(out / "manifest.json", manifest)
    return manifest


def caption_audit(stats: pd.DataFrame) -> dict:
    """{"caption_audit": ...} for corpora whose captioner counted what each caption names (web captions):
    the share of the scenes' objects named (at all, and with colour, shape and size) and words per caption."""
    if "objects_named" not in stats:
        return {}
    ok = stats[(stats["status"] == "ok") & (stats["objects"] > 0)]
    objects = max(1, int(ok["objects"].sum()))
    return {"caption_audit": {
        "objects_named": round(float(ok["objects_named"].sum()) / objects, 4),
        "objects_named_full": round(float(ok["objects_named_full"].sum()) / objects, 4),
        "words_per_caption": round(float(ok["caption_words"].mean()), 2) if len(ok) else 0.0,
        "samples": int(len(ok))}}


def caption_usage(stats: pd.DataFrame) -> dict:
    """{"caption_usage": ...} for corpora captioned by a server (openai): tokens, latency and retries of the
    rows sent (this build's rows; a resumed build counts the finished shards' rows from their stats parts)."""
    if "caption_latency_s" not in stats:
        return {}
    sent = stats[stats["caption_attempts"] >= 0]
    lat = sent["caption_latency_s"].astype(float)
    return {"caption_usage": {
        "requests": int(len(sent)),
        "failed": int((sent["status"] != "ok").sum()),
        "truncated": int(sent["caption_truncated"].astype(bool).sum()),
        "attempts": int(sent["caption_attempts"].sum()),
        "prompt_tokens": int(sent["caption_prompt_tokens"].clip(lower=0).sum()),
        "completion_tokens": int(sent["caption_completion_tokens"].clip(lower=0).sum()),
        "latency_s_mean": round(float(lat.mean()), 4) if len(sent) else 0.0,
        "latency_s_p50": round(float(lat.quantile(0.5)), 4) if len(sent) else 0.0,
        "latency_s_p95": round(float(lat.quantile(0.95)), 4) if len(sent) else 0.0}}


def build_notes(manifest: dict) -> list[str]:
    """The lines `uae build-corpus` prints after its summary: web captions' audit, a served captioner's usage."""
    return ([audit_text(manifest)] if "caption_audit" in manifest else []) + \
        ([usage_text(manifest)] if "caption_usage" in manifest else [])


def usage_text(manifest: dict) -> str:
    """A served captioner's usage (manifest caption_usage) as one line for users."""
    u = manifest["caption_usage"]
    return (f"captioning: {u['requests']} requests ({u['attempts']} attempts, {u['failed']} failed, {u['truncated']} "
            f"cut at max_tokens), {u['prompt_tokens']} + {u['completion_tokens']} tokens, latency p50 "
            f"{u['latency_s_p50']:.2f}s p95 {u['latency_s_p95']:.2f}s")


def audit_text(manifest: dict) -> str:
    """The caption audit of a built corpus as one line for users."""
    a = manifest["caption_audit"]
    return (f"caption audit: {a['objects_named']:.1%} of objects named ({a['objects_named_full']:.1%} with colour, "
            f"shape and size), {a['words_per_caption']:.1f} words per caption")


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
