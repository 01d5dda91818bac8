"""Captioners (registry): turn source items into the long captions stored in the corpus.
"""
from __future__ import annotations

from uae_data.captioners.base import (  # noqa: F401  (the package's public names)
    CAPTIONERS,
    Caption,
    Captioner,
    CaptionerConfig,
)


def build_captioner(cfg: CaptionerConfig, seed: int) -> Captioner:
    from uae_data.captioners import basic  # noqa: F401  (registers)

    if cfg.name == "hf":
        from uae_data.captioners import hf  # noqa: F401  (registers; imports torch/transformers only when used)
    if cfg.name == "openai":
        from uae_data.captioners import openai_api  # noqa: F401  (registers; imports aiohttp only when used)

    return CAPTIONERS.get(cfg.name)(cfg, seed)
