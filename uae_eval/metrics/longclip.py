"""LongCLIP image-image cosine (Unified-Bench, facts §1): LongCLIP-L is a CLIP ViT-L/14 fine-tuned for 248
text positions; reconstruction scores use only its image side (the projected global image embedding, as
`clip`), through CLIP's eval transform (shortest side to 224 bicubic, centre crop, CLIP mean/std).

Two published forms load:
- the released checkpoint file (`longclip-L.pt`, OpenAI-CLIP key layout plus `positional_embedding_res`):
  read with torch.load(weights_only=True) or safetensors, built as an open_clip CLIP. LongCLIP's text side
  adds `positional_embedding` on positions < 20 and `positional_embedding_res` on the rest; we fold both into
  one table (exact: the two masks partition the positions), so the open_clip model holds the whole network.
- a transformers `CLIPModel` folder (config.json, text max_position_embeddings 248), e.g. a converted copy.
A model whose text side does not have 248 positions is refused: it is plain CLIP, not LongCLIP.

Precision, as Unified-Bench's LongCLIP.py gets it from `longclip.load`: on a GPU the model keeps OpenAI CLIP's
fp16 conversion (convolutions, linear and attention weights and the projection in fp16; LayerNorm weights,
class and position embeddings in fp32, LayerNorm computed in fp32), on the CPU it is cast to fp32.
`dtype: auto` does that (the unified-bench preset sets it); `float16` / `bfloat16` use the same mixed recipe
for the checkpoint file, `float32` (the default) is fp32 everywhere.
"""
from __future__ import annotations

from pathlib import Path

from uae_data.core.errors import ModelLoadError
from uae_eval.metrics.base import METRICS, EmbeddingCosine, default_device, embed_in_batches
from uae_eval.metrics.clip import OpenClipEmbedder, open_clip_preprocess

LONGCLIP_POSITIONS = 248
SHORT_POSITIONS = 20  # LongCLIP keeps CLIP's first 20 positions (mask1) and learns the rest (mask2)
HUB_FILE = "longclip-L.pt"
OPTION = "metric_options.longclip.model=PATH (the longclip-L.pt file or a CLIPModel folder)"


def read_state_dict(path: Path) -> dict:
    """Tensors only: safetensors, or torch.load(weights_only=True) (a pickle that holds anything else fails)."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  any unreadable file is one line for the user
        raise ModelLoadError(f"longclip: cannot read {path} as a weights-only checkpoint: "
                             f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "visual.conv1.weight" not in sd or "positional_embedding" not in sd:
        raise ModelLoadError(f"longclip: {path} is not a CLIP checkpoint in the OpenAI key layout "
                             f"(no visual.conv1.weight / positional_embedding)")
    return dict(sd)


def fold_positions(sd: dict) -> dict:
    """LongCLIP's two positional tables as one: rows < 20 from `positional_embedding`, the rest from
    `positional_embedding_res` (what LongCLIP's encode_text adds through mask1 / mask2)."""
    sd = dict(sd)
    res = sd.pop("positional_embedding_res", None)
    if res is not None:
        pos = sd["positional_embedding"].clone()
        pos[SHORT_POSITIONS:] = res[SHORT_POSITIONS:]
        sd["positional_embedding"] = pos
    return sd


def clip_from_openai_state_dict(sd: dict, low_precision=None):
    """An open_clip ViT CLIP shaped after an OpenAI-layout state dict: fp32, or with `low_precision` (a torch
    dtype) OpenAI's mixed recipe (LayerNorm in fp32, see the module docstring).

    Why not open_clip's build_model_from_openai_state_dict: it casts the model to fp16 before loading, which
    would round fp32 weights; the shape inference below is the same.
    """
    import open_clip

    width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = sd["ln_final.weight"].shape[0]
    vision = open_clip.CLIPVisionCfg(
        layers=len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")]),
        width=width, patch_size=patch, image_size=patch * grid, head_width=64)
    text = open_clip.CLIPTextCfg(
        context_length=sd["positional_embedding"].shape[0], vocab_size=sd["token_embedding.weight"].shape[0],
        width=text_width, heads=max(1, text_width // 64),
        layers=len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks")}))
    model = open_clip.CLIP(sd["text_projection"].shape[1], vision_cfg=vision, text_cfg=text, quick_gelu=True,
                           cast_dtype=low_precision)  # low precision: LayerNormFp32, as OpenAI's LayerNorm
    for key in ("input_resolution", "context_length", "vocab_size"):
        sd.pop(key, None)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"longclip: checkpoint does not fit a CLIP ViT: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
    if low_precision is not None:
        from open_clip.model import convert_weights_to_lp

        convert_weights_to_lp(model, low_precision)  # the layers OpenAI's convert_weights puts in fp16
    return model.eval()


@METRICS.register("longclip")
class LongClipSimilarity(EmbeddingCosine):
    """model: the released LongCLIP checkpoint file, a transformers CLIPModel folder, or a hub repo that
    holds `longclip-L.pt` (BeichenZhang/LongCLIP-L, downloaded when online)."""

    higher_is_better = True

    def __init__(self, model: str = "BeichenZhang/LongCLIP-L", device: str | None = None, batch_size: int = 32,
                 dtype: str = "float32") -> None:
        from uae_data.model_refs import require_model

        self.name = str(model)
        device = default_device(device)
        if dtype == "auto":  # what longclip.load gives: fp16 (mixed) on a GPU, fp32 on the CPU
            dtype = "float16" if str(device).startswith("cuda") else "float32"
        require_model(self.name, OPTION, "LongCLIP model", cache_file=HUB_FILE)
        path = Path(self.name).expanduser()
        if not path.exists():  # a hub repo holding the released file
            from huggingface_hub import hf_hub_download

            try:
                path = Path(hf_hub_download(self.name, HUB_FILE))
            except Exception as e:  # noqa: BLE001
                raise ModelLoadError(f"longclip: cannot fetch {HUB_FILE} from {self.name}: {str(e).splitlines()[0]}; "
                                     f"pass {OPTION}") from None
        if path.is_dir():
            self.impl: EmbeddingCosine = _HFClip(path, device, batch_size, dtype)
        else:
            self.impl = _OpenAIFileClip(path, device, batch_size, dtype)
        if self.impl.positions != LONGCLIP_POSITIONS:
            raise ModelLoadError(f"longclip: {self.name} has {self.impl.positions} text positions; LongCLIP has "
                                 f"{LONGCLIP_POSITIONS} (this is plain CLIP: use the clip metric)")
        self.dtype = self.impl.dtype

    def embed(self, images: list):
        return self.impl.embed(images)

    def provenance(self) -> dict:
        return {"metric": "longclip", "model": self.name, "text_positions": self.impl.positions,
                "form": self.impl.form, "feature": "projected global image embedding", "dtype": self.dtype,
                "preprocess": self.impl.preprocess_summary()}


class _OpenAIFileClip(OpenClipEmbedder):
    form = "checkpoint file (OpenAI key layout) as open_clip CLIP"

    def __init__(self, path: Path, device: str, batch_size: int, dtype: str) -> None:
        from open_clip.transform import image_transform

        from uae_eval.metrics.dino import DTYPES, torch_dtype

        sd = fold_positions(read_state_dict(path))
        self.positions = int(sd["positional_embedding"].shape[0])
        mixed = DTYPES.get(dtype) in ("float16", "bfloat16")
        model = clip_from_openai_state_dict(sd, torch_dtype(dtype, "longclip") if mixed else None)
        # LongCLIP's own _transform(n_px): Resize(n_px, bicubic), CenterCrop, RGB, ToTensor, CLIP mean/std
        model.visual.preprocess_cfg = {"size": model.visual.image_size, "mode": "RGB", "interpolation": "bicubic",
                                       "resize_mode": "shortest", "mean": (0.48145466, 0.4578275, 0.40821073),
                                       "std": (0.26862954, 0.26130258, 0.27577711)}
        preprocess = image_transform(model.visual.image_size, is_train=False)
        self._setup(model, preprocess, device, batch_size, dtype, "longclip", cast=not mixed)

    def preprocess_summary(self) -> dict:
        return open_clip_preprocess(self.model)


class _HFClip(EmbeddingCosine):
    form = "transformers CLIPModel"

    def __init__(self, path: Path, device: str, batch_size: int, dtype: str) -> None:
        from transformers import AutoConfig, CLIPImageProcessor, CLIPModel

        from uae_eval.metrics.dino import DTYPES, torch_dtype

        try:
            config = AutoConfig.from_pretrained(path)
            if config.model_type != "clip":
                raise ModelLoadError(f"longclip: {path} holds a {config.model_type!r} model, not a CLIPModel")
            self.processor = CLIPImageProcessor.from_pretrained(path)
            self.model = CLIPModel.from_pretrained(path, dtype=torch_dtype(dtype, "longclip")).to(device).eval()
        except (OSError, ValueError) as e:
            if isinstance(e, ModelLoadError):
                raise
            raise ModelLoadError(f"longclip: cannot load {path}: {str(e).splitlines()[0]}") from None
        self.positions = int(config.text_config.max_position_embeddings)
        self.device, self.batch_size, self.dtype = device, batch_size, DTYPES.get(dtype, dtype)

    def embed(self, images: list):
        def projected(batch):  # what CLIPModel.get_image_features returns
            x = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            vision = self.model.vision_model(pixel_values=x.to(self.device, dtype=self.model.dtype))
            return self.model.visual_projection(vision.pooler_output)

        return embed_in_batches(images, self.batch_size, projected)

    def preprocess_summary(self) -> dict:
        from uae_eval.metrics.dino import processor_summary

        return processor_summary(self.processor)
