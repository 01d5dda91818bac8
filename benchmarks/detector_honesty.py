"""Detector honesty: object-free images must score ~0 on GenEval-scene and on scene-soft similarity.

For each object-free family of the `noise` generator (uae_eval.geneval.generators.NOISE_FAMILIES) it runs
GenEval-scene (manifests/eval/geneval-scene.yaml: official rules, scene detector, exact colour) and prints
overall and per-tag accuracy, plus the mean scene-soft similarity of N family images against N seeded real
scenes (uae_data.scenes.sample_scene). The `oracle` (exact renders) and `random` (renders of random scenes)
generators are the ceiling and floor for comparison. An honest detector gives every family <= 0.02.

Usage: python benchmarks/detector_honesty.py [--limit N] [--images-per-prompt 4] [--n-soft 200] [--size 64]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from uae_data.core.config import load_config
from uae_data.scenes import render, sample_scene
from uae_eval.geneval.generators import NOISE_FAMILIES, build_generator
from uae_eval.geneval.harness import GenEvalConfig, run
from uae_eval.geneval.prompts import GENEVAL_TAGS
from uae_eval.metrics.scene import SceneSoft

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "eval" / "geneval-scene.yaml"


def geneval(generator: str, options: dict, args: argparse.Namespace, tmp: Path) -> dict:
    overrides = [f"generator={generator}", f"images_per_prompt={args.images_per_prompt}", f"image_size={args.size}",
                 "save_images=false"] + [f"limit={args.limit}"] * (args.limit is not None)
    cfg = load_config(GenEvalConfig, MANIFEST, overrides, kind="geneval")
    cfg.generator_options = dict(options)
    return run(cfg, tmp / f"{generator}-{options.get('family', '')}").metrics


def soft(generator: str, options: dict, n: int, size: int) -> float:
    """Mean scene-soft of n images against n real seeded scenes: noise images (seeds 0..n-1), the scenes'
    own renders (oracle) or renders of other random scenes (random)."""
    seeds = list(range(n))
    scenes = [sample_scene(10_000 + s) for s in seeds]
    if generator == "noise":
        images = build_generator(generator, image_size=size, **options)([{"prompt": ""}] * n, seeds)
    elif generator == "oracle":
        images = [render(s, size) for s in scenes]
    else:
        images = [render(sample_scene(s), size) for s in seeds]
    return float(np.mean(SceneSoft().score_specs(scenes, images)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=None, help="first N prompts only (default: all 553)")
    ap.add_argument("--images-per-prompt", type=int, default=4)
    ap.add_argument("--n-soft", type=int, default=200, help="images for the scene-soft column")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--only", nargs="*", default=None, help="rows to run (family names, oracle, random)")
    args = ap.parse_args()
    rows = [("oracle", "oracle", {}), ("random", "random", {})] + [(f, "noise", {"family": f}) for f in NOISE_FAMILIES]
    if args.only:
        rows = [r for r in rows if r[0] in args.only]
    tags = list(GENEVAL_TAGS)
    print(f"GenEval-scene ({MANIFEST.relative_to(ROOT)}), {args.limit or 'all'} prompts x {args.images_per_prompt} "
          f"images at {args.size} px; scene-soft: mean over {args.n_soft} images vs seeded real scenes")
    print(f"{'row':<10} {'overall':>8} " + " ".join(f"{t:>13}" for t in tags) + f" {'scene-soft':>10} {'max':>6} {'s':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, generator, options in rows:
            t = time.perf_counter()
            m = geneval(generator, options, args, Path(tmp))
            s = soft(generator, options, args.n_soft, args.size)
            worst = max(m[k] for k in ["overall", *tags]) if generator == "noise" else float("nan")
            print(f"{name:<10} {m['overall']:>8.4f} " + " ".join(f"{m[k]:>13.4f}" for k in tags)
                  + f" {s:>10.4f} {worst:>6.3f} {time.perf_counter() - t:>5.1f}", flush=True)


if __name__ == "__main__":
    main()
