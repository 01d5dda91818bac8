"""CLIP image-image cosine through transformers, as Unified-Bench's released CLIP.py computes it.

UAE's scorer loads `CLIPModel` + `CLIPProcessor` from `openai/clip-vit-large-patch14`, feeds each image through
the processor's defaults (shortest side to 224 bicubic, centre crop 224, CLIP mean/std), takes
`get_image_features` (the projected global embedding), L2-normalises and takes the cosine. This metric does the
same, batched (a batch and single images agree within 1e-5 in float32).

Why a second CLIP metric: `clip` (open_clip, QuickGELU) holds the same network but its own preprocessing
and attention code, so nothing makes its cosines equal the authors'; `clip-hf` runs the very calls their
script runs. The processor is the PIL one (see dino.load_image_processor), which the transformers releases
UAE's scripts ran on picked for this checkpoint.
Weights load through transformers (safetensors, or a .bin read weights-only); no repository code runs.
"""
from __future__ import annotations

from uae_data.core.errors import ModelLoadError
from uae_eval.metrics.base import METRICS, EmbeddingCosine, default_device, embed_in_batches

DEFAULT_MODEL = "openai/clip-vit-large-patch14"
OPTION = "metric_options.clip-hf.model=PATH (a local CLIPModel folder)"


def projected_image_features(model, pixel_values):
    """`CLIPModel.get_image_features` as a tensor: transformers 4.x returns it, 5.x wraps it in an output
    whose pooler_output holds it."""
    out = model.get_image_features(pixel_values=pixel_values)
    return out if hasattr(out, "dim") else out.pooler_output


@METRICS.register("clip-hf")
class HfClipSimilarity(EmbeddingCosine):
    """model: a transformers CLIPModel folder or hub id (default Unified-Bench's CLIP ViT-L/14)."""

    higher_is_better = True

    def __init__(self, model: str = DEFAULT_MODEL, device: str | None = None, batch_size: int = 32,
                 dtype: str = "float32") -> None:
        from transformers import AutoConfig, CLIPModel

        from uae_data.model_refs import require_model
        from uae_eval.metrics.dino import DTYPES, load_image_processor, torch_dtype

        self.name, self.device, self.batch_size = str(model), default_device(device), batch_size
        self.dtype = DTYPES.get(dtype, dtype)
        dt = torch_dtype(dtype, "clip-hf")
        require_model(self.name, OPTION, "clip-hf model")
        try:
            model_type = AutoConfig.from_pretrained(self.name).model_type
            if model_type != "clip":
                raise ModelLoadError(f"clip-hf: {self.name} holds a {model_type!r} model, not a CLIPModel")
            self.processor = load_image_processor(self.name, pil=True)
            self.model = CLIPModel.from_pretrained(self.name, dtype=dt).to(self.device).eval()
        except (OSError, ValueError) as e:
            if isinstance(e, ModelLoadError):
                raise
            raise ModelLoadError(f"clip-hf: cannot load {self.name!r}: {str(e).splitlines()[0]}") from None

    def embed(self, images: list):
        """(N, D) L2-normalised float32 projected image embeddings."""
        def projected(batch):
            x = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            return projected_image_features(self.model, x.to(self.device, dtype=self.model.dtype))

        return embed_in_batches(images, self.batch_size, projected)

    def provenance(self) -> dict:
        from uae_eval.metrics.dino import processor_summary

        return {"metric": "clip-hf", "model": self.name, "model_type": "clip",
                "feature": "get_image_features (projected global image embedding)", "dtype": self.dtype,
                "preprocess": processor_summary(self.processor)}
