"""URL-corpus overhead: our `urls` build vs a bare img2dataset call, same local fixture, same options.

A fixture of real photos (scikit-image's bundled data, cropped and flipped into N distinct images)
is served on 127.0.0.1 by http.server in a thread. Both legs download the same URL list with the
same img2dataset options (webdataset output, image_size, resize_mode, jpg, shard size, processes,
threads); ours adds the input snapshot, the stats/shard/manifest bookkeeping, pHash of every image
and the atomic rewrite of the shards (captioner keep, filters off). One run each; the ratio
ours/bare is the overhead (goal: <= 1.10).

Usage: python benchmarks/corpus_urls.py [--n 400] [--size 256] [--threads 16]
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "horse", "camera", "immunohistochemistry")


def make_fixture(folder: Path, n: int) -> list[str]:
    """n distinct JPEGs (random crops/flips of real photos, 256-512 px); returns their file names."""
    import numpy as np
    import skimage.data
    from PIL import Image, ImageOps

    rng = np.random.default_rng(0)
    bases = []
    for name in PHOTOS:
        try:
            bases.append(Image.fromarray(getattr(skimage.data, name)()).convert("RGB"))
        except Exception:  # some skimage photos need pooch downloads; use the bundled ones only
            continue
    names = []
    for i in range(n):
        im = bases[i % len(bases)]
        w, h = im.size
        cw, ch = int(rng.integers(w // 2, w + 1)), int(rng.integers(h // 2, h + 1))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch))
        crop = ImageOps.mirror(crop) if i % 2 else crop
        buf = io.BytesIO()
        crop.save(buf, format="JPEG", quality=90)
        (folder / f"p{i:05d}.jpg").write_bytes(buf.getvalue())
        names.append(f"p{i:05d}.jpg")
    return names


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """http://127.0.0.1:PORT serving `folder` from a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    import pandas as pd
    from img2dataset import download

    from uae_data.core.config import load_config
    from uae_data.corpus_config import CorpusConfig
    from uae_data.pipeline import build

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--shard-size", type=int, default=100)
    args = ap.parse_args()
    opts = {"resize_mode": "border", "processes_count": 1, "thread_count": args.threads, "timeout": 10}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "www").mkdir()
        names = make_fixture(tmp / "www", args.n)
        with serve(tmp / "www") as base:
            table = tmp / "urls.parquet"
            pd.DataFrame({"url": [f"{base}/{x}" for x in names], "caption": [f"photo {x}" for x in names]}).to_parquet(table)
            t = time.perf_counter()
            download(url_list=str(table), output_folder=str(tmp / "bare"), output_format="webdataset",
                     input_format="parquet", url_col="url", caption_col="caption", image_size=args.size,
                     encode_format="jpg", number_sample_per_shard=args.shard_size, **opts)
            bare_s = time.perf_counter() - t
            over = ["source.name=urls", f"source.input={table}", "captioner.name=keep", f"image_size={args.size}",
                    "image_format=jpg", f"shard_size={args.shard_size}", "filters.min_side=0", "filters.max_aspect=null",
                    "filters.dedup_threshold=null", *[f"source.options.{k}={v}" for k, v in opts.items()]]
            cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/urls-example.yaml", over, kind="corpus")
            t = time.perf_counter()
            manifest = build(cfg, tmp / "ours", workers=1)
            ours_s = time.perf_counter() - t
        bare_ok = sum(1 for p in (tmp / "bare").glob("*.jpg")) or sum(
            int(pd.read_parquet(p)["status"].eq("success").sum()) for p in (tmp / "bare").glob("*.parquet"))
    c = manifest["counts"]
    print(f"url corpus, {args.n} photos served on 127.0.0.1, image_size {args.size}, jpg, resize_mode border, "
          f"1 process x {args.threads} threads, shards of {args.shard_size}; one run each, {os.cpu_count()} cores (shared)")
    print(f"  bare img2dataset : {bare_s:7.2f} s  ({bare_ok} ok)")
    print(f"  uae build        : {ours_s:7.2f} s  ({c['samples']} ok of {c['input_rows']} rows)")
    print(f"  ratio uae/bare   : {ours_s / bare_s:7.3f}   (overhead {100 * (ours_s / bare_s - 1):+.1f}%; goal <= +10%)")


if __name__ == "__main__":
    main()
