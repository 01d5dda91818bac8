"""How fast does the tiny decoder's DiT learn to use a condition at all?

The CPU demo's decoder lowers its flow loss but paints the same whatever caption it reads (the demo's
`caption-reliance` is ~0). This probe removes the encoder and the captions from the question: 16 scene
images, each with its own random label vector, fed either as one text token (`--route ctx`, the joint
attention path captions take) or as `pooled_projections` (`--route pooled`, SD3's adaLN path). At
t = 0.995 the input is almost pure noise, so the only way below the mean-image loss is to read the label.
`--input zero` feeds zeros instead of noise (is the noise in the way?); `--init torch` builds the DiT with
PyTorch's layer defaults instead of DiT's from-scratch init (`tiny_dit.dit_init`);
`--positions diffusers` restores the near-identical position embeddings the tiny decoder had before
`tiny_dit.spread_positions` (then no label is memorised even from a clean input).

    python experiments/conditioning_probe/conditioning_probe.py --route ctx --steps 150 >> experiments/conditioning_probe/results_cpu.txt
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from uae_data.scenes import render, sample_scene
from uae_train.models.decoder import Decoder
from uae_train.models.image_tensors import pil_to_tensor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--route", choices=["ctx", "pooled"], default="ctx")
    ap.add_argument("--input", choices=["noise", "zero"], default="noise")
    ap.add_argument("--init", choices=["torch", "dit"], default="dit", help="Decoder.tiny's init: dit (default) or torch")
    ap.add_argument("--positions", choices=["spread", "diffusers"], default="spread",
                    help="spread: Decoder.tiny's sin-cos positions 8 apart; diffusers: the crop of a 32-wide grid "
                         "diffusers' PatchEmbed gave before (positions ~0.1 apart)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--images", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    decoder = Decoder.tiny(64, image_size=48, patch_size=16, prediction="x", init=args.init)  # the CPU demo's DiT
    tr = decoder.transformer
    if args.positions == "diffusers":  # what pos_embed_max_size=32 with a 3-token side used to give
        from diffusers.models.embeddings import get_2d_sincos_pos_embed

        full = torch.as_tensor(get_2d_sincos_pos_embed(128, 32, base_size=3, output_type="pt")).float().reshape(32, 32, -1)
        with torch.no_grad():
            tr.pos_embed.pos_embed.copy_(full[14:17, 14:17].reshape(1, 9, -1))
    x = pil_to_tensor([render(sample_scene(np.random.default_rng([9, i])), 48) for i in range(args.images)])
    n = len(x)
    labels = torch.randn(n, 64) * 3  # (n, 64): one label per image
    mean_image_loss = float(((x - x.mean(0)) ** 2).mean())
    optimizer = torch.optim.AdamW(tr.parameters(), lr=args.lr)
    t = 0.995
    losses = []
    for step in range(args.steps):
        noise = torch.randn_like(x)
        x_t = torch.zeros_like(x) if args.input == "zero" else (1 - t) * x + t * noise
        if args.route == "pooled":
            states, pooled = torch.zeros(n, 1, 64), labels
        else:
            states, pooled = labels[:, None], torch.zeros(n, 64)
        out = tr(hidden_states=x_t, encoder_hidden_states=states, pooled_projections=pooled,
                 timestep=torch.full((n,), 1000 * t), return_dict=False)[0]  # x̂ (x-prediction)
        loss = ((out - x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    tail = float(np.mean(losses[-10:]))
    print(f"route={args.route} input={args.input} init={args.init} positions={args.positions} steps={args.steps} lr={args.lr} images={n}: "
          f"x-loss first {losses[0]:.4f}, last-10 mean {tail:.4f}; mean-image loss {mean_image_loss:.4f} "
          f"-> {tail / mean_image_loss:.2f} of the mean-image loss (0 = memorised)")


if __name__ == "__main__":
    main()
