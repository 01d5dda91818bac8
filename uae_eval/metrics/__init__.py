"""Image-pair metrics (reconstruction scores and training rewards), found by name in one registry.

A metric is a callable `metric(originals: list[PIL], reconstructions: list[PIL]) -> list[float]` (one value
per pair, deterministic, batch size does not change a value) with `.higher_is_better` and `.provenance()`.
Names: psnr, ssim (pixel), clip, clip-hf, longclip, dino, dinov3 (embedding cosine), uae-clip (UAE's training reward), scene (object-level F1), scene-soft (graded). Build with
`build_metric(name, **options)`; they need no harness, so RL code can use them as rewards directly.
"""
from __future__ import annotations

from uae_eval.metrics.base import (  # noqa: F401  (the package's public names)
    EmbeddingCosine,
    METRICS,
    check_pairs,
    default_device,
    embed_in_batches,
)


def build_metric(name: str, **options):
    """The metric registered under `name`, built with `options` (e.g. clip: model, pretrained, device)."""
    from uae_eval.metrics import clip, clip_hf, dino, longclip, pixel, scene, uae_clip  # noqa: F401  (registers)

    return METRICS.get(name)(**options)


def metric_names() -> list[str]:
    from uae_eval.metrics import clip, clip_hf, dino, longclip, pixel, scene, uae_clip  # noqa: F401  (registers)

    return METRICS.names()
