"""Folder mode of the reconstruction benchmark: score reconstructions someone already made against their
references, paired exactly as Unified-Bench's released Score_i2i.py pairs them, and write the result in
that script's JSON shape too.

Pairing (Score_i2i.py): every file under the reconstruction folder, recursively, whose suffix is one of
.jpg .jpeg .png .bmp .tiff .webp (any case), in sorted path order, is matched against the reference folder's
files (found the same way, sorted): first a reference with the same basename; failing that, the first
reference whose stem equals the file's stem or, with `recon_` put before it, the file's stem. Images are
opened as `Image.open(path).convert("RGB")` (no EXIF rotation), as their scorers do.

Where uae is stricter: their script scores an unmatched or unreadable image as None and leaves it out of
the mean without saying so; here it is refused in one line naming the file, unless `allow_partial`, which
scores the rest and records how many were dropped and which (results say partial: true). Two
reconstructions with one basename are refused: their output is keyed by basename and would keep only one.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from uae_data.core.errors import ConfigError, InputError

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tiff", ".webp"}  # Score_i2i.py's supported_extensions
THEIR_NAMES = {"clip-hf": "clip", "clip": "clip", "dino": "dinov2"}  # uae metric -> Score_i2i.py model type
CHUNK = 32  # pairs held in memory at once


def image_files(folder: str | Path) -> list[str]:
    """Score_i2i.py's _get_image_files: every file below `folder` with a supported suffix, sorted as strings."""
    return sorted(str(p) for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def find_reference(name: str, references: list[str]) -> str | None:
    """Score_i2i.py's _find_corresponding_image: basename, then stem or `recon_` + reference stem."""
    for ref in references:
        if os.path.basename(ref) == name:
            return ref
    stem = os.path.splitext(name)[0]
    for ref in references:
        ref_stem = os.path.splitext(os.path.basename(ref))[0]
        if ref_stem == stem or stem == "recon_" + ref_stem:
            return ref
    return None


def pair_folders(reconstructions: str | Path, references: str | Path) -> list[tuple[str, str | None]]:
    """[(reconstruction, its reference or None)] in Score_i2i.py's order; refuses missing folders and two
    reconstructions that share a basename."""
    for folder, what in ((reconstructions, "reconstructions"), (references, "data (the reference images)")):
        if not Path(folder).is_dir():
            raise InputError(f"{folder}: {what} folder not found")
    generated, refs = image_files(reconstructions), image_files(references)
    if not generated:
        raise InputError(f"{reconstructions}: no images ({', '.join(sorted(SUFFIXES))}) to score")
    seen: dict[str, str] = {}
    for path in generated:
        name = os.path.basename(path)
        if name in seen:
            raise InputError(f"{path} and {seen[name]} share the name {name!r}; results are keyed by file name "
                             f"(as Score_i2i.py's), so give each reconstruction its own name")
        seen[name] = path
    return [(path, find_reference(os.path.basename(path), refs)) for path in generated]


def open_rgb(path: str) -> Image.Image:
    """The image as their scorers read it: Image.open(path).convert('RGB'), fully decoded."""
    with Image.open(path) as im:
        return im.convert("RGB")


def drop(dropped: list[dict], key: str, path: str, reason: str, allow_partial: bool) -> None:
    """Record the reconstruction `key` as left out because of `path`, or refuse it in one line when partial
    results are not allowed."""
    if not allow_partial:
        raise InputError(f"{path}: {reason}; fix it, or pass --allow-partial (allow_partial=true) to score the "
                         f"other images, marked partial")
    dropped.append({"key": key, "file": str(path), "reason": reason})


def check_folder_config(cfg: Any) -> None:
    """Folder mode has no captions and one reconstruction per image: settings that need either are refused."""
    if cfg.images_per_caption != 1:
        raise ConfigError("reconstructions= scores one image per reference; images_per_caption must be 1")
    if cfg.shuffle_captions:
        raise ConfigError("reconstructions= has no captions to shuffle; drop shuffle_captions")


def load_pairs(cfg: Any) -> tuple[list[dict], list[dict]]:
    """([{key, file, reference}] of matched pairs, [dropped unmatched]) for cfg.reconstructions / cfg.data;
    `limit` keeps the first N reconstructions."""
    pairs, dropped = [], []
    for path, ref in pair_folders(cfg.reconstructions, cfg.data)[:cfg.limit or None]:
        key = os.path.basename(path)
        if ref is None:
            drop(dropped, key, path, f"no reference image in {cfg.data} with this name, stem or recon_ + stem",
                 cfg.allow_partial)
        else:
            pairs.append({"key": key, "file": path, "reference": ref})
    return pairs, dropped


def score_pairs(cfg: Any, pairs: list[dict], metrics: dict, dropped: list[dict]) -> tuple[list[dict], dict]:
    """Score pairs CHUNK at a time; returns (the pairs that scored, {metric: (n, 1) values}). An unreadable
    image is dropped (allow_partial) or refused by name."""
    kept: list[dict] = []
    values: dict[str, list[float]] = {name: [] for name in metrics}
    for start in range(0, len(pairs), CHUNK):
        chunk, recs, refs = [], [], []
        for p in pairs[start:start + CHUNK]:
            images = []
            for path, what in ((p["file"], "unreadable image"), (p["reference"], "unreadable reference image")):
                try:
                    images.append(open_rgb(path))
                except (OSError, ValueError) as e:
                    drop(dropped, p["key"], path, f"{what} ({e})", cfg.allow_partial)
                    break
            if len(images) == 2:
                chunk.append(p), recs.append(images[0]), refs.append(images[1])
        for name, metric in metrics.items():
            values[name] += [float(v) for v in metric(refs, recs)] if chunk else []
        kept += chunk
    return kept, {name: np.asarray(v, dtype=np.float64).reshape(-1, 1) for name, v in values.items()}


def score_i2i_doc(keys: list[str], values: dict[str, list[float | None]], mean_of: list[str]) -> dict:
    """Score_i2i.py's output JSON for the metrics in `mean_of` (their four backbones), under their model names:
    similarities_by_model {model: {file: cosine | None}}, statistics_by_model {model: total_images,
    valid_pairs, average_similarity, min_similarity, max_similarity}, summary (overall_average = the mean
    of the per-model averages, the Unified-Bench score; the paper prints it x100)."""
    names: dict[str, str] = {}
    for metric in mean_of:
        theirs = THEIR_NAMES.get(metric, metric)
        names[metric] = theirs if theirs not in names.values() else metric
    sims = {names[m]: dict(zip(keys, values[m])) for m in mean_of}
    stats, averages = {}, {}
    for model, scores in sims.items():
        valid = [v for v in scores.values() if v is not None]
        if valid:
            stats[model] = {"total_images": len(scores), "valid_pairs": len(valid),
                            "average_similarity": sum(valid) / len(valid), "min_similarity": min(valid),
                            "max_similarity": max(valid)}
            averages[model] = stats[model]["average_similarity"]
    summary = {}
    if averages:
        summary = {"models_used": list(averages), "average_scores_by_model": averages,
                   "overall_average": sum(averages.values()) / len(averages),
                   "best_model": list(max(averages.items(), key=lambda x: x[1])),
                   "worst_model": list(min(averages.items(), key=lambda x: x[1]))}
    return {"model_types": list(sims), "similarities_by_model": sims, "statistics_by_model": stats,
            "summary": summary}


def write_score_i2i(out: Path, doc: dict) -> Path:
    """OUT/score_i2i.json: the same object as Score_i2i.py's --output file, to diff against theirs."""
    import json

    from uae_data.core.io import atomic_write_text

    path = Path(out) / "score_i2i.json"
    atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False))
    return path


def run_folder(cfg: Any, out: Path, metrics: dict, model: dict | None = None):
    """Score cfg.reconstructions against cfg.data with the built `metrics` into `out`; returns the Results.
    Samples are keyed by the reconstruction's file name and name both files as found; `image` (with
    save_images) is a reference | reconstruction pair for the report's grid."""
    from uae_data import distributed
    from uae_data.core.config import to_dict
    from uae_eval.recon_stats import aggregate, rank_worst_first
    from uae_eval.results import Results, write_results

    pairs, dropped = load_pairs(cfg)
    order = {os.path.basename(f): i for i, (f, _) in enumerate(pair_folders(cfg.reconstructions, cfg.data))}  # theirs
    pairs, values = score_pairs(cfg, pairs, metrics, dropped)
    if not pairs:
        raise InputError(f"{cfg.reconstructions}: no image could be scored ({len(dropped)} dropped)")
    agg = aggregate(cfg, values, {name: bool(m.higher_is_better) for name, m in metrics.items()})
    per_image, primary = agg["per_image"], agg["primary"]
    out = Path(out)
    samples = []
    for i, p in enumerate(pairs):
        s = {"key": p["key"], "reconstruction_file": p["file"], "reference_file": p["reference"],
             "metrics": {name: float(per_image[name][i]) for name in agg["values"]}}
        if cfg.save_images:
            s["image"] = f"images/{i:05d}_pair.png"
        samples.append(s)
    rank_worst_first(samples, primary, agg["higher"][primary])
    doc = None
    if cfg.mean_of:  # their shape: every reconstruction, None where it was dropped
        scored = {p["key"]: i for i, p in enumerate(pairs)}
        keys = sorted([*scored, *(d["key"] for d in dropped)], key=lambda k: order[k])
        doc = score_i2i_doc(keys, {m: [float(per_image[m][scored[k]]) if k in scored else None for k in keys]
                                   for m in cfg.mean_of}, cfg.mean_of)
    completeness = {"partial": bool(dropped), "n_dropped": len(dropped), "dropped": dropped}
    res = Results(
        benchmark="recon", benchmark_version="recon-v1",
        model=model or {"name": Path(cfg.reconstructions).name or str(cfg.reconstructions),
                        "path": str(cfg.reconstructions), "config": {"kind": "reconstructions folder"}},
        metrics=agg["summary"], primary_metric=primary, higher_is_better=agg["higher"][primary],
        n_items=len(pairs), config=to_dict(cfg), metric_higher_is_better=agg["directions"],
        extra={"metrics": {name: m.provenance() for name, m in metrics.items()},
               **({"mean_of": {cfg.mean_name: list(cfg.mean_of)}} if cfg.mean_of else {}),
               "n_reconstructions": len(pairs), "folder_mode": True, **completeness,
               **({"score_i2i": doc} if doc else {})})
    if distributed.current().main:
        if cfg.save_images:
            save_pairs(out, pairs)
        write_results(out, res, samples)
        if doc:
            write_score_i2i(out, doc)
    return res


def save_pairs(out: Path, pairs: list[dict]) -> None:
    """OUT/images/NNNNN_pair.png: reference | reconstruction, the report's grid image."""
    folder = Path(out) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(pairs):
        pair_image(open_rgb(p["reference"]), open_rgb(p["file"])).save(folder / f"{i:05d}_pair.png")


def pair_image(a: Image.Image, b: Image.Image) -> Image.Image:
    """a | b side by side (b resized to a's size), with a 2-pixel white gap."""
    b = b.convert("RGB").resize(a.size) if b.size != a.size else b.convert("RGB")
    out = Image.new("RGB", (a.width * 2 + 2, a.height), (255, 255, 255))
    out.paste(a.convert("RGB"), (0, 0))
    out.paste(b, (a.width + 2, 0))
    return out
