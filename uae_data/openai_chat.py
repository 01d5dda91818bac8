"""One client for any OpenAI-compatible chat server (vLLM, SGLang, lmdeploy, ...): many requests in flight,
each ending in exactly one `ChatReply` (an answer, or the reason it failed), never an exception.

Why the standard `openai` client: it already retries 408/409/429/5xx, dropped connections and timeouts with
exponential backoff and jitter, and honours `retry-after(-ms)`. What it does not do is hand-written here:
a bounded number of requests in flight (a semaphore), one more backoff loop for answers it cannot parse
(malformed JSON, no choices), per-request latency/attempt counts, and turning every error into a one-line
reason with the API key scrubbed out (a server may echo headers back in an error body).

Used by the `openai` captioner (uae_data/captioners/openai_api.py) and the VLM judge (uae_eval).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from uae_data.core.errors import ConfigError

NO_KEY = "EMPTY"  # what vLLM's docs pass when the server needs no key


@dataclass
class ChatReply:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    attempts: int = 0
    error: str | None = None  # set when the request failed for good: the row's reason
    unreachable: bool = False  # it failed without an answer from the server (connection refused/dropped, timeout)
    status: int | None = None  # the HTTP status it failed with, if any


@dataclass
class ChatSettings:
    endpoint: str
    model: str
    api_key_env: str | None = None
    concurrency: int = 32
    timeout: float = 120.0
    retries: int = 5
    params: dict[str, Any] = field(default_factory=dict)  # max_tokens, temperature, seed, ...


def api_key(env: str | None) -> str:
    """The key from the environment variable named in the manifest (the key itself is never in a manifest)."""
    if not env:
        return NO_KEY
    key = os.environ.get(env)
    if not key:
        raise ConfigError(f"captioner.api_key_env names {env}, but {env} is not set in the environment")
    return key


def _one_line(e: BaseException) -> str:
    status = getattr(e, "status_code", None)
    text = (getattr(e, "message", None) or str(e) or "").strip()
    head = text.splitlines()[0][:300] if text else ""
    kind = f"HTTP {status}" if status else type(e).__name__
    return f"{kind}: {head}" if head else kind


class ChatClient:
    """Sends lists of chat requests; `run` is synchronous (an event loop per call) so worker processes of a
    corpus build, which are plain processes, can call it."""

    def __init__(self, s: ChatSettings) -> None:
        if not s.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint must be an http(s) URL such as http://127.0.0.1:8000/v1, got {s.endpoint!r}")
        self.s = s
        self._key = api_key(s.api_key_env)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key != NO_KEY else text

    def run(self, build: list[Callable[[], list[dict]]], threads: int = 4) -> list[ChatReply]:
        """One reply per entry of `build` (callables that make a request's messages, e.g. encode an image:
        they run in a thread pool, since PIL and base64 release the GIL, so encoding overlaps the requests)."""
        if not build:
            return []
        return asyncio.run(self._run(build, threads))

    async def _run(self, build: list[Callable[[], list[dict]]], threads: int) -> list[ChatReply]:
        import httpx
        from openai import AsyncOpenAI

        limit = max(1, self.s.concurrency)
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
                                 timeout=self.s.timeout)
        client = AsyncOpenAI(base_url=self.s.endpoint, api_key=self._key, max_retries=self.s.retries,
                             timeout=self.s.timeout, http_client=http)
        gate = asyncio.Semaphore(limit)
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(threads) as pool:
            async def one(make: Callable[[], list[dict]]) -> ChatReply:
                async with gate:
                    try:
                        messages = await loop.run_in_executor(pool, make)
                    except Exception as e:  # an image that cannot be encoded fails its row only
                        return ChatReply(error=self._scrub(f"cannot prepare request: {_one_line(e)}"))
                    return await self._ask(client, messages)

            try:
                return list(await asyncio.gather(*(one(m) for m in build)))
            finally:
                await client.close()

    async def _ask(self, client: Any, messages: list[dict]) -> ChatReply:
        import openai

        t0 = time.perf_counter()
        attempts = 0
        for bad in range(self.s.retries + 1):  # retries here are only for answers that cannot be parsed
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model=self.s.model, messages=messages, **self.s.params)
                attempts += raw.retries_taken + 1
                reply = raw.parse()
                if isinstance(reply, str) or not getattr(reply, "choices", None):
                    raise ValueError(f"malformed answer (no choices): {str(reply)[:120]!r}")
                choice = reply.choices[0]
                text = choice.message.content if choice.message is not None else None
                if text is None:
                    raise ValueError("malformed answer (no message content)")
                usage = reply.usage
                return ChatReply(text=text.strip(), finish_reason=choice.finish_reason,
                                 prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                                 completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                                 latency_s=time.perf_counter() - t0, attempts=attempts)
            except openai.APIError as e:
                if isinstance(e, openai.APIResponseValidationError) and bad < self.s.retries:
                    await asyncio.sleep(min(0.5 * 2 ** bad, 8) * random.uniform(0.75, 1.0))
                    continue
                # the openai client retried 429/5xx/connection/timeouts already (max_retries)
                attempts += 1 + (self.s.retries if isinstance(e, (openai.APIConnectionError, openai.InternalServerError,
                                                                  openai.RateLimitError)) else 0)
                reply = self._failed(e, t0, attempts, unreachable=isinstance(e, openai.APIConnectionError))
                reply.status = getattr(e, "status_code", None)
                return reply
            except (ValueError, AttributeError, TypeError) as e:  # JSONDecodeError is a ValueError
                if bad < self.s.retries:
                    await asyncio.sleep(min(0.5 * 2 ** bad, 8) * random.uniform(0.75, 1.0))
                    continue
                if isinstance(e, json.JSONDecodeError):
                    e = ValueError(f"malformed answer (not JSON: {e})")
                return self._failed(e, t0, attempts)
        raise AssertionError("unreachable")

    def _failed(self, e: BaseException, t0: float, attempts: int, unreachable: bool = False) -> ChatReply:
        return ChatReply(error=self._scrub(f"{_one_line(e)} (after {attempts} attempts)"),
                         latency_s=time.perf_counter() - t0, attempts=attempts, unreachable=unreachable)


SETUP_STATUSES = (401, 403, 404)  # a wrong key, model name or URL: the setup's fault, never a row's


def require_answers(replies: list[ChatReply], endpoint: str) -> None:
    """Refuse a batch none of whose requests reached the server, or one the server refused for its key, model
    or path: a server that is down or a wrong setting is not a reason to mark rows failed for good (a rerun
    would skip them), so the batch fails, nothing of it is written, and a rerun continues."""
    from uae_data.core.errors import ServerError

    refused = next((r for r in replies if r.status in SETUP_STATUSES), None)
    if refused is not None:
        raise ServerError(f"{endpoint}: refused ({refused.error}); check the endpoint URL, the model name and the "
                          "API key variable. Finished shards are kept: rerun the same command to continue")
    if replies and all(r.unreachable for r in replies):
        raise ServerError(f"{endpoint}: no answer to any of {len(replies)} requests ({replies[0].error}); is the "
                          "server up? Finished shards are kept: rerun the same command to continue")
