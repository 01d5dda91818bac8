"""Rectified-flow training (Flow-GRPO's conventions, facts/unified_grpo.md §3): the maths and the loss.

t = σ ∈ [0, 1], 1 = pure noise; x_t = (1 − t)·x + t·ε; the model predicts v = ε − x. The maths are pure
functions, testable against hand-computed cases; `FlowMatchingLoss` is the part of `Decoder` that uses
them (it needs the decoder's `config`, `encode_images`, `context`, `_dit` and latent-space properties).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from PIL import Image


def sample_timesteps(n: int, sampling: str = "logit_normal", mean: float = 0.0, std: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """n training times t ∈ (0, 1) (on CPU): sigmoid(N(mean, std)) — SD3's logit-normal — or uniform."""
    if sampling == "logit_normal":
        return torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    if sampling == "uniform":
        return torch.rand(n, generator=generator)
    raise ValueError(f"timestep sampling {sampling!r}: expected logit_normal or uniform")


def flow_matching_pair(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified flow: x (B, ...) data, noise like x, t (B,) → (x_t = (1−t)·x + t·noise, target v = noise − x)."""
    t = t.to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return (1 - t) * x + t * noise, noise - x


class FlowMatchingLoss:
    """The training loss of `Decoder` (a mixin: see the module docstring for what it needs)."""

    def loss_randomness(self, batch: int, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(t, noise, drop) for a batch, drawn in the order `loss` draws them, so a multi-process run can draw
        them for the global batch and give each rank its rows (drop is None outside train mode / uncond_prob 0)."""
        t = sample_timesteps(batch, self.config.timestep_sampling, self.config.logit_mean, self.config.logit_std,
                             generator)
        side = self.image_size // self.vae_scale_factor
        noise = torch.randn((batch, self.latent_channels, side, side), generator=generator)
        drop = (torch.rand(batch, generator=generator) < self.config.uncond_prob
                if self.training and self.config.uncond_prob > 0 else None)
        return t, noise, drop

    def loss(self, images: torch.Tensor | Sequence[Image.Image], text_hidden: torch.Tensor, text_mask: torch.Tensor,
             generator: torch.Generator | None = None, t: torch.Tensor | float | None = None,
             noise: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Rectified-flow MSE between v(x_t, t) and ε − x, a scalar.

        images (B, 3, H, W) in [-1, 1] or PIL; t (default: drawn per row from `timestep_sampling`) and
        noise (default: N(0, 1) in the data space) may be fixed for a stable measurement. Randomness is
        drawn on CPU from `generator`. In train mode a `uncond_prob` share of rows gets the null condition
        (`drop`, bool per row, fixes which).
        """
        x = self.encode_images(images, generator)
        batch = x.shape[0]
        if t is None:
            t = sample_timesteps(batch, self.config.timestep_sampling, self.config.logit_mean,
                                 self.config.logit_std, generator)
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(batch).to(self.device)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator)
        x_t, target = flow_matching_pair(x, noise.to(x.device, x.dtype), t)
        states, mask = self.context(text_hidden, text_mask)
        if self.training and self.config.uncond_prob > 0:
            # A dropped row = null_context: one zero token, the rest masked out.
            if drop is None:
                drop = torch.rand(batch, generator=generator) < self.config.uncond_prob
            drop = drop.to(self.device)
            states = states * (~drop)[:, None, None].to(states.dtype)
            first_only = torch.zeros_like(mask)
            first_only[:, 0] = True
            mask = torch.where(drop[:, None], first_only, mask)
        prediction = self._dit(x_t, t, states, mask)
        return F.mse_loss(prediction.float(), target.float())
