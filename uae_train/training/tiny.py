"""`tiny: true`: run a real-size recipe with tiny models of the same classes, so its wiring runs offline.

A recipe such as manifests/train/uae/ names Qwen2.5-VL-3B, SD3.5 and CLIP-L/14 by hub id and sizes batches
for 80 GB GPUs. With `tiny: true` every model it names is swapped for a seeded tiny one built from config
of the same class (Qwen2_5_VLForConditionalGeneration, SD3Transformer2DModel + AutoencoderKL, CLIPModel) and
every size that costs time (image side, batch, group, tokens, sampling steps, eval sizes) is capped, while
everything else (LoRA, loss, reward terms, Flow-GRPO settings, schedules) stays as written. The run's
config.yaml records `tiny: true` beside the substituted values. Optimizer step counts are not touched: say
`steps=2` (or `decoder_steps=2`) on the command line for a wiring check.
"""
from __future__ import annotations

import inspect
from typing import Any

TINY_IMAGE = 32
# field -> cap: a recipe's value is lowered to the cap, never raised (a field a config lacks is skipped)
CAPS: dict[str, int] = {
    "image_size": TINY_IMAGE, "batch_size": 2, "decoder_batch_size": 2, "grad_accum": 2, "max_text_tokens": 64,
    "reliance_samples": 4, "log_every": 1, "warmup_steps": 1,
    "images_per_step": 2, "group_size": 2, "micro_batch": 4, "max_new_tokens": 16, "eval_images": 2,
    "decoder_steps": 2, "rollout_steps": 3, "eval_steps": 2, "mmt_limit": 4, "eval_geneval_prompts": 2,
}
TINY_TERMS = ("uae-clip",)  # reward terms whose `model` option takes "tiny"


def _accepted(fn: Any) -> set[str]:
    return set(inspect.signature(fn).parameters)


def _tiny_encoder_options(options: dict) -> dict:
    """The options Encoder.tiny also takes (lora, dtype, prompt); hub-only ones are dropped."""
    from uae_train.models.encoder import Encoder

    keep = _accepted(Encoder.tiny) - {"image_size", "seed", "device"}
    return {k: v for k, v in options.items() if k in keep}


def _tiny_decoder_options(options: dict) -> dict:
    """DecoderConfig fields (LoRA, connector, timestep sampling ...) survive; loading options (torch_dtype)
    and base_model go; the tiny decoder gets SD3's latent path (a tiny AutoencoderKL), as the real one."""
    from dataclasses import fields

    from uae_train.models.decoder import DecoderConfig

    keep = {f.name for f in fields(DecoderConfig)} - {"text_hidden_size", "base_model", "vocab_size"}
    return {**{k: v for k, v in options.items() if k in keep}, "latent": "vae"}


def shrink(cfg: Any) -> None:
    """Apply `tiny: true` to a training config in place (before validation)."""
    for name, cap in CAPS.items():
        value = getattr(cfg, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > cap:
            setattr(cfg, name, cap)
    if getattr(cfg, "encoder", None) not in (None, "tiny"):
        cfg.encoder = "tiny"
        cfg.encoder_options = _tiny_encoder_options(cfg.encoder_options)
    if getattr(cfg, "decoder", None) not in (None, "tiny"):
        cfg.decoder = "tiny"
        cfg.decoder_options = _tiny_decoder_options(cfg.decoder_options)
    options = getattr(cfg, "reward_options", None)
    if options is not None:
        cfg.reward_options = {**options, **{t: {**options.get(t, {}), "model": "tiny"}
                                            for t in TINY_TERMS if t in cfg.reward}}
