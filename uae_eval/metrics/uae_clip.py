"""UAE's own training reward, exactly as its released `uae/models/clip_score.py` computes it.

It differs from Unified-Bench's CLIP score (`clip` / `clip-hf`, which resize the short side and centre-crop):
images in [0, 255] → /255 → `F.interpolate` to 224×224 **bicubic, a squash** (no aspect kept, no crop) →
CLIP mean/std → `CLIPModel.get_image_features` (the projected embedding) → L2-normalise → cosine. UAE's loss
is 1 − cos, so the reward is the cosine. Only CLIP-L/14 is wired there (`openai/clip-vit-large-patch14`).

Written here rather than through `CLIPProcessor` because the processor crops: the squash is the point.
`model: tiny` builds a seeded tiny `CLIPModel` from config (the same class), so a real-size recipe's wiring
runs offline (recipes' `tiny: true`).
"""
from __future__ import annotations

from uae_data.core.errors import ModelLoadError
from uae_eval.metrics.base import METRICS, EmbeddingCosine, default_device, embed_in_batches

UAE_CLIP_MODEL = "openai/clip-vit-large-patch14"
SIDE = 224
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's normalisation, as UAE's clip_score.py hard-codes
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
OPTION = "reward_options.uae-clip.model=PATH (a local CLIPModel folder)"


def tiny_clip(seed: int = 0):
    """A seeded tiny `CLIPModel` (random weights, 224 px input as the real one) for offline wiring tests."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, vocab_size=99, max_position_embeddings=77,
                                      bos_token_id=0, eos_token_id=1, pad_token_id=1),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, image_size=SIDE, patch_size=32),
                     projection_dim=16)
    torch.manual_seed(seed)
    return CLIPModel(cfg)


def squash_pixels(images: list, device: str = "cpu", dtype=None):
    """UAE's preprocessing of a batch of PIL images: [0,255] → /255 → bicubic interpolate to 224×224
    (align_corners False, F.interpolate's default) → CLIP mean/std. Returns (B, 3, 224, 224)."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    x = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
                     for im in images]) if len({im.size for im in images}) == 1 else None
    if x is None:  # differently sized images: squash each on its own (what a per-image call would do)
        return torch.cat([squash_pixels([im], device, dtype) for im in images])
    x = F.interpolate(x.to(device) / 255.0, size=(SIDE, SIDE), mode="bicubic", align_corners=False)
    mean = torch.tensor(CLIP_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x if dtype is None else x.to(dtype)


@METRICS.register("uae-clip")
class UaeClipReward(EmbeddingCosine):
    """model: a CLIPModel folder or hub id (default UAE's CLIP-L/14), or "tiny"."""

    higher_is_better = True

    def __init__(self, model: str = UAE_CLIP_MODEL, device: str | None = None, batch_size: int = 32,
                 dtype: str = "float32", seed: int = 0) -> None:
        from uae_eval.metrics.dino import DTYPES, torch_dtype

        self.name, self.device, self.batch_size = str(model), default_device(device), batch_size
        self.dtype = DTYPES.get(dtype, dtype)
        dt = torch_dtype(dtype, "uae-clip")
        if self.name == "tiny":
            clip = tiny_clip(seed)
        else:
            from transformers import CLIPModel

            from uae_data.model_refs import require_model

            require_model(self.name, OPTION, "uae-clip model")
            try:
                clip = CLIPModel.from_pretrained(self.name, use_safetensors=True)
            except (OSError, ValueError) as e:
                raise ModelLoadError(f"uae-clip: cannot load {self.name!r} as a CLIPModel (safetensors): "
                                     f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        self.model = clip.to(device=self.device, dtype=dt).eval()

    def embed(self, images: list):
        """(N, D) L2-normalised float32 projected image features."""
        def features(batch):
            x = squash_pixels(batch, self.device, self.model.dtype)
            out = self.model.get_image_features(pixel_values=x)
            return getattr(out, "pooler_output", out)  # newer transformers return an output object

        return embed_in_batches(images, self.batch_size, features)

    def provenance(self) -> dict:
        return {"metric": "uae-clip", "model": self.name, "dtype": self.dtype,
                "feature": "CLIPModel.get_image_features (projected), L2-normalised; reward = cosine",
                "preprocess": {"resize": f"{SIDE}x{SIDE} bicubic squash (F.interpolate, no crop)",
                               "scale": "/255", "image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD)},
                "source": "UAE uae/models/clip_score.py"}
