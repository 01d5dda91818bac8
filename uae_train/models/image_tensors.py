"""PIL images ↔ pixel tensors in [-1, 1], the decoder's pixel convention (and its uint8 rounding)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image


def pil_to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images (all one size) → (B, 3, H, W) float32 in [-1, 1]."""
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError(f"images differ in size: {sorted({a.shape[:2] for a in arrays})}; resize them first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] → RGB PIL images (values clamped, rounded to uint8)."""
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a) for a in pixels.permute(0, 2, 3, 1).cpu().numpy()]
