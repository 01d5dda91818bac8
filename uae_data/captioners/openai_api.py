"""`openai` captioner: long captions from any OpenAI-compatible server (vLLM, SGLang, lmdeploy) by HTTP.

Each image goes as a base64 data URL in one chat request with the long-caption prompt; `concurrency`
requests are in flight per build worker. A row whose request fails for good (after the client's retries)
is returned with `error` set, so the build marks it failed with that reason (stage `caption`) instead of
losing it or failing the shard. A caption that stopped at max_tokens (finish_reason == "length") is kept
and flagged `caption_truncated`, as the hf captioner flags it. Token counts, latency and attempts go to
stats.parquet only, never into a shard: the shards' bytes depend on the answers, not on timing.
"""
from __future__ import annotations

from typing import Callable

from uae_data import openai_chat
from uae_data import shards as sh
from uae_data.captioners.base import CAPTIONERS, Caption, CaptionerConfig
from uae_data.captioners.hf import LONG_CAPTION_PROMPT
from uae_data.openai_chat import ChatClient, ChatReply, ChatSettings, require_answers
from uae_data.sources import SourceItem

MEDIA = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


def data_url(item: SourceItem, side: int | None = None) -> str:
    """The item's image as a data URL: the source's own bytes when it gave jpg/png/webp (no re-encode), else PNG;
    shrunk to `side` pixels on its longer side first when it is larger (runs in the client's encoding threads)."""
    ext = (item.image_ext or "").lower()
    if side is not None and max(item.size) > side:
        im = item.pil().copy()
        im.thumbnail((side, side))
        fmt = "jpg" if ext in ("jpg", "jpeg") else "png"
        raw, media = sh.encode_image(im, fmt), MEDIA[fmt]
    elif item.image_bytes is not None and ext in MEDIA:
        raw, media = item.image_bytes, MEDIA[ext]
    else:
        raw, media = sh.encode_image(item.pil(), "png"), "image/png"
    return openai_chat.data_url(raw, media)


def chat_settings(cfg: CaptionerConfig, seed: int) -> ChatSettings:
    params = {"max_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
              "seed": cfg.seed if cfg.seed is not None else seed}
    return ChatSettings(endpoint=cfg.endpoint or "", model=cfg.model or "", api_key_env=cfg.api_key_env,
                        concurrency=cfg.concurrency, timeout=cfg.timeout, retries=cfg.retries, params=params)


@CAPTIONERS.register("openai")
class OpenAICaptioner:
    """One client per process; call it on lists of items (a shard's ok rows)."""

    def __init__(self, cfg: CaptionerConfig, seed: int) -> None:
        self.cfg = cfg
        self.prompt = cfg.prompt or LONG_CAPTION_PROMPT
        self.client = ChatClient(chat_settings(cfg, seed))

    def _request(self, item: SourceItem) -> Callable[[], list[dict]]:
        def make() -> list[dict]:
            return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(item, self.cfg.image_side)}},
                                                 {"type": "text", "text": self.prompt}]}]
        return make

    def __call__(self, items: list[SourceItem]) -> list[Caption]:
        replies = self.client.run([self._request(it) for it in items])
        require_answers(replies, self.cfg.endpoint or "")  # server down: the shard fails, unwritten, for a rerun
        return [self._caption(r) for r in replies]

    def _caption(self, r: ChatReply) -> Caption:
        stats = {"caption_prompt_tokens": r.prompt_tokens, "caption_completion_tokens": r.completion_tokens,
                 "caption_latency_s": round(r.latency_s, 4), "caption_attempts": r.attempts}
        error = r.error
        if error is None and not r.text:
            error = f"empty caption from the server (finish_reason {r.finish_reason})"
        truncated = r.finish_reason == "length"
        return Caption(r.text, model=self.cfg.model or "", truncated=truncated, error=error,
                       stats={**stats, "caption_truncated": int(truncated)})
