"""Captioners (registry): turn source items into the long captions stored in the corpus."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from uae_data.config import help_field
from uae_data.registry import Registry
from uae_data.sources import SourceItem


@dataclass
class CaptionerConfig:
    name: str = help_field("scene", help="captioner backend: scene (exact) | keep (source caption)")
    model: str | None = help_field(None, help="model name or local path (model-based captioners)")
    prompt: str | None = help_field(None, help="instruction for model-based captioners")
    max_new_tokens: int = help_field(512, help="generation limit; captions that hit it are flagged truncated")
    batch_size: int = help_field(8, help="images per generation batch")
    options: dict[str, Any] = help_field({}, help="backend-specific options")


@dataclass
class Caption:
    text: str
    model: str
    truncated: bool = False


class Captioner(Protocol):
    def __call__(self, items: list[SourceItem]) -> list[Caption]: ...


CAPTIONERS: Registry = Registry("captioner")


def build_captioner(cfg: CaptionerConfig, seed: int) -> Captioner:
    from uae_data.captioners import basic  # noqa: F401  (registers)

    return CAPTIONERS.get(cfg.name)(cfg, seed)
