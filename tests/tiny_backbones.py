"""Tiny Unified-Bench backbones of the real classes, built from config with seeded random weights and saved
the way the real ones are published, so tests load them through the production code path (a local path in
place of a hub name): open_clip CLIP, a transformers CLIPModel (clip-hf), LongCLIP (released .pt layout, and a
transformers CLIPModel folder), DINOv2 and DINOv3."""
from __future__ import annotations

from pathlib import Path

import torch

from benchmarks.tiny_geneval_models import tiny_clip

__all__ = ["tiny_clip", "tiny_clip_hf", "tiny_longclip_file", "tiny_longclip_hf", "tiny_dinov2", "tiny_dinov3", "tiny_backbones"]


def tiny_longclip_file(path: Path, seed: int = 0, positions: int = 248) -> Path:
    """A LongCLIP checkpoint in the released layout: an OpenAI-CLIP state dict (ViT 64 wide, 32 px) with a
    `positions`-long text table plus `positional_embedding_res`, saved with torch.save."""
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.CLIP(32, vision_cfg=open_clip.CLIPVisionCfg(layers=2, width=64, patch_size=8, image_size=32),
                           text_cfg=open_clip.CLIPTextCfg(context_length=positions, vocab_size=100, width=64,
                                                          heads=1, layers=1), quick_gelu=True)
    sd = model.state_dict()
    if positions == 248:
        sd["positional_embedding_res"] = torch.randn_like(sd["positional_embedding"]) * 0.01
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path


def tiny_clip_hf(path: Path, seed: int = 0) -> Path:
    """A transformers CLIPModel (77 text positions) + a CLIPImageProcessor (32 px), as openai/clip-vit-large-patch14
    is published."""
    return tiny_longclip_hf(path, seed, positions=77)


def tiny_longclip_hf(path: Path, seed: int = 0, positions: int = 248) -> Path:
    """A transformers CLIPModel with `positions` (248: LongCLIP) text positions + a CLIPImageProcessor (32 px)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": positions},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16)
    CLIPModel(config).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return Path(path)


def tiny_dinov2(path: Path, seed: int = 0) -> Path:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             image_size=32, patch_size=8)).save_pretrained(path)
    BitImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32}, do_center_crop=True,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(path)
    return Path(path)


def tiny_dinov3(path: Path, seed: int = 0) -> Path:
    from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessor, DINOv3ViTModel

    torch.manual_seed(seed)
    DINOv3ViTModel(DINOv3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                   image_size=32, patch_size=8, num_register_tokens=4)).save_pretrained(path)
    DINOv3ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return Path(path)


def tiny_backbones(root: Path) -> dict[str, str]:
    """The Unified-Bench backbones under `root` ({metric name: local path}): clip-hf, longclip, dino, dinov3, and
    open_clip's clip as the alternative CLIP."""
    root = Path(root)
    return {"clip-hf": str(tiny_clip_hf(root / "clip-hf", seed=2)), "clip": str(tiny_clip(root / "clip")), "longclip": str(tiny_longclip_file(root / "longclip-L.pt", seed=1)),
            "dino": str(tiny_dinov2(root / "dinov2")), "dinov3": str(tiny_dinov3(root / "dinov3"))}
