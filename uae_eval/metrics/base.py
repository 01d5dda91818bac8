"""What the uae_eval.metrics plug-ins share: the registry and the helpers every metric uses (the package's
`build_*` imports the plug-ins; they import this module, never the package, so no import cycle)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from uae_data.core.device import default_device as auto_device
from uae_data.core.registry import Registry

if TYPE_CHECKING:
    import torch

METRICS: Registry = Registry("metric")






def check_pairs(originals: list, reconstructions: list) -> None:
    if len(originals) != len(reconstructions):
        raise ValueError(f"metric needs pairs: {len(originals)} originals vs {len(reconstructions)} reconstructions")


def default_device(device: str | None) -> str:
    return device or auto_device()




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
