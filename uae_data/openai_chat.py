"""One client for any OpenAI-compatible chat server (vLLM, SGLang, lmdeploy, ...): many requests in flight,
each ending in exactly one `ChatReply` (an answer, or the reason it failed), never an exception.

Why aiohttp, and not the `openai` package or httpx: the client must never be what limits a GPU server, and with
64 requests in flight its CPU per request decides that (one event loop does them all, and a busy loop delays
every answer). `python benchmarks/caption_client.py` measures the three side by side, same server, same requests,
same run (benchmarks/results/caption_client_cpu.txt, 64 in flight, client pinned to one core): aiohttp 0.09 ms of
CPU a request, the openai client 1.9 ms (it walks every request through its `transform`, base64 image and all),
httpx 2.7 ms (its pool rescans every connection per request). Run back to back, the captioner on httpx (one
client per worker, as it was) reached 68% of concurrency / delay at 64 in flight and 1,027 captions/s against an
instant server; on aiohttp 86% and 3,798/s. aiohttp is also what vLLM's own serving benchmark uses. So the protocol (POST
{endpoint}/chat/completions with the OpenAI API's JSON) is spoken with aiohttp, and what the openai client would
do is hand-written here, the way it does it: retries of 408/409/429/5xx, dropped connections and timeouts with
exponential backoff (0.5 s doubling, at most 8 s, up to 25% jitter) that honours `retry-after-ms` /
`retry-after` (up to 60 s); plus retries of answers that cannot be parsed (malformed JSON, no choices, a body
cut short), per-request latency and attempt counts, and every error as a one-line reason with the API key
scrubbed out (a server may echo headers back in an error body).

Used by the `openai` captioner (uae_data/captioners/openai_api.py) and the VLM judge (uae_eval/vlm_judge.py).
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from uae_data.core.errors import ConfigError

NO_KEY = "EMPTY"  # what vLLM's docs pass when the server needs no key
RETRY_STATUSES = (408, 409, 429)  # and every 5xx: what the openai client retries
MAX_RETRY_AFTER_S = 60.0


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


def data_url(raw: bytes, media: str) -> str:
    """Encoded image bytes as the data URL a chat message carries (`image_url.url`)."""
    return f"data:{media};base64,{base64.b64encode(raw).decode('ascii')}"


def api_key(env: str | None) -> str:
    """The key from the environment variable named in the manifest (the key itself is never in a manifest)."""
    if not env:
        return NO_KEY
    key = os.environ.get(env)
    if not key:
        raise ConfigError(f"api_key_env names {env}, but {env} is not set in the environment")
    return key


class Failure(Exception):
    """A request attempt that failed: `retry` says whether another attempt may help."""

    def __init__(self, reason: str, retry: bool, status: int | None = None, unreachable: bool = False,
                 wait_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason, self.retry, self.status, self.unreachable, self.wait_s = reason, retry, status, unreachable, wait_s


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asked us to wait (retry-after-ms, or retry-after in seconds), when sensible."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        try:
            wait = float(headers.get(name)) / scale
        except (TypeError, ValueError):
            continue
        if 0 < wait <= MAX_RETRY_AFTER_S:
            return wait
    return None


def _error_text(body: bytes) -> str:
    try:
        err = json.loads(body).get("error")
        text = err.get("message") if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        text = None
    text = str(text or body[:300].decode("utf-8", "replace")).strip()
    return text.splitlines()[0][:300] if text else ""


def parse_reply(status: int, headers: Any, body: bytes) -> dict:
    """The answer's JSON, or a Failure saying whether another attempt may help."""
    if status != 200:
        text = _error_text(body)
        raise Failure(f"HTTP {status}: {text}" if text else f"HTTP {status}", status in RETRY_STATUSES or status >= 500,
                      status=status, wait_s=_retry_after(headers))
    try:
        reply = json.loads(body)
    except ValueError as e:
        raise Failure(f"malformed answer (not JSON: {e})", retry=True) from None
    try:
        text = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise Failure(f"malformed answer (no choices[0].message.content): {body[:120]!r}", retry=True) from None
    if not isinstance(text, str):
        raise Failure(f"malformed answer (content is {type(text).__name__})", retry=True)
    return reply


class ChatClient:
    """Sends lists of chat requests; `run` is synchronous (an event loop per call) so worker processes of a
    corpus build, which are plain processes, can call it."""

    def __init__(self, s: ChatSettings) -> None:
        if not s.endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"endpoint must be an http(s) URL such as http://127.0.0.1:8000/v1, got {s.endpoint!r}")
        self.s = s
        self._key = api_key(s.api_key_env)
        self.url = s.endpoint.rstrip("/") + "/chat/completions"
        self.headers = {"content-type": "application/json", "authorization": f"Bearer {self._key}"}
        self._tls: Any = None  # one TLS context for every call (loading the CA file takes ~20 ms)

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key != NO_KEY else text

    def run(self, build: list[Callable[[], list[dict]]], threads: int = 4) -> list[ChatReply]:
        """One reply per entry of `build` (callables that make a request's messages, e.g. encode an image:
        they run in a thread pool, since PIL and base64 release the GIL, so encoding overlaps the requests)."""
        if not build:
            return []
        return asyncio.run(self._run(build, threads))

    async def _run(self, build: list[Callable[[], list[dict]]], threads: int) -> list[ChatReply]:
        import aiohttp

        replies: list[ChatReply | None] = [None] * len(build)
        todo = iter(range(len(build)))
        loop = asyncio.get_running_loop()
        if self._tls is None:
            import ssl

            self._tls = ssl.create_default_context()
        workers = min(max(1, self.s.concurrency), len(build))
        # one aiohttp client, one keep-alive connection per worker; its timeout is the whole attempt's (connect, send, wait)
        connector = aiohttp.TCPConnector(limit=workers, ssl=self._tls if self.url.startswith("https") else False)
        http = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.s.timeout))

        async def worker(pool: ThreadPoolExecutor) -> None:
            for i in todo:  # the workers share one iterator: each request is taken exactly once
                try:
                    messages = await loop.run_in_executor(pool, build[i])
                except Exception as e:  # noqa: BLE001 - an image that cannot be encoded fails its row only
                    replies[i] = ChatReply(error=self._scrub(f"cannot prepare request: {type(e).__name__}: {e}"))
                    continue
                body = json.dumps({"model": self.s.model, "messages": messages, **self.s.params}).encode()
                replies[i] = await self._ask(http, body)

        async with http:
            with ThreadPoolExecutor(threads) as pool:
                await asyncio.gather(*(worker(pool) for _ in range(workers)))
        return [r if r is not None else ChatReply(error="not sent") for r in replies]

    async def _post(self, http: Any, body: bytes) -> tuple[int, Any, bytes]:
        """One attempt: (status, headers, body), or a retryable Failure when no whole answer came back."""
        import aiohttp

        try:
            async with http.post(self.url, data=body, headers=self.headers) as r:
                return r.status, r.headers, await r.read()
        except asyncio.TimeoutError:
            raise Failure(f"timed out after {self.s.timeout:g}s", retry=True, unreachable=True) from None
        except aiohttp.ClientPayloadError as e:  # the body was cut short: the server answered, but not all of it
            raise Failure(f"answer cut short ({str(e).splitlines()[0] if str(e) else type(e).__name__})",
                          retry=True, unreachable=True) from None
        except aiohttp.ClientError as e:  # refused, dropped, reset
            raise Failure(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'connection lost'}",
                          retry=True, unreachable=True) from None

    async def _ask(self, http: Any, body: bytes) -> ChatReply:
        t0 = time.perf_counter()
        for attempt in range(1, self.s.retries + 2):
            try:
                reply = parse_reply(*await self._post(http, body))
            except Failure as f:
                if f.retry and attempt <= self.s.retries:
                    await asyncio.sleep(f.wait_s if f.wait_s is not None else
                                        min(0.5 * 2 ** (attempt - 1), 8.0) * (1 - 0.25 * random.random()))
                    continue
                return ChatReply(error=self._scrub(f"{f.reason.splitlines()[0]} (after {attempt} attempts)"),
                                 latency_s=time.perf_counter() - t0, attempts=attempt, unreachable=f.unreachable,
                                 status=f.status)
            choice, usage = reply["choices"][0], reply.get("usage") or {}
            return ChatReply(text=choice["message"]["content"].strip(), finish_reason=choice.get("finish_reason"),
                             prompt_tokens=int(usage.get("prompt_tokens") or 0),
                             completion_tokens=int(usage.get("completion_tokens") or 0),
                             latency_s=time.perf_counter() - t0, attempts=attempt)
        raise AssertionError("unreachable")


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
