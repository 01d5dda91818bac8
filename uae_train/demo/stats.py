"""Seed statistics for the demo's headline: mean ± sd over seeds and the paired gain's 95% CI.

The pretrained models are the same for every seed, and each eval is seeded, so "before" is one number;
each RL seed gives one "after". The paired gain of seed k is after_k − before, and its 95% CI is the
t-interval over seeds (scipy-free: the few t quantiles a demo needs are tabulated below). With one seed
there is no sd and no CI, and the report says so.
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence

# two-sided 95% Student t quantiles t_{0.975, df}
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
         15: 2.131, 20: 2.086, 30: 2.042}


def t975(df: int) -> float:
    if df < 1:
        raise ValueError("a t interval needs at least 2 values")
    key = max(k for k in _T975 if k <= df)
    return _T975[key] if df <= 30 else 1.96


def summary(values: Sequence[float]) -> dict:
    """{"mean", "sd" (None for one value), "n", "values"}."""
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("no values to summarise")
    return {"mean": statistics.fmean(vals), "sd": statistics.stdev(vals) if len(vals) > 1 else None,
            "n": len(vals), "values": vals}


def paired_gain(before: Sequence[float] | float, after: Sequence[float]) -> dict:
    """Gain after − before per seed (before: one shared value or one per seed) with its 95% t CI."""
    after = [float(a) for a in after]
    before_list = [float(before)] * len(after) if isinstance(before, (int, float)) else [float(b) for b in before]
    if len(before_list) != len(after):
        raise ValueError(f"{len(before_list)} before values for {len(after)} after values")
    gains = [a - b for a, b in zip(after, before_list)]
    out = summary(gains)
    if len(gains) > 1:
        half = t975(len(gains) - 1) * out["sd"] / math.sqrt(len(gains))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    else:
        out["ci95"] = None
    return out


def row(metric: str, stage: str, unit: str, before: Sequence[float] | float, after: Sequence[float],
        chance: float | None = None, controls: list[dict] | None = None, higher_is_better: bool = True) -> dict:
    """One headline row in the report's format (uae_eval/report_headline.py)."""
    before_vals = [float(before)] if isinstance(before, (int, float)) else list(before)
    return {"metric": metric, "stage": stage, "unit": unit, "higher_is_better": higher_is_better,
            "before": summary(before_vals), "after": summary(after), "gain": paired_gain(before, after),
            "chance": chance, "controls": controls or []}
