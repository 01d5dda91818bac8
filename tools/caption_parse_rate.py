"""How often a trained encoder's greedy caption parses back to the exact scene of a corpus image.

Usage: python tools/caption_parse_rate.py ENCODER_DIR CORPUS_DIR [--n 200] [--size 64]
"""
from __future__ import annotations

import argparse
import itertools

import torch

from uae_data import scenes
from uae_data.shards import iter_samples
from uae_train.models.encoder import Encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoder")
    ap.add_argument("corpus")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    enc = Encoder.from_pretrained(args.encoder, device="cuda" if torch.cuda.is_available() else "cpu").eval()
    samples = list(itertools.islice(iter_samples(args.corpus), args.n))
    exact = parsed = objects_right = objects_total = 0
    for i in range(0, len(samples), 32):
        batch = samples[i:i + 32]
        texts = enc.caption([s["image"].resize((args.size, args.size)) for s in batch], sample=False, max_new_tokens=200)
        for s, text in zip(batch, texts):
            spec = scenes.Scene.from_dict(s["meta"]["scene"])
            objects_total += len(spec.objects)
            try:
                got = scenes.parse_caption(text)
            except ValueError:
                continue
            parsed += 1
            exact += got == spec
            objects_right += len(set(got.objects) & set(spec.objects))
    n = len(samples)
    print(f"captions that parse: {parsed}/{n}; exact scene: {exact}/{n} = {exact / n:.3f}; "
          f"objects right: {objects_right}/{objects_total} = {objects_right / max(1, objects_total):.3f}")


if __name__ == "__main__":
    main()
