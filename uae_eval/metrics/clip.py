"""CLIP image-image cosine (Unified-Bench, facts §1): cosine of L2-normalised open_clip image embeddings
(the projected global image feature, `encode_image`).

Both images go through the same eval transform (OpenAI CLIP: shortest side to 224 bicubic, centre crop
224, CLIP mean/std), so metric(x, x) = 1 (facts §5.6). Values in [-1, 1].
"""
from __future__ import annotations

from uae_eval.metrics.base import METRICS, EmbeddingCosine, default_device, embed_in_batches


def open_clip_preprocess(model) -> dict:
    """The eval transform as open_clip records it on the model (size, resize mode, interpolation, mean/std)."""
    cfg = dict(getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {})
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}


class OpenClipEmbedder(EmbeddingCosine):
    """Shared by `clip` and `longclip`: an open_clip model + its eval transform, run in `dtype`."""

    higher_is_better = True

    def _setup(self, model, preprocess, device: str, batch_size: int, dtype: str, metric: str,
               cast: bool = True) -> None:
        """cast=False: the model's dtypes are already set (longclip's mixed fp16) and only move to `device`."""
        from uae_eval.metrics.dino import DTYPES, torch_dtype

        self.device, self.batch_size = device, batch_size
        self.dtype = DTYPES.get(dtype, dtype)
        dt = torch_dtype(dtype, metric)
        self.model = (model.to(device=device, dtype=dt) if cast else model.to(device)).eval()
        self.preprocess = preprocess

    def embed(self, images: list):
        """(N, D) L2-normalised float32 image embeddings (eval mode; fp32 by default: batch and single calls
        agree within 1e-5)."""
        import torch

        conv = getattr(getattr(self.model, "visual", None), "conv1", None)  # a mixed model's input dtype
        dtype = conv.weight.dtype if conv is not None else next(self.model.parameters()).dtype

        def encode(batch):
            x = torch.stack([self.preprocess(im) for im in batch])
            return self.model.encode_image(x.to(self.device, dtype=dtype))

        return embed_in_batches(images, self.batch_size, encode)


@METRICS.register("clip")
class ClipSimilarity(OpenClipEmbedder):
    """model: open_clip name ("ViT-L-14"), "hf-hub:...", or a local folder; pretrained: tag or file."""

    def __init__(self, model: str = "ViT-L-14", pretrained: str | None = "openai", device: str | None = None,
                 quick_gelu: bool | None = None, batch_size: int = 32, dtype: str = "float32") -> None:
        from uae_eval.geneval.colour import load_open_clip

        self.name, self.pretrained = model, pretrained
        self.quick_gelu = (pretrained == "openai") if quick_gelu is None else quick_gelu
        device = default_device(device)
        clip, preprocess, _ = load_open_clip(model, pretrained, device, self.quick_gelu,
                                             option="metric_options.clip.pretrained=FILE (a local checkpoint for "
                                                    "this model name) or metric_options.clip.model=FOLDER (an open_clip folder)")
        self._setup(clip, preprocess, device, batch_size, dtype, "clip")

    def provenance(self) -> dict:
        return {"metric": "clip", "model": str(self.name), "pretrained": self.pretrained, "quick_gelu": self.quick_gelu,
                "feature": "encode_image (projected global image embedding)", "dtype": self.dtype,
                "preprocess": open_clip_preprocess(self.model)}
