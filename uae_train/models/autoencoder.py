"""The encoder and decoder wired as plain callables, the form every harness takes.

`text_to_image(encoder, decoder)` -> generate(prompts, seeds) -> images: the encoder re-reads the
prompt and its hidden states condition the decoder (the UAE connector path).
`image_to_text(encoder)` -> caption(images) -> texts.
"""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image


def text_to_image(encoder, decoder, steps: int = 20, guidance: float = 1.0, max_text_tokens: int = 256,
                  batch_size: int = 16) -> Callable[[list[str], list[int]], list[Image.Image]]:
    @torch.no_grad()
    def generate(prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        images: list[Image.Image] = []
        for i in range(0, len(prompts), batch_size):
            hidden, mask = encoder.encode_text(prompts[i:i + batch_size], max_length=max_text_tokens)
            images += decoder.generate(hidden.float(), mask, list(seeds[i:i + batch_size]), steps=steps, guidance=guidance)
        return images

    generate.name = "uae-decoder"  # type: ignore[attr-defined]
    return generate


def image_to_text(encoder, sample: bool = False, max_new_tokens: int = 160, seed: int = 0,
                  batch_size: int = 16) -> Callable[[list[Image.Image]], list[str]]:
    @torch.no_grad()
    def caption(images: list[Image.Image]) -> list[str]:
        texts: list[str] = []
        for i in range(0, len(images), batch_size):
            texts += encoder.caption(images[i:i + batch_size], n=1, sample=sample, max_new_tokens=max_new_tokens,
                                     seed=seed + i)
        return texts

    return caption
