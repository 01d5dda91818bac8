"""DINOv2 / DINOv3 image-image cosine (Unified-Bench, facts §1): cosine of L2-normalised CLS features
(last_hidden_state[:, 0], after the model's final norm) from a transformers AutoModel, by hub name or local
folder. Each model is fed through its own saved image processor (DINOv2: resize 256 + centre crop 224;
DINOv3: resize to 224×224, no crop; both ImageNet mean/std), which provenance records.

Which implementation of that processor matters in the 4th digit: transformers 5 defaults to torchvision
processors, while the 4.x releases Unified-Bench's DINO_v2.py / DINO_v3.py ran under (DINOv3 arrived in 4.56)
loaded the PIL one saved with DINOv2 and the only one DINOv3 has (torchvision). `dino` therefore asks for
the PIL processor and `dinov3` for the default, as their scripts got."""
from __future__ import annotations

from uae_data.core.errors import ModelLoadError
from uae_eval.metrics.base import METRICS, EmbeddingCosine, default_device, embed_in_batches

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def torch_dtype(name: str, metric: str):
    """torch dtype for a metric's `dtype` option; embeddings are compared in float32 whatever it is."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"{metric}: dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, DTYPES[name])


def load_image_processor(model: str, pil: bool):
    """AutoImageProcessor for `model`; `pil`: the PIL ("slow") implementation where the model has one
    (transformers 5: backend="pil"; 4.x: use_fast=False, which was also 4.x's default for these models)."""
    import transformers
    from transformers import AutoImageProcessor

    if not pil:
        return AutoImageProcessor.from_pretrained(model)
    major = int(transformers.__version__.split(".")[0])
    return AutoImageProcessor.from_pretrained(model, **({"backend": "pil"} if major >= 5 else {"use_fast": False}))


def processor_summary(processor) -> dict:
    """What an image processor does to an image, from its own config: resize/crop sizes, resample,
    normalisation — the facts a score depends on, written into results provenance."""
    d = processor.to_dict()
    keep = ("size", "crop_size", "do_resize", "do_center_crop", "resample", "image_mean", "image_std",
            "do_normalize", "image_processor_type")
    out = {k: d[k] for k in keep if k in d}
    out["class"] = type(processor).__name__  # which implementation (PIL or torchvision) resized the images
    if "resample" in out:  # PIL enum or its int value, written by name
        from PIL import Image

        r = out["resample"]
        out["resample"] = r.name if hasattr(r, "name") else Image.Resampling(int(r)).name
    for k in ("image_mean", "image_std"):
        if k in out:
            out[k] = [float(x) for x in out[k]]
    return out


class _ClsCosine(EmbeddingCosine):
    """A transformers vision backbone whose CLS token is the global feature."""

    higher_is_better = True
    metric = ""
    default_model = ""
    model_types: tuple[str, ...] = ()  # config.model_type values this metric accepts
    pil_processor = True  # the PIL image processor, as UAE's scripts got it (module docstring)

    def __init__(self, model: str | None = None, device: str | None = None, batch_size: int = 32,
                 dtype: str = "float32") -> None:
        from transformers import AutoConfig, AutoModel

        from uae_data.model_refs import require_model

        model = model or self.default_model
        self.name, self.device, self.batch_size = model, default_device(device), batch_size
        self.dtype = DTYPES.get(dtype, dtype)
        dt = torch_dtype(dtype, self.metric)
        require_model(model, f"metric_options.{self.metric}.model=PATH (a local folder)", f"{self.metric} model")
        try:
            model_type = AutoConfig.from_pretrained(model).model_type
            if self.model_types and model_type not in self.model_types:
                raise ModelLoadError(f"{self.metric}: {model} holds a {model_type!r} model, not "
                                     f"{' / '.join(self.model_types)}")
            self.processor = load_image_processor(model, self.pil_processor)
            self.model = AutoModel.from_pretrained(model, dtype=dt).to(self.device).eval()
        except (OSError, ValueError) as e:
            if isinstance(e, ModelLoadError):
                raise
            raise ModelLoadError(f"{self.metric}: cannot load {model!r}: {str(e).splitlines()[0]}") from None

    def embed(self, images: list):
        """(N, D) L2-normalised CLS features, float32 on CPU."""
        def cls(batch):
            x = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            return self.model(pixel_values=x.to(self.device, dtype=self.model.dtype)).last_hidden_state[:, 0]

        return embed_in_batches(images, self.batch_size, cls)

    def provenance(self) -> dict:
        return {"metric": self.metric, "model": str(self.name), "model_type": self.model.config.model_type,
                "feature": "CLS (last_hidden_state[:, 0], after the final norm)", "dtype": self.dtype,
                "preprocess": processor_summary(self.processor)}


@METRICS.register("dino")
class DinoSimilarity(_ClsCosine):
    """DINOv2 (Dinov2Model); Unified-Bench uses DINOv2-L."""

    metric = "dino"
    default_model = "facebook/dinov2-large"
    model_types = ("dinov2", "dinov2_with_registers")


@METRICS.register("dinov3")
class Dinov3Similarity(_ClsCosine):
    """DINOv3 ViT (DINOv3ViTModel); Unified-Bench uses DINOv3 ViT-L/16. The model's register tokens follow
    the CLS token and are not part of the feature."""

    metric = "dinov3"
    default_model = "facebook/dinov3-vitl16-pretrain-lvd1689m"
    model_types = ("dinov3_vit",)
    pil_processor = False  # DINOv3 has only a torchvision processor
