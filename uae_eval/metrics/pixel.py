"""Pixel metrics: PSNR (dB, data range 255; identical images -> inf unless `psnr_cap`) and SSIM (skimage).

Two metric names, `psnr` and `ssim`, each one float per pair. A reconstruction of another size is resized
(bicubic) to the original's size first, so generators at any resolution can be scored.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from uae_eval.metrics.base import METRICS, check_pairs


def _pair_arrays(a: Image.Image, b: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    a = a.convert("RGB")
    b = b.convert("RGB")
    if b.size != a.size:
        b = b.resize(a.size, Image.BICUBIC)
    return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)


def psnr(a: Image.Image, b: Image.Image, cap: float | None = None) -> float:
    x, y = _pair_arrays(a, b)
    mse = float(np.mean((x - y) ** 2))
    value = math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)
    return min(value, cap) if cap is not None else value


def ssim(a: Image.Image, b: Image.Image) -> float:
    from skimage.metrics import structural_similarity

    x, y = _pair_arrays(a, b)
    win = min(7, *x.shape[:2])
    win -= 1 - win % 2  # odd window no larger than the image
    return float(structural_similarity(x, y, data_range=255.0, channel_axis=2, win_size=win))


@METRICS.register("psnr")
class PSNR:
    """psnr_cap: clip values at this many dB (e.g. 100) so means stay finite; None keeps inf."""

    higher_is_better = True

    def __init__(self, psnr_cap: float | None = None) -> None:
        self.cap = psnr_cap

    def __call__(self, originals: list, reconstructions: list) -> list[float]:
        check_pairs(originals, reconstructions)
        return [psnr(a, b, self.cap) for a, b in zip(originals, reconstructions)]

    def provenance(self) -> dict:
        return {"metric": "psnr", "data_range": 255, "psnr_cap": self.cap}


@METRICS.register("ssim")
class SSIM:
    higher_is_better = True

    def __call__(self, originals: list, reconstructions: list) -> list[float]:
        check_pairs(originals, reconstructions)
        return [ssim(a, b) for a, b in zip(originals, reconstructions)]

    def provenance(self) -> dict:
        return {"metric": "ssim", "impl": "skimage.metrics.structural_similarity", "data_range": 255, "win_size": 7}
