"""Euler ODE sampling of the decoder: seeded noise → scheduler steps → pixels.

`FlowSampling` is a part of `Decoder` kept in its own file; it uses the decoder's `transformer`,
`scheduler`, `context`, `_negative_context`, `velocity_from_context` and latent-space properties.
Each image's noise comes from its own seed on CPU, so an image does not depend on its batch or device.
"""
from __future__ import annotations

from typing import Sequence

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from PIL import Image

from uae_train.models.image_tensors import tensor_to_pil
from uae_train.models.text_condition import TextCondition


class FlowSampling:
    """Sampling methods of `Decoder` (a mixin: see the module docstring for what it needs)."""

    def new_scheduler(self, steps: int, image_seq_len: int | None = None) -> FlowMatchEulerDiscreteScheduler:
        """A fresh copy of the scheduler set to `steps` (the decoder's own stays untouched, so calls don't
        share step state). image_seq_len is only used by dynamic-shift (FLUX-style) schedulers."""
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", False):
            c = scheduler.config
            seq = image_seq_len or (self.transformer.config.sample_size // self.transformer.config.patch_size) ** 2
            slope = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len)
            kwargs["mu"] = c.base_shift + slope * (seq - c.base_image_seq_len)
        scheduler.set_timesteps(steps, device="cpu", **kwargs)
        return scheduler

    def sigmas(self, steps: int) -> torch.Tensor:
        """(steps + 1,) float32 noise levels from 1 down to 0 (the last is 0); t = σ, DiT timestep = 1000·σ."""
        return self.new_scheduler(steps).sigmas.clone()

    def initial_noise(self, seeds: Sequence[int], height: int | None = None, width: int | None = None) -> torch.Tensor:
        """(B, C, h, w) float32 noise, image i drawn on CPU from torch.Generator().manual_seed(seeds[i]), so an
        image depends only on its own seed (not on its batch or the device)."""
        height, width = height or self.image_size, width or self.image_size
        shape = (self.latent_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(noise).to(self.device)

    @torch.no_grad()
    def sample(self, text_hidden: torch.Tensor, text_mask: torch.Tensor, seeds: Sequence[int], steps: int = 20,
               guidance: float = 1.0, negative: TextCondition | None = None, height: int | None = None,
               width: int | None = None) -> torch.Tensor:
        """Euler ODE sampling → (B, 3, H, W) in [-1, 1]; B = len(seeds), a text batch of 1 is repeated."""
        batch = len(seeds)
        if text_hidden.shape[0] == 1 and batch > 1:
            text_hidden, text_mask = text_hidden.expand(batch, -1, -1), text_mask.expand(batch, -1)
        if text_hidden.shape[0] != batch:
            raise ValueError(f"{text_hidden.shape[0]} text conditions for {batch} seeds")
        context = self.context(text_hidden, text_mask)
        negative_context = self._negative_context(negative, batch) if guidance != 1.0 else None
        latents = self.initial_noise(seeds, height, width)
        scheduler = self.new_scheduler(steps, latents.shape[-1] * latents.shape[-2] // self.transformer.config.patch_size ** 2)
        for i, timestep in enumerate(scheduler.timesteps):
            v = self.velocity_from_context(latents, scheduler.sigmas[i], context, guidance, negative_context)
            latents = scheduler.step(v, timestep, latents, return_dict=False)[0]
        return self.decode_latents(latents)

    def generate(self, text_hidden: torch.Tensor, text_mask: torch.Tensor, seeds: Sequence[int], steps: int = 20,
                 guidance: float = 1.0, negative: TextCondition | None = None, height: int | None = None,
                 width: int | None = None) -> list[Image.Image]:
        """`sample` as RGB PIL images, one per seed."""
        return tensor_to_pil(self.sample(text_hidden, text_mask, seeds, steps, guidance, negative, height, width))
