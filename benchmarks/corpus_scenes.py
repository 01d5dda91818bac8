"""Scene-corpus throughput: samples/s per core for sample+render+caption+write at 64x64.

Two measurements in one run, on one core (workers=1), same samples:
  raw      - a bare loop: sample, render, caption, phash, PNG-encode, webdataset.TarWriter
  pipeline - uae_data.pipeline.build (adds stats parquet, sha256, manifest, atomic renames)
The ratio pipeline/raw is the cost of our bookkeeping; per-stage times show where the time goes.

Usage: python benchmarks/corpus_scenes.py [--n 5000] [--size 64]
"""
from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import imagehash
import numpy as np
import webdataset as wds

from uae_data import scenes
from uae_data import shards as sh
from uae_data.config import load_config
from uae_data.pipeline import CorpusConfig, build
from uae_data.sources.scenes import item_rng

ROOT = Path(__file__).resolve().parents[1]


def raw_loop(n: int, size: int) -> tuple[float, dict[str, float]]:
    stage = dict.fromkeys(["sample", "render", "caption", "phash", "encode", "tar"], 0.0)
    buf = io.BytesIO()
    writer = wds.TarWriter(buf, mtime=0.0, encoder=False)
    t_all = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        spec = scenes.sample_scene(item_rng(0, i))
        t1 = time.perf_counter()
        image = scenes.render(spec, size)
        t2 = time.perf_counter()
        text = scenes.write_caption(spec, np.random.default_rng([0, i, 1]))
        t3 = time.perf_counter()
        ph = str(imagehash.phash(image))
        t4 = time.perf_counter()
        png = sh.encode_image(image)
        t5 = time.perf_counter()
        writer.write({"__key__": sh.sample_key(i), "png": png, "txt": text.encode(), "json": ph.encode()})
        t6 = time.perf_counter()
        for k, a, b in zip(stage, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)):
            stage[k] += b - a
    return time.perf_counter() - t_all, stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    raw_loop(200, args.size)  # warm-up (imports, scipy DCT plans)
    raw_s, stage = raw_loop(args.n, args.size)
    cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml",
                      [f"limit={args.n}", f"image_size={args.size}"], kind="corpus")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build(cfg, Path(tmp) / "c", workers=1)
        pipe_s = time.perf_counter() - t
    print(f"scene corpus, {args.n} samples at {args.size}x{args.size}, one core")
    print(f"  raw loop : {args.n / raw_s:8.0f} samples/s/core")
    print(f"  pipeline : {args.n / pipe_s:8.0f} samples/s/core   (pipeline/raw time ratio {pipe_s / raw_s:.2f})")
    print("  per stage (raw loop), microseconds per sample:")
    for k, v in stage.items():
        print(f"    {k:8s} {v / args.n * 1e6:7.0f} us  ({v / raw_s:5.1%})")


if __name__ == "__main__":
    main()
