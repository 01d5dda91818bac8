"""Audit a scene corpus: every sample readable by plain webdataset, captions 40-150 words that parse
back to the stored spec, and the pixel detector's recovery rate on the stored images.

Usage: python tools/check_scene_corpus.py CORPUS_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import webdataset as wds

from uae_data import scene_detect, scenes
from uae_data.shards import list_shards


def main(corpus: str) -> int:
    urls = [str(p) for p in list_shards(Path(corpus))]
    n = words_ok = parse_ok = recovered = 0
    for s in wds.WebDataset(urls, shardshuffle=False).decode("pil"):
        spec = scenes.Scene.from_dict(s["json"]["scene"])
        n += 1
        words_ok += 40 <= len(s["txt"].split()) <= 150
        parse_ok += scenes.parse_caption(s["txt"]) == spec
        image = s["png"].convert("RGB")
        recovered += scene_detect.scene_recovered(spec, scene_detect.detect(image), image.width)
    print(f"samples read: {n}")
    print(f"captions with 40-150 words: {words_ok}/{n}")
    print(f"parse_caption(caption) == spec: {parse_ok}/{n}")
    print(f"detector recovers every object (shape, colour, IoU >= 0.8): {recovered}/{n} = {recovered / n:.4f}")
    return 0 if n and words_ok == parse_ok == n and recovered / n >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
