"""Image-pair metrics (reconstruction scores and training rewards), found by name in one registry.

A metric is a callable `metric(originals: list[PIL], reconstructions: list[PIL]) -> list[float]` (one value
per pair, deterministic, batch size does not change a value) with `.higher_is_better` and `.provenance()`.
Names: psnr, ssim (pixel), clip, longclip, dino, dinov3 (embedding cosine), scene (object-level F1), scene-soft (graded). Build with
`build_metric(name, **options)`; they need no harness, so RL code can use them as rewards directly.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from uae_data.core.device import default_device as auto_device
from uae_data.core.registry import Registry

if TYPE_CHECKING:
    import torch

METRICS: Registry = Registry("metric")


def build_metric(name: str, **options):
    """The metric registered under `name`, built with `options` (e.g. clip: model, pretrained, device)."""
    from uae_eval.metrics import clip, dino, longclip, pixel, scene  # noqa: F401  (registers)

    return METRICS.get(name)(**options)


def metric_names() -> list[str]:
    from uae_eval.metrics import clip, dino, longclip, pixel, scene  # noqa: F401  (registers)

    return METRICS.names()


def check_pairs(originals: list, reconstructions: list) -> None:
    if len(originals) != len(reconstructions):
        raise ValueError(f"metric needs pairs: {len(originals)} originals vs {len(reconstructions)} reconstructions")


def default_device(device: str | None) -> str:
    return device or auto_device()


__all__ = ["METRICS", "build_metric", "metric_names", "check_pairs", "default_device", "embed_in_batches"]


def embed_in_batches(images: list, batch_size: int, features) -> "torch.Tensor":
    """(N, D) L2-normalised float32 CPU rows of `features(rgb_batch) -> (B, D)`, no grad, batch by batch."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            f = features([im.convert("RGB") for im in images[i:i + batch_size]]).float()
            out.append(torch.nn.functional.normalize(f, dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros(0)


class EmbeddingCosine:
    """Image-image cosine of L2-normalised embeddings; subclasses define `embed(images) -> (N, D)`."""

    def __call__(self, originals: list, reconstructions: list) -> list[float]:
        check_pairs(originals, reconstructions)
        if not originals:
            return []
        a, b = self.embed(originals), self.embed(reconstructions)
        return [float(v) for v in (a * b).sum(-1).clamp(-1, 1)]
