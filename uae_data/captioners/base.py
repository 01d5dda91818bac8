"""What the uae_data.captioners plug-ins share: the registry, the config and item types (the package's
`build_*` imports the plug-ins; they import this module, never the package, so no import cycle)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from uae_data.core.config import help_field
from uae_data.core.registry import Registry
from uae_data.sources import SourceItem
from uae_data.web_captions import WebCaptionConfig


@dataclass
class CaptionerConfig:
    name: str = help_field("scene", help="captioner backend: scene (exact) | web (scene, web-style: names some objects) | "
                                         "keep (source caption) | hf (any transformers VLM)")
    model: str | None = help_field(None, help="model name or local path (model-based captioners)")
    prompt: str | None = help_field(None, help="instruction for model-based captioners (default: the long-caption prompt in captioners/hf.py)")
    max_new_tokens: int = help_field(512, help="generation limit; captions that hit it are flagged truncated")
    batch_size: int = help_field(8, help="images per generation batch")
    options: dict[str, Any] = help_field({}, help="backend-specific options (hf: device, dtype, other from_pretrained kwargs)")
    web: WebCaptionConfig = help_field(None, help="web: how often objects are named, attributes left out, and the forms")

    def __post_init__(self) -> None:
        self.web = self.web or WebCaptionConfig()

    def validate(self) -> None:
        if self.name not in ("scene", "web", "keep", "hf"):
            raise ValueError(f"captioner.name must be one of scene, web, keep, hf; got {self.name!r}")
        if self.name == "hf" and not self.model:
            raise ValueError("captioner 'hf' needs captioner.model (a hub name or local folder; CLI --caption-model)")
        if self.name != "hf" and self.model:  # an option that is not read must not look as if it were
            raise ValueError(f"captioner.model ({self.model}) is read by captioner 'hf' only, not '{self.name}'; "
                             "drop --caption-model or add --captioner hf")
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ValueError("captioner.max_new_tokens and captioner.batch_size must be >= 1")


@dataclass
class Caption:
    text: str
    model: str
    truncated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # extra sample meta (web: the exact caption, audit counts)


class Captioner(Protocol):
    def __call__(self, items: list[SourceItem]) -> list[Caption]: ...


CAPTIONERS: Registry = Registry("captioner")
