"""Models for benchmarks/gpu_check.py, built from config with random weights (no downloads), at two sizes.

real  Qwen2.5-VL-3B-shaped encoder (the config of benchmarks/train_step.py) with a word-level tokenizer of
      Qwen's full 151,936-id vocabulary (Qwen's special tokens at their real ids, every other id one synthetic
      word "w<i>", so any sampled id decodes to one word and re-encodes to the same id) and Qwen's image
      processor at its default pixel limits (a 512x512 image -> 504x504 -> 324 image tokens);
      SD3.5-Medium-shaped decoder: SD3Transformer2DModel (24 layers, 24 heads x 64, dual attention in
      layers 0-12, qk RMSNorm, joint_attention_dim 4096) + SD3's 16-channel VAE + UAE's connector
      (2048 -> 8192 -> 4096), wrapped in uae's `Decoder`; sample_size 64 so its default size is 512x512
      (SD3.5-M's own is 128 -> 1024 px; the DiT's weights and cost per token do not change);
      CLIP ViT-L/14-shaped `CLIPModel` (the `uae-clip` reward's model).
tiny  the same classes from tiny configs, so a CPU run goes through every line the real run does.

The synthetic tokenizer makes captions exactly as long in tokens as in words; real Qwen captions of the same
token count are shorter texts, which changes nothing the check measures. Chat template: Qwen2-VL's layout
with its default system turn.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from uae_train.models.decoder import Decoder, DecoderConfig
from uae_train.models.encoder import Encoder
from uae_train.models.encoder_lora import lora_config
from uae_train.models.model_runtime import move_model, seeded

# Qwen2.5's special tokens, as offsets from its first special id (151643 in the real vocabulary)
QWEN_SPECIALS = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "<|vision_start|>": 9,
                 "<|vision_end|>": 10, "<|image_pad|>": 12, "<|video_pad|>": 13}
# words the chat template, the roles and the caption prompt use (the rest of the vocabulary is "w<i>")
TEMPLATE_WORDS = ("<unk>", "system", "user", "assistant", "generate", "You", "are", "a", "helpful", "assistant.",
                  "Describe", "this", "image", "in", "detail.")
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@dataclass(frozen=True)
class Shapes:
    """Every model size of one mode."""

    name: str
    n_words: int  # ids below this are words; Qwen's specials start here
    vocab_size: int
    text: dict[str, Any]  # Qwen2.5-VL text_config (without vocab / special ids)
    vision: dict[str, Any]
    min_pixels: int
    max_pixels: int
    dit: dict[str, Any]  # SD3Transformer2DModel kwargs
    vae: dict[str, Any]  # AutoencoderKL kwargs
    clip: dict[str, Any]  # CLIPConfig kwargs
    image_size: int  # decoder output side (pixels)


REAL = Shapes(
    name="real", n_words=151643, vocab_size=151936,
    text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
              num_key_value_heads=2, max_position_embeddings=32768, tie_word_embeddings=True,
              rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0}),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                fullatt_block_indexes=[7, 15, 23, 31]),
    min_pixels=56 * 56, max_pixels=28 * 28 * 1280,  # Qwen2.5-VL's processor defaults
    dit=dict(sample_size=64, patch_size=2, in_channels=16, out_channels=16, num_layers=24, attention_head_dim=64,
             num_attention_heads=24, joint_attention_dim=4096, caption_projection_dim=1536,
             pooled_projection_dim=2048, pos_embed_max_size=384, dual_attention_layers=tuple(range(13)),
             qk_norm="rms_norm"),
    vae=dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
             up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
             latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=1.5305, shift_factor=0.0609,
             use_quant_conv=False, use_post_quant_conv=False),
    clip=dict(text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                               max_position_embeddings=77, vocab_size=49408),
              vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                 num_attention_heads=16, image_size=224, patch_size=14),
              projection_dim=768),
    image_size=512)

TINY = Shapes(
    name="tiny", n_words=1024, vocab_size=1040,
    text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True,
              rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}),
    vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=14,
                spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[1]),
    min_pixels=56 * 56, max_pixels=56 * 56,
    dit=dict(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16,
             num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=32, pooled_projection_dim=16,
             pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm"),
    vae=dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
             up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
             latent_channels=16, norm_num_groups=4, sample_size=32, scaling_factor=1.5305, shift_factor=0.0609,
             use_quant_conv=False, use_post_quant_conv=False),
    clip=dict(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               vocab_size=99, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                               pad_token_id=1),
              vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                 image_size=224, patch_size=32),
              projection_dim=16),
    image_size=32)


def word(i: int) -> str:
    return f"w{i}"


def vocabulary(shapes: Shapes) -> dict[str, int]:
    """token -> id: template words, then "w<i>" fillers up to n_words, Qwen's specials at their offsets after."""
    vocab = {t: i for i, t in enumerate(TEMPLATE_WORDS)}
    specials = {shapes.n_words + off: tok for tok, off in QWEN_SPECIALS.items()}
    for i in range(len(TEMPLATE_WORDS), shapes.vocab_size):
        vocab[specials.get(i, word(i))] = i
    return vocab


def build_tokenizer(shapes: Shapes):
    """A word-level PreTrainedTokenizerFast over `vocabulary(shapes)` (pad <|endoftext|>, eos <|im_end|>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=vocabulary(shapes), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", clean_up_tokenization_spaces=False,
                                   model_max_length=32768, padding_side="right")
    fast.add_special_tokens({"additional_special_tokens": [t for t in QWEN_SPECIALS
                                                           if t not in ("<|endoftext|>", "<|im_end|>")]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_encoder(shapes: Shapes, device: torch.device, lora: dict | None = None, seed: int = 0) -> Encoder:
    """uae's `Encoder` around a random Qwen2_5_VLForConditionalGeneration: bf16 on CUDA, fp32 on CPU (as
    `Encoder.from_pretrained`), rotary buffers kept fp32; LoRA (uae's `lora_config`) when given."""
    from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                              Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

    tokenizer = build_tokenizer(shapes)
    ids = {t: shapes.n_words + off for t, off in QWEN_SPECIALS.items()}
    text = dict(shapes.text, vocab_size=shapes.vocab_size, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
                pad_token_id=ids["<|endoftext|>"])
    config = Qwen2_5_VLConfig(text_config=text, vision_config=shapes.vision, image_token_id=ids["<|image_pad|>"],
                              video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                              vision_end_token_id=ids["<|vision_end|>"])
    with seeded(seed, device), device:
        model = Qwen2_5_VLForConditionalGeneration(config)
        gen = model.generation_config
        gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]], \
            ids["<|endoftext|>"], None
        move_model(model, device, torch.bfloat16 if device.type == "cuda" else torch.float32)
        if lora is not None:
            from peft import get_peft_model

            model = get_peft_model(model, lora_config(lora))
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=shapes.min_pixels, max_pixels=shapes.max_pixels,
                                              patch_size=14, merge_size=2),
        tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
    model.eval()
    return Encoder(model, processor, name_or_path=f"random qwen2.5-vl ({shapes.name})")


def build_decoder(shapes: Shapes, device: torch.device, text_hidden_size: int, lora_rank: int = 0,
                  seed: int = 0) -> Decoder:
    """uae's `Decoder` (fp32 weights, as loaded by `Decoder.from_pretrained`; stages run it under bf16
    autocast on CUDA) around a random SD3Transformer2DModel + AutoencoderKL, SD3's scheduler (shift 3)."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

    with seeded(seed, device), device:
        transformer = SD3Transformer2DModel(**shapes.dit)
        vae = AutoencoderKL(**shapes.vae)
        config = DecoderConfig(text_hidden_size=text_hidden_size, lora_rank=lora_rank, lora_alpha=2.0 * lora_rank)
        decoder = Decoder(transformer, FlowMatchEulerDiscreteScheduler(shift=3.0), config, vae=vae)
    return decoder.eval()


def save_clip(shapes: Shapes, path: Path, device: torch.device, seed: int = 0) -> Path:
    """A random CLIPModel (ViT-L/14-shaped for real) saved as a local folder for `uae-clip`'s model= option
    (built on `device`, which is faster than CPU for 428M parameters)."""
    from transformers import CLIPConfig, CLIPModel

    with seeded(seed, device), device:
        CLIPModel(CLIPConfig(**shapes.clip)).save_pretrained(path)
    return Path(path)


def random_captions(n: int, tokens: int, shapes: Shapes, seed: int = 0) -> list[str]:
    """n captions of `tokens` random filler words (one token each)."""
    rng = np.random.default_rng(seed)
    lo = len(TEMPLATE_WORDS)
    return [" ".join(word(int(i)) for i in rng.integers(lo, shapes.n_words, tokens)) for _ in range(n)]


def random_images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    """n RGB noise images size x size (content does not change any cost measured)."""
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def real_shapes_line() -> str:
    """Parameter counts of the real-size models, built on the meta device (no memory, a few seconds), and the
    image tokens of a 512x512 image: the sizes the real run uses, stated (and checked) even by a tiny run."""
    meta = torch.device("meta")

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for n, p in module.named_parameters() if "lora_" not in n)

    encoder = build_encoder(REAL, meta)
    decoder = build_decoder(REAL, meta, encoder.hidden_size)
    from transformers import CLIPConfig, CLIPModel

    with meta:
        clip = CLIPModel(CLIPConfig(**REAL.clip))
    inputs = encoder.processor(text=[encoder._prompt_text(None)], images=random_images(1, 512), return_tensors="pt")
    image_tokens = int((inputs["input_ids"] == REAL.n_words + QWEN_SPECIALS["<|image_pad|>"]).sum())
    return (f"encoder {count(encoder.model) / 1e9:.2f}B params (vocab {REAL.vocab_size}), DiT "
            f"{count(decoder.transformer) / 1e9:.2f}B, VAE {count(decoder.vae) / 1e6:.0f}M, connector "
            f"{count(decoder.connector) / 1e6:.0f}M, CLIP {count(clip) / 1e6:.0f}M; a 512x512 image -> "
            f"{image_tokens} image tokens")
