"""`--engine ray`: loading as Ray tasks, CLIP scoring and recaptioning as Ray Data actor pools.

Why Ray Data here (facts/corpus.md §6): `map_batches` with a callable class keeps one model per
actor and streams batches through it, one actor per GPU (or one on CPU), so recaptioning scales
over a cluster while this driver only groups finished rows by shard and writes each shard
atomically as soon as all its rows are back (resume works exactly as with the local engine).
Uses the Ray cluster already initialised (or RAY_ADDRESS), else starts a local one.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterator

import pandas as pd

from uae_data.captioners import Caption, build_captioner
from uae_data.core.config import from_dict, to_dict
from uae_data.corpus_config import CorpusConfig
from uae_data.stages import (ShardResult, apply_clip, item_to_row, load_shard, row_to_item, shard_range,
                             write_shard_outputs)


def _cfg(cfg_dict: dict) -> CorpusConfig:
    return from_dict(CorpusConfig, cfg_dict)


def load_rows(cfg_dict: dict, n_rows: int, out: str, row: dict) -> list[dict]:
    """Ray task body: one shard id -> its rows (source + size filters + dedup), as plain dicts."""
    cfg = _cfg(cfg_dict)
    k = int(row["shard"])
    return [item_to_row(k, it, cfg.image_format) for it in load_shard(cfg, k, n_rows, Path(out))]


class ClipActor:
    """Actor: one open_clip model; scores the ok rows of each batch, drops those under min_score."""

    def __init__(self, cfg_dict: dict) -> None:
        from uae_data.clip_score import ClipScorer

        self.cfg = _cfg(cfg_dict)
        self.scorer = ClipScorer(self.cfg.filters.clip)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        items = [row_to_item(r) for r in batch.to_dict("records")]
        apply_clip(self.cfg, self.scorer, items)
        batch = batch.copy()
        batch["status"] = [it.status for it in items]
        batch["reason"] = [it.reason for it in items]
        batch["meta"] = [json.dumps({**json.loads(m), **{k: v for k, v in it.meta.items() if k != "scene"}})
                         for m, it in zip(batch["meta"], items)]
        return batch


class CaptionActor:
    """Actor: one captioner (e.g. a VLM on one GPU); writes caption columns for the ok rows of a batch."""

    def __init__(self, cfg_dict: dict) -> None:
        self.cfg = _cfg(cfg_dict)
        self.captioner = build_captioner(self.cfg.captioner, self.cfg.seed)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        batch = batch.copy()
        records = batch.to_dict("records")
        ok = [i for i, r in enumerate(records) if r["status"] == "ok"]
        caps = self.captioner([row_to_item(records[i]) for i in ok]) if ok else []
        text, model, trunc = [None] * len(records), [None] * len(records), [False] * len(records)
        error, stats = [None] * len(records), ["{}"] * len(records)
        for i, c in zip(ok, caps):
            text[i], model[i], trunc[i], error[i], stats[i] = c.text, c.model, bool(c.truncated), c.error, json.dumps(c.stats)
        batch["cap_text"], batch["cap_model"], batch["cap_truncated"] = text, model, trunc
        batch["cap_error"], batch["cap_stats"] = error, stats
        return batch


def _resources() -> dict:
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0))
    return {"num_gpus": 1, "concurrency": gpus} if gpus else {"num_cpus": 1, "concurrency": 1}


def build_shards_ray(cfg: CorpusConfig, out: Path, todo: list[int], n_rows: int) -> Iterator[ShardResult]:
    """Build the shards in `todo` on Ray; yields each ShardResult once its shard is written."""
    import ray

    if not todo:
        return
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    cfg_dict = to_dict(cfg)
    ds = ray.data.from_items([{"shard": k} for k in todo], override_num_blocks=len(todo))
    ds = ds.flat_map(functools.partial(load_rows, cfg_dict, n_rows, str(out)), num_cpus=0.5)
    model_res = _resources()
    if cfg.filters.clip.model:
        ds = ds.map_batches(ClipActor, fn_constructor_kwargs={"cfg_dict": cfg_dict}, batch_size=cfg.filters.clip.batch_size,
                            batch_format="pandas", **model_res)
    cap = cfg.captioner
    if cap.name == "openai":  # a served captioner needs no GPU here, and a batch as large as its requests in flight
        ds = ds.map_batches(CaptionActor, fn_constructor_kwargs={"cfg_dict": cfg_dict}, num_cpus=1, concurrency=1,
                            batch_size=max(cap.batch_size, cap.concurrency), batch_format="pandas")
    else:
        ds = ds.map_batches(CaptionActor, fn_constructor_kwargs={"cfg_dict": cfg_dict}, batch_size=cap.batch_size,
                            batch_format="pandas", **model_res)
    expected = {k: len(range(*shard_range(cfg, k, n_rows))) for k in todo}
    pending: dict[int, list[dict]] = {}
    for row in ds.iter_rows():
        k = int(row["shard"])
        pending.setdefault(k, []).append(row)
        if len(pending[k]) == expected[k]:
            rows = sorted(pending.pop(k), key=lambda r: int(r["index"]))
            items = [row_to_item(r) for r in rows]
            caps = [Caption(r["cap_text"], r["cap_model"], bool(r["cap_truncated"]), error=r["cap_error"] or None,
                            stats=json.loads(r["cap_stats"] or "{}")) for r in rows if r["status"] == "ok"]
            yield write_shard_outputs(cfg, k, items, caps, out)
    if pending:
        raise RuntimeError(f"ray engine: shards {sorted(pending)} came back incomplete")
