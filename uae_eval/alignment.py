"""Per-layer image/text representation alignment (UniFork's analysis, facts/unified_grpo.md §4).

UniFork measures, layer by layer, how aligned a model's image-side and text-side representations of
paired samples are, with the mutual k-nearest-neighbour metric of the platonic-representation work
(minyoungg/platonic-rep metrics.py): L2-normalise each side, take every sample's top-k neighbours by dot
product (itself excluded), score = mean over samples of |N_A(i) ∩ N_B(i)| / k. CKNNA (the same paper's
kNN-restricted, unbiased-HSIC CKA) is offered too. Independent features score about k / (N − 1) (the
random baseline) under mutual kNN, identical ones 1.0.

This module never imports a model: `run` takes per-layer feature arrays for each task
(`{"understanding": {"image": [L arrays (N, D)], "text": [...]}, ...}`), or a callable returning them;
the CLI wires models through `uae_train.evaluation.layer_features`. UniFork's exact features and data are
unverified (facts §4); what each extractor pools is written in its docstring.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from uae_data.core.config import help_field, to_dict
from uae_data.core.errors import InputError
from uae_eval.benchmarks import Benchmark, MetricTables, register

BENCHMARK = "alignment"
BENCHMARK_VERSION = "platonic-rep-mknn@v1"
METRICS = ("mutual_knn", "cknna")

LayerFeatures = Mapping[str, Sequence]  # {"image": [L arrays (N, D)], "text": [L arrays (N, D')]}
TaskFeatures = Mapping[str, LayerFeatures]  # {task: LayerFeatures}


@dataclass
class AlignmentConfig:
    data: str = help_field("out/corpus", help="corpus folder of paired image + caption samples")
    limit: int = help_field(256, help="paired samples to use (the first N of the corpus)")
    skip: int = help_field(0, help="skip the first N samples (e.g. to hold out what a model trained on)")
    k: int = help_field(10, help="neighbours per sample (platonic-rep default 10)")
    metrics: list[str] = help_field(["mutual_knn", "cknna"], help="mutual_knn and/or cknna")
    controls: bool = help_field(True, help="also score each layer with the pairs permuted (should drop to ~k/(N-1))")
    timestep: float = help_field(0.5, help="generation direction: noise level t of the noised original image")
    image_size: int = help_field(64, help="images are resized to this side before the model sees them")
    batch_size: int = help_field(32, help="samples per forward pass")
    seed: int = help_field(0, help="seed of the noise (decoder) and of the permutation control")

    def validate(self) -> None:
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown or not self.metrics:
            raise ValueError(f"metrics must be some of {', '.join(METRICS)}; got {self.metrics}")
        if self.k < 2:
            raise ValueError(f"k must be >= 2 (CKNNA needs 2), got {self.k}")
        if self.limit <= self.k + 3:
            raise ValueError(f"limit must exceed k + 3 = {self.k + 3} samples, got {self.limit}")
        if not 0.0 <= self.timestep <= 1.0:
            raise ValueError(f"timestep must be in [0, 1], got {self.timestep}")


# ---------------------------------------------------------------- metrics (pure)

def _as_tensor(x) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().double().cpu()
    if t.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {tuple(t.shape)}")
    return t


def _check_pair(a: torch.Tensor, b: torch.Tensor, k: int) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"paired features differ in N: {a.shape[0]} vs {b.shape[0]}")
    if not 1 <= k < a.shape[0]:
        raise ValueError(f"k must be in 1..N-1 = {a.shape[0] - 1}, got {k}")


def knn_mask(feats, k: int) -> torch.Tensor:
    """(N, N) bool: row i marks the k nearest neighbours of sample i by dot product of L2-normalised
    features, sample i itself excluded (ties broken by index, as torch.topk does)."""
    x = F.normalize(_as_tensor(feats), dim=-1)
    sim = (x @ x.T).fill_diagonal_(float("-inf"))
    idx = torch.topk(sim, k, dim=1).indices
    return torch.zeros(sim.shape, dtype=torch.bool).scatter_(1, idx, True)


def mutual_knn(feats_a, feats_b, k: int = 10) -> float:
    """Mean over samples of |N_A(i) ∩ N_B(i)| / k (platonic-rep `mutual_knn`): 1 = same neighbourhoods."""
    a, b = _as_tensor(feats_a), _as_tensor(feats_b)
    _check_pair(a, b, k)
    return float((knn_mask(a, k) & knn_mask(b, k)).sum(1).double().div(k).mean())


def random_baseline(n: int, k: int) -> float:
    """Expected mutual kNN of independent features: k neighbours drawn from n − 1 candidates."""
    return k / (n - 1)


def _hsic_unbiased(K: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (Song et al. 2012, eq. 5), as platonic-rep computes it."""
    m = K.shape[0]
    Kt, Lt = K.clone().fill_diagonal_(0), L.clone().fill_diagonal_(0)
    value = ((Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * (Kt @ Lt).sum() / (m - 2))
    return value / (m * (m - 3))


def cknna(feats_a, feats_b, k: int = 10) -> float:
    """CKNNA (platonic-rep, unbiased): CKA with both kernels restricted to mutual k-NN pairs.

    Features are L2-normalised first (as platonic-rep's `measure` does before calling it); needs k >= 2, N > 3.
    """
    a, b = _as_tensor(feats_a), _as_tensor(feats_b)
    _check_pair(a, b, k)
    if k < 2 or a.shape[0] < 4:
        raise ValueError(f"CKNNA needs k >= 2 and N >= 4, got k={k}, N={a.shape[0]}")
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    K, L = a @ a.T, b @ b.T
    mask_k, mask_l = knn_mask(a, k).double(), knn_mask(b, k).double()

    def similarity(Km: torch.Tensor, Lm: torch.Tensor, mk: torch.Tensor, ml: torch.Tensor) -> torch.Tensor:
        mask = mk * ml
        return _hsic_unbiased(mask * Km, mask * Lm)

    kl = similarity(K, L, mask_k, mask_l)
    kk = similarity(K, K, mask_k, mask_k)
    ll = similarity(L, L, mask_l, mask_l)
    return float(kl / (torch.sqrt(kk * ll) + 1e-6))


METRIC_FNS: dict[str, Callable[..., float]] = {"mutual_knn": mutual_knn, "cknna": cknna}


def layer_scores(features: LayerFeatures, k: int, metrics: Sequence[str] = ("mutual_knn",),
                 permutation: np.ndarray | None = None) -> dict[str, list[float]]:
    """{metric: [score per layer]} of image vs text features; `permutation` re-pairs the text side
    (text[permutation[i]] with image[i]), the control that must drop toward the random baseline."""
    image, text = list(features["image"]), list(features["text"])
    if len(image) != len(text) or not image:
        raise ValueError(f"need the same, non-zero number of layers per side; got {len(image)} image, {len(text)} text")
    out: dict[str, list[float]] = {m: [] for m in metrics}
    for a, b in zip(image, text):
        b = _as_tensor(b)
        if permutation is not None:
            b = b[torch.as_tensor(permutation)]
        for m in metrics:
            out[m].append(METRIC_FNS[m](a, b, k))
    return out


# ---------------------------------------------------------------- harness

def _summaries(prefix: str, values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {f"{prefix}/mean": float(arr.mean()), f"{prefix}/last": float(arr[-1]), f"{prefix}/max": float(arr.max())}


def score_tasks(features: TaskFeatures, cfg: AlignmentConfig) -> tuple[dict[str, float], list[dict], dict]:
    """(metrics, per-layer sample records, curves) for every task; see `run` for the metric names."""
    metrics: dict[str, float] = {}
    samples: list[dict] = []
    curves: dict[str, dict] = {}
    rng = np.random.default_rng(cfg.seed)
    for task, feats in features.items():
        n = int(_as_tensor(feats["image"][0]).shape[0])
        if n <= cfg.k + 3:
            raise InputError(f"alignment: {task} has {n} paired samples; need more than k + 3 = {cfg.k + 3}")
        scores = layer_scores(feats, cfg.k, cfg.metrics)
        shuffled = (layer_scores(feats, cfg.k, ["mutual_knn"], permutation=rng.permutation(n))["mutual_knn"]
                    if cfg.controls else None)
        layers = list(range(len(feats["image"])))
        for m, values in scores.items():
            metrics |= {f"{task}/{m}/layer_{i:02d}": v for i, v in zip(layers, values)}
            metrics |= _summaries(f"{task}/{m}", values)
            curves[f"{task}: {m}"] = {"x": layers, "y": values, "xlabel": "layer (0 = embeddings)", "ylabel": m}
        if shuffled is not None:
            metrics |= _summaries(f"{task}/mutual_knn_shuffled_pairs", shuffled)
        for i in layers:
            rec = {"task": task, "layer": i, "n_pairs": n, **{m: scores[m][i] for m in scores}}
            if shuffled is not None:
                rec["mutual_knn_shuffled_pairs"] = shuffled[i]
            samples.append(rec)
    return metrics, samples, curves


def run(cfg: AlignmentConfig, out: str | Path, features: TaskFeatures | Callable[[], TaskFeatures],
        model: dict | None = None) -> "Results":
    """Score per-layer alignment into `out` (results.json + samples.jsonl, one record per task and layer).

    Metrics: `{task}/{metric}/layer_NN` (layer 0 = embeddings), `{task}/{metric}/{mean,last,max}` and, with
    controls, `{task}/mutual_knn_shuffled_pairs/{mean,last,max}`. The primary metric is the first task's
    mean `{metric}`. `extra` holds the random baseline k/(N−1) and curves the report draws (one line per run).
    """
    from uae_eval.results import Results, write_results

    feats = features() if callable(features) else features
    if not feats:
        raise InputError("alignment: no task features to score")
    metrics, samples, curves = score_tasks(feats, cfg)
    first = next(iter(feats))
    n = int(_as_tensor(feats[first]["image"][0]).shape[0])
    results = Results(
        benchmark=BENCHMARK, benchmark_version=BENCHMARK_VERSION,
        model=model or {"name": "features", "path": None, "config": {}},
        metrics=metrics, primary_metric=f"{first}/{cfg.metrics[0]}/mean", higher_is_better=True,
        n_items=n, config=to_dict(cfg),
        extra={"tasks": list(feats), "layers": {t: len(f["image"]) for t, f in feats.items()},
               "random_baseline_mutual_knn": random_baseline(n, cfg.k), "curves": curves},
    )
    write_results(Path(out), results, samples)
    return results


def alignment_tables(names: list[str]) -> MetricTables:
    """UniFork alignment: summaries first, then one per-layer table per task/metric (the curves come from
    extra["curves"], one line per run)."""
    head = [n for n in names if not n.rsplit("/", 1)[-1].startswith("layer_")]
    layers: dict[str, list[str]] = {}
    for n in names:
        if n not in head:
            layers.setdefault(n.rsplit("/", 1)[0], []).append(n)
    return [("alignment summary (mean / last / max over layers)", head)] + [(f"{k} per layer", v) for k, v in layers.items()]


def alignment_summary(res, out: Path) -> str:
    """Each task's mutual-kNN curve by layer, then the random baseline."""
    lines = []
    for task in res.extra["tasks"]:
        curve = "  ".join(f"{res.metrics[f'{task}/mutual_knn/layer_{i:02d}']:.3f}"
                          for i in range(res.extra["layers"][task]) if f"{task}/mutual_knn/layer_{i:02d}" in res.metrics)
        lines.append(f"alignment {task} ({res.model['name']}), mutual kNN by layer: {curve}")
    return "\n".join(lines + [f"random baseline k/(N-1) = {res.extra['random_baseline_mutual_knn']:.3f} "
                              f"over {res.n_items} pairs -> {out}"])


register(Benchmark(BENCHMARK, AlignmentConfig, run, help="Per-layer image/text representation alignment (UniFork)",
                   manifest="eval/alignment-scene.yaml", tables=alignment_tables, summary=alignment_summary))
