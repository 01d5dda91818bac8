"""A VLM served by any OpenAI-compatible server (vLLM, SGLang, lmdeploy) as a benchmark's answerer or judge:
the `openai` captioner's client (uae_data/openai_chat.py), so a large judge can be served once and asked many
questions at a time (MMT-Bench's multiple-choice answers; a yes/no judge for DPG-Bench-style questions).

Why a batch call: the benchmark harnesses ask row by row, but a server is only kept busy with many requests in
flight, so `answer_many` asks them all at once (`concurrency` in flight) and the harness uses it when present.
A request that fails for good (after retries) answers "" and is counted: it scores as a failed extraction,
as VLMEvalKit scores a missing answer, and results record how many there were.
"""
from __future__ import annotations

from dataclasses import dataclass

from uae_data.core.config import help_field
from uae_data.openai_chat import ChatClient, ChatSettings, data_url, require_answers
from uae_data.shards import encode_image


@dataclass
class ServedVLMConfig:
    endpoint: str | None = help_field(None, help="base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1); "
                                                 "set: `model` is the served model's name")
    api_key_env: str | None = help_field(None, help="name of the environment variable holding the API key (never written)")
    max_tokens: int = help_field(64, help="answer length limit")
    temperature: float = help_field(0.0, help="sampling temperature (0: greedy)")
    seed: int = help_field(0, help="the requests' seed")
    concurrency: int = help_field(32, help="requests in flight")
    timeout: float = help_field(120.0, help="seconds per request attempt")
    retries: int = help_field(5, help="retries with backoff on 429, 5xx, dropped connections, timeouts, unparsable answers")

    def validate(self) -> None:
        if self.endpoint is not None and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(f"server.endpoint must be an http(s) URL, got {self.endpoint!r}")
        if self.max_tokens < 1 or self.concurrency < 1 or self.retries < 0 or self.timeout <= 0:
            raise ValueError("server.max_tokens and server.concurrency must be >= 1, retries >= 0, timeout > 0")


def _data_url(image) -> str:
    return data_url(encode_image(image.convert("RGB"), "png"), "image/png")


class ServedVLM:
    """answer(images, prompt) -> text, and answer_many([(images, prompt), ...]) -> texts, from a served VLM."""

    def __init__(self, model: str, cfg: ServedVLMConfig) -> None:
        self.model, self.cfg = model, cfg
        self.client = ChatClient(ChatSettings(
            endpoint=cfg.endpoint or "", model=model, api_key_env=cfg.api_key_env, concurrency=cfg.concurrency,
            timeout=cfg.timeout, retries=cfg.retries,
            params={"max_tokens": cfg.max_tokens, "temperature": cfg.temperature, "seed": cfg.seed}))
        self.errors: list[str] = []  # reasons of the requests that failed for good

    @staticmethod
    def _messages(images: list, prompt: str):
        def make() -> list[dict]:
            parts = [{"type": "image_url", "image_url": {"url": _data_url(im)}} for im in images]
            return [{"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}]
        return make

    def answer_many(self, asks: list[tuple[list, str]]) -> list[str]:
        replies = self.client.run([self._messages(images, prompt) for images, prompt in asks])
        require_answers(replies, self.cfg.endpoint or "")  # a server that is down is not a model that answers wrong
        self.errors += [r.error for r in replies if r.error]
        return [r.text if r.error is None else "" for r in replies]

    def __call__(self, images: list, prompt: str) -> str:
        return self.answer_many([(images, prompt)])[0]

    def yes_no(self, asks: list[tuple[list, str]]) -> list[bool | None]:
        """Yes/no questions (a DPG-Bench-style judge): True, False, or None when the answer is neither."""
        from uae_eval.dpg_bench.judges import first_word  # DPG-Bench's reading of a reply

        words = [first_word(t) for t in self.answer_many([(im, f"{q} Answer yes or no.") for im, q in asks])]
        return [True if w == "yes" else False if w == "no" else None for w in words]
