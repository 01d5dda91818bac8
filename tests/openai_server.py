"""A small OpenAI-compatible chat server on 127.0.0.1 (port 0) that misbehaves on purpose, for the `openai`
captioner / judge tests and benchmarks/caption_client.py. Plain asyncio streams (HTTP/1.1, keep-alive), no web
framework, so it is cheap enough to measure a client against.

Each request's fate is a function of its image (sha256 of the data URL) and of how often that image was asked
before, so a build and a resumed build meet the same server: `ok`, `slow`, `length` (finish_reason "length"),
`429x2`, `500x1`, `drop` (connection closed once), `cutbody` (the answer's body cut short, connection closed,
once), `malformed` (bad JSON once), `timeout` (first answer slower
than the client's timeout), and two that never succeed: `500always` (echoing the Authorization header in its
error body, as a careless server might) and `malformedalways`.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

MODES = ("ok", "slow", "length", "429x2", "500x1", "drop", "cutbody", "malformed", "timeout", "500always",
         "malformedalways")
ALWAYS_FAILS = {"500always": "HTTP 500", "malformedalways": "malformed"}


def digest_of(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def caption_for(digest: str) -> str:
    return f"A long caption of image {digest[:16]}: a red cube left of a blue sphere on a grey floor."


@dataclass
class ServerState:
    modes: tuple[str, ...] = MODES  # ("ok",) for a well-behaved server
    delay_s: float = 0.0  # every answer waits this long (the benchmark's fixed delay)
    slow_s: float = 0.3
    timeout_s: float = 3.0  # how long a `timeout` answer takes the first time (longer than the client's timeout)
    asked: Counter = field(default_factory=Counter)  # digest -> requests seen
    log: list[tuple[str, str, int]] = field(default_factory=list)  # (digest, mode, attempt) of every request
    auth: set = field(default_factory=set)  # Authorization headers seen
    answer: Callable[[str, str], str] | None = None  # (image digest, prompt text) -> answer (a judge's test)
    retry_after_ms: int | None = 10  # sent with every error (None: no retry-after header, the client backs off)
    models: tuple[str, ...] | None = None  # served model names (None: any); another name gets vLLM's 404

    def mode(self, digest: str) -> str:
        return self.modes[int(digest[:8], 16) % len(self.modes)]


def _answer(text: str, finish: str = "stop") -> dict:
    return {"id": "chatcmpl-test", "object": "chat.completion", "created": 0, "model": "test-vlm",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 100, "completion_tokens": len(text.split()), "total_tokens": 100 + len(text.split())}}


def _image_url(body: dict) -> str:
    for m in body.get("messages", []):
        content = m.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                return part["image_url"]["url"]
    return json.dumps(body.get("messages"))  # a text-only request (the judge): its messages stand in


def _prompt(body: dict) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else next(p["text"] for p in content if p.get("type") == "text")


async def _respond(state: ServerState, headers: dict, body: bytes) -> tuple[int, dict, bytes] | None:
    """(status, headers, body), or None to drop the connection."""
    request = json.loads(body)
    if state.models is not None and request.get("model") not in state.models:
        return 404, {}, json.dumps({"error": {"message": f"The model `{request.get('model')}` does not exist."}}).encode()
    digest = digest_of(_image_url(request))
    state.asked[digest] += 1
    attempt, mode = state.asked[digest], state.mode(digest)
    state.log.append((digest, mode, attempt))
    state.auth.add(headers.get("authorization", ""))
    if state.delay_s:
        await asyncio.sleep(state.delay_s)
    fast_retry = {"retry-after-ms": str(state.retry_after_ms)} if state.retry_after_ms is not None else {}
    err = lambda code, msg, extra=None: (code, {**fast_retry, **(extra or {})}, json.dumps({"error": {"message": msg}}).encode())
    if mode == "429x2" and attempt <= 2:
        return err(429, "rate limited")
    if mode == "500x1" and attempt == 1:
        return err(500, "internal error")
    if mode == "500always":
        return err(500, f"internal error; request had authorization {headers.get('authorization', '')}")
    if mode == "drop" and attempt == 1:
        return None
    if mode == "cutbody" and attempt == 1:
        return 200, {"x-cut": "1"}, json.dumps(_answer(caption_for(digest))).encode()
    if mode == "malformedalways" or (mode == "malformed" and attempt == 1):
        return 200, {}, b'{"choices": [{"message": {"content": "half'
    if mode == "timeout" and attempt == 1:
        await asyncio.sleep(state.timeout_s)
    if mode == "slow":
        await asyncio.sleep(state.slow_s)
    text = state.answer(digest, _prompt(request)) if state.answer else caption_for(digest)
    if mode == "length":
        max_tokens = int(request.get("max_tokens") or 8)
        return 200, {}, json.dumps(_answer(" ".join(text.split()[:max(1, min(max_tokens, 6))]), "length")).encode()
    return 200, {}, json.dumps(_answer(text)).encode()


async def _serve_conn(state: ServerState, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            headers = {}
            while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
            if not line.startswith(b"POST") or b"/chat/completions" not in line:
                result: tuple[int, dict, bytes] | None = (404, {}, b'{"error": {"message": "not found"}}')
            else:
                result = await _respond(state, headers, body)
            if result is None:
                writer.transport.abort()  # a dropped connection: no answer at all
                return
            status, extra, payload = result
            if extra.pop("x-cut", None):  # announce the whole body, send half of it, hang up
                head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
                writer.write(head.encode() + payload[: len(payload) // 2])
                await writer.drain()
                writer.transport.abort()
                return
            head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}", "content-type: application/json",
                    f"content-length: {len(payload)}", *(f"{k}: {v}" for k, v in extra.items())]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):  # cancelled: server closing
        return
    finally:
        writer.close()


class ChatServer:
    """Serves on 127.0.0.1 in a background thread; `url` is the base URL to give a client (…/v1)."""

    def __init__(self, state: ServerState | None = None, port: int = 0) -> None:
        self.state = state or ServerState()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def start() -> None:
            self.server = await asyncio.start_server(lambda r, w: _serve_conn(self.state, r, w), "127.0.0.1", port,
                                                     backlog=1024)
            ready.set()

        self.thread = threading.Thread(target=self._run, args=(start,), daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"

    def _run(self, start) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(start())
        self.loop.run_forever()

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def __enter__(self) -> "ChatServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
