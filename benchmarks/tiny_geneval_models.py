"""Tiny GenEval detector / colour models built from config with seeded random weights, saved the way the
real ones are published, so tests and benchmarks/geneval_scoring.py load them through the same code path (a
local folder instead of a hub name). It lives here, not in tests/, so the benchmark needs no sys.path edit."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from uae_eval.geneval.prompts import load_class_names, official_class_names_path

TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def tiny_mask2former(path: Path, seed: int = 0, num_queries: int = 12, id2label: dict[int, str] | None = None) -> Path:
    """A Swin Mask2Former (COCO instance layout: GenEval's 80 classes unless id2label is given) in `path`:
    config.json + model.safetensors + preprocessor_config.json (shortest edge 64, longest 128)."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor, SwinConfig

    if id2label is None:
        id2label = dict(enumerate(load_class_names(official_class_names_path())))
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(
        backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=32,
        encoder_layers=1, decoder_layers=2, num_attention_heads=2, dim_feedforward=32, num_queries=num_queries,
        id2label=id2label, label2id={v: k for k, v in id2label.items()})
    torch.manual_seed(seed)
    Mask2FormerForUniversalSegmentation(config).save_pretrained(path)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}).save_pretrained(path)
    return Path(path)


def tiny_clip(path: Path, seed: int = 0) -> Path:
    """An open_clip CLIP in `path` as open_clip's save_for_hf lays it out: open_clip_config.json
    (model_cfg + preprocess_cfg) + open_clip_model.safetensors. Uses the packaged BPE tokenizer."""
    import open_clip
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**TINY_CLIP_CONFIG)
    save_file(model.state_dict(), path / "open_clip_model.safetensors")
    preprocess = {"mean": list(OPENAI_DATASET_MEAN), "std": list(OPENAI_DATASET_STD)}
    (path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": preprocess}))
    return path
