"""The statistics a reconstruction run reports, shared by the generating run (recon.run) and folder mode
(recon_folder): per-image values -> mean_of metric, means with bootstrap CIs, samples ranked worst first."""
from __future__ import annotations

from typing import Any

import numpy as np


def bootstrap_ci(values, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean. Infinite values stay infinite (no interpolation: lower/higher
    order statistics), so an all-inf PSNR run gets (inf, inf) rather than NaN."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_resamples, v.size))
    with np.errstate(invalid="ignore"):
        means = np.sort(v[idx].mean(axis=1))
    a = (1 - level) / 2
    return (float(np.quantile(means, a, method="lower")), float(np.quantile(means, 1 - a, method="higher")))


def aggregate(cfg: Any, values: dict[str, np.ndarray], higher: dict[str, bool]) -> dict:
    """From {metric: (n, k) values} and each metric's direction: the mean_of metric added (first), per-image
    means over k, the summary (mean, CI low/high per metric), per-key directions and the primary metric."""
    higher = dict(higher)
    if cfg.mean_of:
        if len({higher[name] for name in cfg.mean_of}) > 1:
            raise ValueError(f"mean_of mixes higher- and lower-is-better metrics: {cfg.mean_of}")
        values = {cfg.mean_name: np.mean([values[name] for name in cfg.mean_of], axis=0), **values}
        higher[cfg.mean_name] = higher[cfg.mean_of[0]]
    per_image = {name: v.mean(axis=1) for name, v in values.items()}
    summary: dict[str, float] = {}
    directions: dict[str, bool] = {}
    for name, v in per_image.items():
        lo, hi = bootstrap_ci(v, cfg.bootstrap, cfg.seed)
        summary[name], summary[f"{name}_ci_low"], summary[f"{name}_ci_high"] = float(v.mean()), lo, hi
        for key in (name, f"{name}_ci_low", f"{name}_ci_high"):
            directions[key] = higher[name]
    primary = cfg.mean_name if cfg.mean_of else cfg.metrics[0]
    return {"values": values, "per_image": per_image, "summary": summary, "directions": directions,
            "higher": higher, "primary": primary}


def rank_worst_first(samples: list[dict], primary: str, higher_is_better: bool) -> list[dict]:
    """Sort samples worst first by the primary metric (stable: ties keep data order) and number them."""
    sign = 1.0 if higher_is_better else -1.0
    samples.sort(key=lambda s: sign * s["metrics"][primary])
    for rank, s in enumerate(samples):
        s["rank_worst_first"] = rank
    return samples
