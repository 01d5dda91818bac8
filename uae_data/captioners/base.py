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
                                         "keep (source caption) | hf (any transformers VLM) | openai (any OpenAI-compatible server: vLLM, SGLang, lmdeploy)")
    model: str | None = help_field(None, help="model name or local path (hf); the served model's name (openai)")
    prompt: str | None = help_field(None, help="instruction for model-based captioners (default: the long-caption prompt in captioners/hf.py)")
    max_new_tokens: int = help_field(512, help="generation limit (openai: the request's max_tokens); captions that hit it are flagged truncated")
    max_tokens: int | None = help_field(None, help="openai: the OpenAI API's name for max_new_tokens (give either; both must agree)")
    batch_size: int = help_field(8, help="images per generation batch")
    options: dict[str, Any] = help_field({}, help="backend-specific options (hf: device, dtype, other from_pretrained kwargs)")
    endpoint: str | None = help_field(None, help="openai: the server's base URL, e.g. http://127.0.0.1:8000/v1 (vllm serve)")
    api_key_env: str | None = help_field(None, help="openai: name of the environment variable holding the API key (the key is never written anywhere)")
    temperature: float = help_field(0.0, help="openai: sampling temperature (0: greedy, reproducible)")
    seed: int | None = help_field(None, help="openai: the request's seed (default: the corpus seed)")
    image_side: int | None = help_field(None, help="openai: send images shrunk to at most this many pixels on their longer side (None: as stored)")
    concurrency: int = help_field(32, help="openai: requests in flight per build worker (total: workers x concurrency)")
    timeout: float = help_field(120.0, help="openai: seconds per request attempt")
    retries: int = help_field(5, help="openai: retries with backoff on 429, 5xx, dropped connections, timeouts and unparsable answers")
    web: WebCaptionConfig = help_field(None, help="web: how often objects are named, attributes left out, and the forms")

    def __post_init__(self) -> None:
        self.web = self.web or WebCaptionConfig()

    def validate(self) -> None:
        if self.name not in ("scene", "web", "keep", "hf", "openai"):
            raise ValueError(f"captioner.name must be one of scene, web, keep, hf, openai; got {self.name!r}")
        if self.name == "hf" and not self.model:
            raise ValueError("captioner 'hf' needs captioner.model (a hub name or local folder; CLI --caption-model)")
        if self.name == "openai" and not (self.model and self.endpoint):
            raise ValueError("captioner 'openai' needs captioner.endpoint (e.g. http://127.0.0.1:8000/v1) and "
                             "captioner.model (the served model's name; CLI --caption-model)")
        if self.name not in ("hf", "openai") and self.model:  # an option that is not read must not look as if it were
            raise ValueError(f"captioner.model ({self.model}) is read by captioners 'hf' and 'openai' only, not "
                             f"'{self.name}'; drop --caption-model or add --captioner hf")
        if self.name != "openai" and (self.endpoint or self.api_key_env):
            raise ValueError(f"captioner.endpoint and captioner.api_key_env are read by captioner 'openai' only, not '{self.name}'")
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"captioner.endpoint must be an http(s) URL, got {self.endpoint!r}")
        if self.max_tokens is not None:
            if self.name != "openai":
                raise ValueError(f"captioner.max_tokens is read by captioner 'openai' only; '{self.name}' reads "
                                 "captioner.max_new_tokens")
            if self.max_new_tokens not in (512, self.max_tokens):  # 512: max_new_tokens left at its default
                raise ValueError(f"captioner.max_tokens ({self.max_tokens}) and captioner.max_new_tokens "
                                 f"({self.max_new_tokens}) disagree; give one")
            self.max_new_tokens = self.max_tokens
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.concurrency < 1:
            raise ValueError("captioner.max_new_tokens, captioner.batch_size and captioner.concurrency must be >= 1")
        if self.image_side is not None and (self.name != "openai" or self.image_side < 8):
            raise ValueError("captioner.image_side is read by captioner 'openai' only, and must be >= 8")
        if self.retries < 0 or self.timeout <= 0 or self.temperature < 0:
            raise ValueError("captioner.retries must be >= 0, captioner.timeout > 0 and captioner.temperature >= 0")


@dataclass
class Caption:
    text: str
    model: str
    truncated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # extra sample meta (web: the exact caption, audit counts)
    error: str | None = None  # the row failed captioning (openai: after retries); it is kept in stats, not in a shard
    stats: dict[str, Any] = field(default_factory=dict)  # per-row stats.parquet columns only (tokens, latency): never
                                                         # in the shard, so timing cannot change a shard's bytes


class Captioner(Protocol):
    def __call__(self, items: list[SourceItem]) -> list[Caption]: ...


CAPTIONERS: Registry = Registry("captioner")
