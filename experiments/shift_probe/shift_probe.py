"""Does the CPU demo's decoder learn to read a perfect condition, with and without SD3's timestep shift?

The demo decoder's caption reliance stayed ~0.01 however its text path was built. This probe takes the
text path out of the question: each caption is parsed back to its scene (`parse_caption`, exact for the
captions the scene world writes) and fed as nine oracle tokens, one per grid cell, each a trainable
embedding of the cell plus the (shape, colour, size) in it. The DiT is the demo's (48 px, 16 px patches,
x-prediction). It reports `caption_reliance` (flow loss with shuffled vs true conditions) on held-out
scenes at t = 0.5, 0.9, 0.98 every 100 steps. With `--shift 1` the decoder trains where a 256-pixel
patch still shows its cell through the noise and never needs the condition; `--shift 16` moves
training (and sampling) to where it does.

    python experiments/shift_probe/shift_probe.py --shift 1 >> experiments/shift_probe/results_cpu.txt
    python experiments/shift_probe/shift_probe.py --shift 16 >> experiments/shift_probe/results_cpu.txt
"""
from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from uae_data.scenes import COLORS, GRID, SHAPES, SIZES, parse_caption, render, sample_scene, write_caption
from uae_train.evaluation.caption_reliance import caption_reliance
from uae_train.models.decoder import Decoder
from uae_train.models.image_tensors import pil_to_tensor

_COLORS, _SIZES = list(COLORS), list(SIZES)


class OracleCells(nn.Module):
    """A TextConditioner whose "text states" are the caption's scene as 9 cell tokens (trainable)."""

    hidden_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.attributes = nn.Embedding(1 + len(SHAPES) * len(COLORS) * len(SIZES), self.hidden_size)
        self.cells = nn.Parameter(torch.randn(GRID * GRID, self.hidden_size))

    def encode_text(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.zeros(len(texts), GRID * GRID, dtype=torch.long)  # 0 = empty cell
        for row, text in enumerate(texts):
            for o in parse_caption(text).objects:
                code = (SHAPES.index(o.shape) * len(COLORS) + _COLORS.index(o.color)) * len(SIZES) + _SIZES.index(o.size)
                ids[row, o.row * GRID + o.col] = 1 + code
        return self.attributes(ids) + self.cells, torch.ones(ids.shape, dtype=torch.bool)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shift", type=float, default=16.0)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--scenes", type=int, default=1600)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    scenes = [sample_scene(i) for i in range(args.scenes + 64)]
    captions = [write_caption(s, i) for i, s in enumerate(scenes)]
    images = pil_to_tensor([render(s, 48) for s in scenes])
    oracle = OracleCells()
    decoder = Decoder.tiny(oracle.hidden_size, image_size=48, patch_size=16, prediction="x", shift=args.shift)
    params = [*decoder.parameters(), *oracle.parameters()]
    optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=args.lr)
    g = torch.Generator().manual_seed(0)
    held = slice(args.scenes, args.scenes + 64)
    held_images = [render(s, 48) for s in scenes[held]]
    start = time.time()
    print(f"# shift={args.shift:g} lr={args.lr:g} batch={args.batch} scenes={args.scenes} "
          f"(logit_mean {decoder.config.logit_mean:.2f})")
    for step in range(1, args.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, step / 40)  # linear warmup, as pretrain
        idx = torch.randint(0, args.scenes, (args.batch,), generator=g)
        hidden, mask = oracle.encode_text([captions[i] for i in idx])
        loss = decoder.loss(images[idx], hidden, mask, generator=g)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % 100 == 0 or step == args.steps:
            r = caption_reliance(decoder, oracle, held_images, captions[held], timesteps=(0.5, 0.9, 0.98))
            gains = " ".join(f"t={t}: {r[f'relative_gain_t{t:g}']:+.3f}" for t in (0.5, 0.9, 0.98))
            print(f"shift={args.shift:g} step {step}: loss {loss.item():.4f}, relative gain {r['relative_gain']:+.3f} "
                  f"({gains}) {time.time() - start:.0f}s", flush=True)


if __name__ == "__main__":
    main()
