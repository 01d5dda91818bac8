"""A tiny Qwen2.5-VL built from configs with the scene tokenizer, so tests run the production model class.

`Encoder.tiny` wraps this; its docstring says what the sizes mean.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from uae_train.models.encoder_lora import lora_config
from uae_train.models.model_runtime import seeded


def build_tiny_qwen(image_size: int = 64, seed: int = 0, lora: dict | None = None, text_width: int = 64,
                    text_layers: int = 2, vision_width: int = 32, vision_patch: int = 14,
                    cell_embedding: bool = False) -> tuple[torch.nn.Module, Any]:
    """(model on cpu in fp32, processor); the weights (and LoRA) are a function of `seed` alone."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    from uae_train.models.scene_tokenizer import CHAT_TEMPLATE, build_scene_tokenizer

    tokenizer = build_scene_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>",
            "<|im_end|>")}
    if vision_patch not in (7, 14):
        raise ValueError(f"vision_patch {vision_patch}: expected 14 (2 x 2 merge) or 7 (4 x 4 merge)")
    if text_width % 16 or text_layers < 1:
        raise ValueError(f"text_width {text_width} must be a multiple of 16 and text_layers {text_layers} >= 1")
    half = text_width // 8  # head_dim / 2 with 4 heads
    section = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]  # 64 wide: [2, 3, 3]
    text = dict(vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=2 * text_width,
                num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=4096,
                # the three mrope sections (temporal, height, width) must sum to head_dim / 2
                rope_parameters={"rope_type": "default", "mrope_section": section, "rope_theta": 10000.0},
                bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    vision = dict(depth=2, hidden_size=vision_width, intermediate_size=2 * vision_width, num_heads=2,
                  out_hidden_size=text_width,
                  patch_size=vision_patch, spatial_merge_size=28 // vision_patch, temporal_patch_size=2,
                  window_size=112,
                  fullatt_block_indexes=[1])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"],
                              vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"])
    side = 28 * max(3, math.ceil(image_size / 28))  # the image side the processor resizes to
    with seeded(seed, torch.device("cpu")):
        model = Qwen2_5_VLForConditionalGeneration(config)
        model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
        model.generation_config.pad_token_id = ids["<|endoftext|>"]
        model.generation_config.bos_token_id = None
        if cell_embedding:
            from uae_train.models import cell_embedding as cells

            cells.attach(model, cells.CellEmbedding(side // 28, text_width))
        if lora is not None:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config(lora))
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=side * side, max_pixels=side * side,
                                              patch_size=vision_patch, merge_size=28 // vision_patch),
        tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    return model, processor
