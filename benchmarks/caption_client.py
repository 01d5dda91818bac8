"""Is the `openai` captioner's client ever the bottleneck? Three figures from one run on this machine:

1. Against a local server that answers every request after a fixed delay (tests/openai_server.py, in its own
   process), throughput at 1..64 requests in flight vs the ideal concurrency / delay (goal: >= 80%).
2. Against a server that answers at once, captions/s of the whole captioner (PNG -> base64 data URL, request,
   parse) with this process pinned to one core and the server on another (goal: >= 300/s).
3. Beside them, the `hf` captioner on a tiny Qwen2.5-VL built from config on the CPU (the same machine),
   for scale: what one local model does, not what a GPU server does.
4. Why aiohttp (uae_data/openai_chat.py): the same 64-in-flight loop of ready-made requests against the instant
   server with each HTTP client installed here (aiohttp, httpx, the openai package): requests/s and this
   process's CPU ms per request, pinned as in 2. (`pip install httpx openai` to include the other two.)

Usage: python benchmarks/caption_client.py [--delay 0.1] [--n-fast 3000] [--skip-hf] [--write]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

SERVE = """
import sys, time
sys.path.insert(0, {tests!r})
from openai_server import ChatServer, ServerState
srv = ChatServer(ServerState(modes=("ok",), delay_s={delay}))
print(srv.url, flush=True)
while True:
    time.sleep(3600)
"""


def serve(delay: float, core: int | None) -> tuple[subprocess.Popen, str]:
    """A well-behaved server in its own process (pinned to `core` when given); returns (process, url)."""
    proc = subprocess.Popen([sys.executable, "-c", SERVE.format(tests=str(ROOT / "tests"), delay=delay)],
                            stdout=subprocess.PIPE, text=True)
    if core is not None:
        os.sched_setaffinity(proc.pid, {core})
    return proc, proc.stdout.readline().strip()


def scene_items(n: int, size: int = 64) -> list:
    from uae_data import scenes
    from uae_data.sources import SourceItem

    return [SourceItem(index=i, image=scenes.render(scenes.sample_scene(i), size)) for i in range(n)]


def captioner(url: str, concurrency: int):
    from uae_data.captioners import CaptionerConfig, build_captioner

    return build_captioner(CaptionerConfig(name="openai", model="bench", endpoint=url, concurrency=concurrency,
                                           timeout=30, retries=0), seed=0)


def rate(cap, items: list) -> float:
    t0 = time.perf_counter()
    out = cap(items)
    dt = time.perf_counter() - t0
    assert all(c.error is None for c in out), [c.error for c in out if c.error][:3]
    return len(items) / dt


def delayed(delay: float) -> list[dict]:
    proc, url = serve(delay, None)
    try:
        rows = []
        for c in (1, 4, 16, 64):
            items = scene_items(max(8 * c, 64))  # 8 waves of requests: start-up is a small share
            rate(captioner(url, c), items[:c])  # warm-up: connections open
            got = rate(captioner(url, c), items)
            rows.append({"in_flight": c, "captions_per_s": round(got, 1), "ideal": round(c / delay, 1),
                         "share_of_ideal": round(got * delay / c, 3)})
        return rows
    finally:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def pinned_instant_server() -> Iterator[tuple[str, dict]]:
    """An instant server on one core, this process on another for the block: (url, the cores)."""
    cores = sorted(os.sched_getaffinity(0))
    server_core, client_core = (cores[0], cores[-1]) if len(cores) > 1 else (None, cores[0])
    proc, url = serve(0.0, server_core)
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {client_core})
    try:
        yield url, {"client_core": client_core, "server_core": server_core}
    finally:
        os.sched_setaffinity(0, own)
        proc.kill()
        proc.wait()


def fast(n: int) -> dict:
    with pinned_instant_server() as (url, cores):
        items = scene_items(n)
        cap = captioner(url, 64)
        rate(cap, items[:200])  # warm-up
        got = rate(cap, items)
        return {"captions": n, "captions_per_s": round(got, 1), **cores}


def transports(n: int) -> dict:
    """Requests/s and client CPU ms/request of each installed HTTP client, same server, same requests, same run."""
    with pinned_instant_server() as (url, cores):
        return _transports(url, n, cores)


def _transports(url: str, n: int, cores: dict) -> dict:
    import asyncio
    import importlib.util

    cap = captioner(url, 64)
    messages = [cap._request(it)() for it in scene_items(n)]
    bodies = [json.dumps({"model": "bench", "messages": m}).encode() for m in messages]
    headers = {"content-type": "application/json", "authorization": "Bearer EMPTY"}

    async def loop_aiohttp() -> None:
        import aiohttp

        todo = iter(range(n))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as s:
            async def worker() -> None:
                for i in todo:
                    async with s.post(url + "/chat/completions", data=bodies[i], headers=headers) as r:
                        json.loads(await r.read())
            await asyncio.gather(*(worker() for _ in range(64)))

    async def loop_httpx() -> None:
        import httpx

        todo = iter(range(n))
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=64)) as c:
            async def worker() -> None:
                for i in todo:
                    json.loads((await c.post(url + "/chat/completions", content=bodies[i], headers=headers)).content)
            await asyncio.gather(*(worker() for _ in range(64)))

    async def loop_openai() -> None:
        import openai

        todo = iter(range(n))
        async with openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0) as c:
            async def worker() -> None:
                for i in todo:
                    await c.chat.completions.create(model="bench", messages=messages[i])
            await asyncio.gather(*(worker() for _ in range(64)))

    out: dict = {"requests": n, "in_flight": 64, **cores}
    for name, fn in (("aiohttp", loop_aiohttp), ("httpx", loop_httpx), ("openai", loop_openai)):
        if importlib.util.find_spec(name) is None:
            out[name] = "not installed"
            continue
        asyncio.run(fn())  # warm-up (imports, first connections)
        t0, c0 = time.perf_counter(), time.process_time()
        asyncio.run(fn())
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[name] = {"requests_per_s": round(n / dt, 1), "cpu_ms_per_request": round(1000 * cpu / n, 3)}
    return out


def hf_tiny(n: int = 16, tokens: int = 32) -> dict:
    import tempfile

    from uae_data.captioners import CaptionerConfig, build_captioner
    from uae_train.models.encoder import Encoder

    with tempfile.TemporaryDirectory() as tmp:
        folder = Encoder.tiny(image_size=64, seed=0).save_pretrained(Path(tmp) / "tiny-qwen2.5-vl")
        cap = build_captioner(CaptionerConfig(name="hf", model=str(folder), max_new_tokens=tokens, batch_size=8,
                                              options={"device": "cpu"}), seed=0)
        items = scene_items(n)
        cap(items[:8])  # warm-up
        t0 = time.perf_counter()
        cap(items)
        dt = time.perf_counter() - t0
    return {"captions": n, "max_new_tokens": tokens, "captions_per_s": round(n / dt, 2), "device": "cpu"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--delay", type=float, default=0.1)
    p.add_argument("--n-fast", type=int, default=3000)
    p.add_argument("--skip-hf", action="store_true")
    p.add_argument("--write", action="store_true", help="also write benchmarks/results/caption_client_cpu.txt")
    a = p.parse_args()
    load_before = os.getloadavg()
    result = {"cpus": len(os.sched_getaffinity(0)), "loadavg_before": [round(v, 2) for v in load_before],
              "delayed": delayed(a.delay), "delay_s": a.delay, "immediate": fast(a.n_fast)}
    result["transports"] = transports(a.n_fast)
    if not a.skip_hf:
        result["hf_tiny_cpu"] = hf_tiny()
    result["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    result["goals_met"] = {"delayed_80pct": all(r["share_of_ideal"] >= 0.8 for r in result["delayed"]),
                           "immediate_300_per_s": result["immediate"]["captions_per_s"] >= 300}
    text = json.dumps(result, indent=2)
    print(text)
    if a.write:
        import datetime
        import platform

        goals = result["goals_met"]
        head = [f"# python benchmarks/caption_client.py --write  (one run, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%MZ}, "
                f"{platform.processor() or platform.machine()}, {result['cpus']} cores; load average before "
                f"{' '.join(map(str, result['loadavg_before']))}, after {' '.join(map(str, result['loadavg_after']))})",
                f"# goals: delayed >= 80% of concurrency/delay up to 64 in flight: {'met' if goals['delayed_80pct'] else 'NOT MET'} "
                f"({', '.join(str(r['share_of_ideal']) for r in result['delayed'])} at 1/4/16/64); instant server >= 300 "
                f"captions/s on one core: {'met' if goals['immediate_300_per_s'] else 'NOT MET'} "
                f"({result['immediate']['captions_per_s']:.0f}/s)",
                "# hf_tiny_cpu: the hf captioner on a tiny Qwen2.5-VL built from config (a few MB), CPU: for scale only."]
        (ROOT / "benchmarks" / "results" / "caption_client_cpu.txt").write_text("\n".join(head) + "\n" + text + "\n")


if __name__ == "__main__":
    main()
