"""The demo's headline rows: each metric before → after with seeds' statistics, controls and chance beside it.

Stage 1 (encoder rewarded by reconstruction) should raise understanding: scene-captions cell attributes,
MMT-scene caption-reader and recon scene F1 (stage-1 encoder, pretrained decoder). Stage 2 (decoder
policy) should raise generation: GenEval-scene. A control sits beside each: the constant-reward run of
the same stage (should not move), the blind encoder (what a caption prior alone scores), object-free
images and random scenes on GenEval (what a detector gives away), and chance.
"""
from __future__ import annotations

import json
from pathlib import Path

from uae_train.demo.stats import paired_gain, row

MMT_CHANCE = 0.25  # four options per question


def _metric(folder: Path, name: str | None = None) -> float | None:
    p = folder / "results.json"
    if not p.exists():
        return None
    data = json.loads(p.read_text())
    return float(data["metrics"][name or data["primary_metric"]])


def _reliance(folder: Path) -> float | None:
    p = folder / "caption_reliance.json"
    return float(json.loads(p.read_text())["relative_gain"]) if p.exists() else None


def seed_root(out: Path, k: int) -> Path:
    """Seed 0's runs sit in the demo folder itself, seed k's in seed-<k>/."""
    return out if k == 0 else out / f"seed-{k}"


def _per_seed(out: Path, seeds: int, label: str, bench: str, name: str | None = None) -> list[float]:
    vals = [_metric(seed_root(out, k) / "eval" / label / bench, name) for k in range(seeds)]
    return [v for v in vals if v is not None]


def headline_rows(out: Path, seeds: int, controls: bool = True) -> list[dict]:
    ev = out / "eval"
    rows: list[dict] = []

    def add(metric: str, stage: str, unit: str, bench: str, name: str | None, after_label: str,
            control_label: str | None, chance: float | None = None, extra: list[dict] | None = None) -> None:
        before = _metric(ev / "pretrain" / bench, name)
        after = _per_seed(out, seeds, after_label, bench, name)
        if before is None or not after:
            return
        ctrl = list(extra or [])
        if controls and control_label:
            for suffix, title in (("shuffled", "shuffled-image reward"), ("constant", "constant reward")):
                c_after = _per_seed(out, seeds, control_label.replace("constant", suffix), bench, name)
                if c_after:
                    ctrl.insert(0, {"name": title, "gain": paired_gain(before, c_after)})
        rows.append(row(metric, stage, unit, before, after, chance=chance, controls=ctrl))

    blind_caps = _metric(ev / "blind-encoder" / "scene-captions")
    blind_mmt = _metric(ev / "blind-encoder" / "mmt-bench")
    from uae_eval.scene_captions import chance as caption_chance

    add("encoder cell attributes (scene-captions)", "stage 1", "accuracy", "scene-captions", None, "unified-grpo",
        "stage1-constant", caption_chance()["cell_attributes"],
        [{"name": "blind encoder", "value": blind_caps}] if blind_caps is not None else None)
    add("MMT-scene caption-reader", "stage 1", "accuracy", "mmt-bench", None, "unified-grpo", "stage1-constant",
        MMT_CHANCE, [{"name": "blind encoder", "value": blind_mmt}] if blind_mmt is not None else None)
    add("recon scene F1 (stage-1 encoder, pretrained decoder)", "stage 1", "F1", "recon", "scene", "stage1",
        "stage1-constant")
    noise, rand = _metric(ev / "noise" / "geneval"), _metric(ev / "random" / "geneval")
    baselines = ([{"name": "object-free images", "value": noise}] if noise is not None else []) + \
                ([{"name": "random scenes", "value": rand}] if rand is not None else [])
    add("GenEval-scene overall", "stage 2", "score", "geneval", None, "unified-grpo", "stage2-constant",
        extra=baselines)
    baselines = [{"name": title, "value": v} for title, v in (("object-free images", _metric(ev / "noise" / "dpg-bench")),
                                                              ("random scenes", _metric(ev / "random" / "dpg-bench")))
                 if v is not None]
    add("Scene-DPG overall (0-100)", "stage 2", "score", "dpg-bench", None, "unified-grpo", "stage2-constant",
        extra=baselines)
    for stage, name in (("stage 1", "s1"), ("stage 2", "s2")):
        runs = [seed_root(out, k) / name / "results" for k in range(seeds)]
        start = [_metric(r, "heldout_reward/start") for r in runs]
        end = [_metric(r, "heldout_reward/end") for r in runs]
        if start and None not in start and None not in end:
            shuffled = [seed_root(out, k) / f"{name}-shuffled" / "results" for k in range(seeds)]
            s_start = [_metric(r, "heldout_reward/start") for r in shuffled]
            s_end = [_metric(r, "heldout_reward/end") for r in shuffled]
            ctrl = ([{"name": "shuffled-image reward", "gain": paired_gain(s_start, s_end)}]
                    if s_start and None not in s_start and None not in s_end else [])
            rows.append(row(f"{stage} held-out reward (scene-soft of the repainting, start → end)", stage, "reward",
                            start, end, controls=ctrl))
    before = _reliance(ev / "pretrain")
    after = [v for v in (_reliance(seed_root(out, k) / "eval" / "unified-grpo")
                         for k in range(seeds)) if v is not None]
    if before is not None and after:
        rows.append(row("decoder caption reliance (shuffled − true caption loss, relative)", "both", "relative",
                        before, after, chance=0.0))
    return rows
