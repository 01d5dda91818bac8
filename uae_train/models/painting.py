"""Encode then paint: captions → the decoder's text reader → images, in batches with one seed per image.

Stage 1's reconstructions, stage 2's held-out paintings and every harness's text-to-image callable go
through `paint`, so they paint the same image for the same caption, seed and settings.
"""
from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from uae_train.models.text_condition import TextConditioner


@torch.no_grad()
def paint(reader: TextConditioner, decoder, texts: Sequence[str], seeds: Sequence[int], steps: int,
          guidance: float, max_text_tokens: int | None = None, batch: int = 32) -> list[Image.Image]:
    """One image per (text, seed): `reader.encode_text` (cut to max_text_tokens) then `decoder.generate`.

    reader: what turns captions into this decoder's text states, i.e. `decoder.reader(encoder)`. The noise
    of image i comes from seeds[i] alone, whatever `batch` is (its padding can still move a pixel by one
    level: batch is part of a run's settings).
    """
    images: list[Image.Image] = []
    for i in range(0, len(texts), batch):
        hidden, mask = reader.encode_text(list(texts[i:i + batch]), max_length=max_text_tokens)
        images += decoder.generate(hidden.float(), mask, list(seeds[i:i + batch]), steps=steps, guidance=guidance)
    return images
