"""CLIP image-image cosine (Unified-Bench, facts §1): cosine of L2-normalised open_clip image embeddings.

Both images go through the same eval transform, so metric(x, x) = 1 (facts §5.6). Values in [-1, 1].
"""
from __future__ import annotations

from uae_eval.metrics import METRICS, EmbeddingCosine, default_device


@METRICS.register("clip")
class ClipSimilarity(EmbeddingCosine):
    """model: open_clip name ("ViT-L-14"), "hf-hub:...", or a local folder; pretrained: tag or file."""

    higher_is_better = True

    def __init__(self, model: str = "ViT-L-14", pretrained: str | None = "openai", device: str | None = None,
                 quick_gelu: bool | None = None, batch_size: int = 32) -> None:
        from uae_eval.geneval.colour import load_open_clip

        self.name, self.pretrained, self.device = model, pretrained, default_device(device)
        self.quick_gelu = (pretrained == "openai") if quick_gelu is None else quick_gelu
        self.batch_size = batch_size
        self.model, self.preprocess, _ = load_open_clip(model, pretrained, self.device, self.quick_gelu,
                                                         option="the clip metric's model / pretrained options")

    def embed(self, images: list):
        """(N, D) L2-normalised float32 image embeddings (eval mode, fp32: batch and single calls agree
        within 1e-5)."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(images), self.batch_size):
                x = torch.stack([self.preprocess(im.convert("RGB")) for im in images[i:i + self.batch_size]])
                f = self.model.encode_image(x.to(self.device)).float()
                out.append(torch.nn.functional.normalize(f, dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0)

    def provenance(self) -> dict:
        return {"metric": "clip", "model": str(self.name), "pretrained": self.pretrained, "quick_gelu": self.quick_gelu}
