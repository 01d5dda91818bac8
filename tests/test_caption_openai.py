"""`openai` captioner against a local server on 127.0.0.1 that misbehaves on purpose (tests/openai_server.py):
slow answers, 429s, 500s, dropped connections, malformed JSON, answers past the client's timeout, truncated
answers, bodies cut short. Every row ends captioned exactly once or failed with its reason; a build killed mid-way resumes to
shards identical (sha256) to an uninterrupted build; an API key set in the environment is in no file."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from uae_data.core.config import load_config
from uae_data.core.errors import ConfigError
from uae_data.corpus_config import CorpusConfig
from uae_data.pipeline import build

from conftest import ROOT
from openai_server import ALWAYS_FAILS, MODES, ChatServer, ServerState, caption_for, digest_of

RETRIES = 3
# attempts each mode takes before its final answer (the server's own fates, tests/openai_server.py)
ATTEMPTS = {"ok": 1, "slow": 1, "length": 1, "429x2": 3, "500x1": 2, "drop": 2, "cutbody": 2, "malformed": 2, "timeout": 2,
            "500always": RETRIES + 1, "malformedalways": RETRIES + 1}
KEY_ENV = "UAE_TEST_OPENAI_KEY"


def args(url: str, n: int = 60, shard_size: int = 20, **over) -> list[str]:
    base = {"source.n": n, "shard_size": shard_size, "image_size": 32, "captioner.name": "openai",
            "captioner.endpoint": url, "captioner.model": "test-vlm", "captioner.max_new_tokens": 64,
            "captioner.concurrency": 8, "captioner.timeout": 1.0, "captioner.retries": RETRIES, **over}
    return [f"{k}={v}" for k, v in base.items()]


def cfg(url: str, **over) -> CorpusConfig:
    return load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", args(url, **over), kind="corpus")


def png_digest(png: bytes) -> str:
    """The server's key for an image: sha256 of the data URL the captioner sent (scene PNGs go as they are stored)."""
    import base64

    return digest_of("data:image/png;base64," + base64.b64encode(png).decode())


def raw_samples(out: Path) -> list[dict]:
    """Every stored sample undecoded: the PNG bytes as the captioner sent them, caption, meta and its shard's name."""
    import webdataset as wds

    urls = [str(p) for p in sorted((out / "shards").glob("*.tar"))]
    return [{"key": s["__key__"], "png": s["png"], "caption": s["txt"].decode(), "meta": json.loads(s["json"]),
             "shard": Path(s["__url__"]).name} for s in wds.WebDataset(urls, shardshuffle=False)]


@pytest.fixture
def server():
    with ChatServer() as srv:
        yield srv


@pytest.mark.integration
def test_openai_build_every_row_captioned_once_or_failed_with_reason(server, tmp_path):
    manifest = build(cfg(server.url), tmp_path / "c", workers=1)
    stats = pd.read_parquet(tmp_path / "c/stats.parquet")
    samples = raw_samples(tmp_path / "c")
    modes = {d: server.state.mode(d) for d in server.state.asked}
    assert len(modes) == 60 and set(modes.values()) == set(MODES)  # every misbehaviour met at least one row
    # no row lost, none twice: each image asked exactly as often as its fate needs, never again after its answer
    assert {d: server.state.asked[d] for d in modes} == {d: ATTEMPTS[m] for d, m in modes.items()}
    assert len(stats) == 60 and stats.key.is_unique and set(stats.status) == {"ok", "failed"}
    failed = stats[stats.status == "failed"]
    assert len(failed) == sum(m in ALWAYS_FAILS for m in modes.values())
    assert set(failed.stage) == {"caption"}
    assert all(("HTTP 500" in r) or ("malformed" in r) for r in failed.reason)
    assert all(f"after {RETRIES + 1} attempts" in r for r in failed.reason)
    assert len(samples) == (stats.status == "ok").sum() and len({s["key"] for s in samples}) == len(samples)
    for s in samples:
        d = png_digest(s["png"])
        mode = modes[d]
        assert mode not in ALWAYS_FAILS
        assert s["meta"]["caption_truncated"] is (mode == "length")
        full = caption_for(d)
        assert s["caption"] == (" ".join(full.split()[:6]) if mode == "length" else full)
        assert "caption_latency_s" not in s["meta"] and s["meta"]["caption_model"] == "test-vlm"
    sent = stats[stats.caption_attempts >= 0]
    assert len(sent) == 60 and (stats.caption_prompt_tokens[stats.status == "ok"] == 100).all()
    u = manifest["caption_usage"]
    assert u["requests"] == 60 and u["failed"] == len(failed) and u["truncated"] == list(modes.values()).count("length")
    assert u["prompt_tokens"] == 100 * (60 - len(failed)) and u["completion_tokens"] > 0
    assert u["latency_s_p95"] >= 1.0 > u["latency_s_p50"]  # the `timeout` rows waited a whole timeout


@pytest.mark.integration
def test_openai_api_key_from_env_is_sent_but_in_no_file_under_out(server, tmp_path, monkeypatch):
    key = "sk-uae-test-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:24]
    monkeypatch.setenv(KEY_ENV, key)
    build(cfg(server.url, **{"captioner.api_key_env": KEY_ENV}), tmp_path / "c", workers=2)
    assert server.state.auth == {f"Bearer {key}"}  # the key did reach the server ...
    stats = pd.read_parquet(tmp_path / "c/stats.parquet")
    assert stats.reason.str.contains("authorization Bearer \\*\\*\\*").any()  # ... which echoed it in its 500s
    files = [p for p in (tmp_path / "c").rglob("*") if p.is_file()]
    assert len(files) > 5
    for p in files:
        assert key.encode() not in p.read_bytes(), p
    assert KEY_ENV in (tmp_path / "c/config.yaml").read_text()  # the variable's name is, so a rerun finds it


@pytest.mark.unit
def test_openai_config_refusals_are_one_line(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="needs captioner.endpoint"):
        load_config(CorpusConfig, None, ["captioner.name=openai", "captioner.model=m"], kind="corpus")
    with pytest.raises(ValueError, match="read by captioner 'openai' only"):
        load_config(CorpusConfig, None, ["captioner.name=hf", "captioner.model=m", "captioner.endpoint=http://x/v1"],
                    kind="corpus")
    with pytest.raises(ValueError, match="http"):
        cfg("127.0.0.1:8000/v1")
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ConfigError, match=f"{KEY_ENV} is not set"):
        build(cfg("http://127.0.0.1:9/v1", **{"captioner.api_key_env": KEY_ENV}), tmp_path / "c", workers=1)
    assert not (tmp_path / "c").exists()  # refused before any work


@pytest.mark.unit
def test_openai_max_tokens_is_max_new_tokens_under_the_apis_name():
    from uae_data.captioners.openai_api import chat_settings

    given = [a for a in args("http://127.0.0.1:9/v1") if not a.startswith("captioner.max_new_tokens=")]
    c = load_config(CorpusConfig, None, given + ["captioner.max_tokens=300"], kind="corpus").captioner
    assert c.max_new_tokens == 300 and chat_settings(c, seed=0).params["max_tokens"] == 300
    with pytest.raises(ValueError, match=r"max_tokens \(300\) and captioner.max_new_tokens \(64\) disagree"):
        cfg("http://127.0.0.1:9/v1", **{"captioner.max_tokens": 300})
    with pytest.raises(ValueError, match="max_tokens is read by captioner 'openai' only"):
        load_config(CorpusConfig, None, ["captioner.max_tokens=300"], kind="corpus")


def _shard_digests(out: Path, names: set[str]) -> set[str]:
    return {png_digest(s["png"]) for s in raw_samples(out) if s["shard"] in names}


@pytest.mark.integration
def test_openai_build_killed_midway_resumes_to_identical_shards(tmp_path, uae):
    env = {KEY_ENV: "sk-resume-test"}
    # the misbehaviours that cost seconds a shard (a whole timeout, backoff on every malformed answer) are left to
    # the test above; 429s, 500s (always, too), drops, one malformed answer and truncation stay
    modes = tuple(m for m in MODES if m not in ("timeout", "malformedalways"))
    over = {"captioner.api_key_env": KEY_ENV, "captioner.concurrency": 4}
    with ChatServer(ServerState(modes=modes, delay_s=0.05)) as ref_srv:
        ref = uae("build-corpus", "manifests/corpus/scenes.yaml", *args(ref_srv.url, shard_size=10, **over),
                  "--workers", "1", "--out", str(tmp_path / "ref"), env=env)
        assert ref.returncode == 0, ref.stderr[-3000:]
    with ChatServer(ServerState(modes=modes, delay_s=0.05)) as srv:
        cmd = [sys.executable, str(ROOT / "cli.py"), "build-corpus", "manifests/corpus/scenes.yaml",
               *args(srv.url, shard_size=10, **over), "--workers", "1", "--out", str(tmp_path / "c")]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, **env})
        deadline = time.time() + 120
        while time.time() < deadline and len(list((tmp_path / "c/shards").glob("*.tar"))) < 2:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # killed, not interrupted: no handler runs
        proc.wait(30)
        done = {p.name for p in (tmp_path / "c/shards").glob("*.tar")}
        assert 2 <= len(done) < 6 and not (tmp_path / "c/manifest.json").exists()
        before = dict(srv.state.asked)
        again = uae("build-corpus", "manifests/corpus/scenes.yaml", *args(srv.url, shard_size=10, **over),
                    "--workers", "1", "--out", str(tmp_path / "c"), env=env)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "captioning: 60 requests" in again.stdout  # the finished shards' rows count too (their stats parts)
        asked_again = {d for d, n in srv.state.asked.items() if n > before.get(d, 0)}
    ref_m = json.loads((tmp_path / "ref/manifest.json").read_text())
    got_m = json.loads((tmp_path / "c/manifest.json").read_text())
    assert got_m["sha256"] == ref_m["sha256"] and got_m["counts"] == ref_m["counts"]
    finished = _shard_digests(tmp_path / "c", done)
    assert finished and not finished & asked_again  # the finished shards' rows were not captioned again
    ref_stats, got_stats = (pd.read_parquet(tmp_path / d / "stats.parquet") for d in ("ref", "c"))
    cols = ["key", "status", "reason", "shard", "stage"]
    assert got_stats[cols].equals(ref_stats[cols])


@pytest.mark.integration
def test_openai_server_down_fails_the_shard_unwritten_and_a_rerun_continues(tmp_path, uae_in_process):
    import socket

    with socket.socket() as s:  # a port nobody listens on (yet)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = f"http://127.0.0.1:{port}/v1"
    r = uae_in_process("build-corpus", *args(down, n=20, shard_size=10, **{"captioner.retries": 1}), "--workers", "1",
                       "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "no answer to any of 10 requests" in r.stdout + r.stderr
    assert not list((tmp_path / "c").glob("shards/*.tar")) and not list((tmp_path / "c").glob(".parts/*.parquet"))
    with ChatServer(ServerState(modes=("ok",)), port=port) as srv:  # the same command once the server is up
        assert srv.url == down
        manifest = build(cfg(down, n=20, shard_size=10, **{"captioner.retries": 1}), tmp_path / "c", workers=1)
    assert manifest["counts"] == {"input_rows": 20, "shards": 2, "samples": 20, "status_ok": 20}


@pytest.mark.unit
def test_openai_data_url_sends_stored_bytes_or_shrinks_to_image_side():
    import base64
    import io

    from PIL import Image

    from uae_data import scenes
    from uae_data.captioners.openai_api import data_url
    from uae_data.sources import SourceItem

    jpg = io.BytesIO()
    scenes.render(scenes.sample_scene(0), 64).save(jpg, format="JPEG")
    item = SourceItem(index=0, image=None, image_bytes=jpg.getvalue(), image_ext="jpg")
    assert data_url(item) == "data:image/jpeg;base64," + base64.b64encode(jpg.getvalue()).decode()  # no re-encode
    small = data_url(item, side=16)
    assert small.startswith("data:image/jpeg;base64,")
    assert Image.open(io.BytesIO(base64.b64decode(small.split(",", 1)[1]))).size == (16, 16)
    with pytest.raises(ValueError, match="image_side is read by captioner 'openai' only"):
        load_config(CorpusConfig, None, ["captioner.image_side=32"], kind="corpus")


@pytest.mark.integration
def test_openai_wrong_model_name_stops_the_build_before_any_row_is_failed(tmp_path, uae_in_process):
    with ChatServer(ServerState(modes=("ok",), models=("test-vlm",))) as srv:
        r = uae_in_process("build-corpus", *args(srv.url, n=20, shard_size=10, **{"captioner.model": "tset-vlm"}),
                           "--workers", "1", "--out", str(tmp_path / "c"))
        assert r.returncode == 2 and "HTTP 404" in r.stdout + r.stderr and "does not exist" in r.stdout + r.stderr
        assert not (tmp_path / "c").exists()  # nothing made: no shard of failed rows that a rerun would skip
        assert build(cfg(srv.url, n=20, shard_size=10), tmp_path / "c", workers=1)["counts"]["status_ok"] == 20


@pytest.mark.unit
def test_openai_client_backs_off_exponentially_or_as_retry_after_says():
    from uae_data.openai_chat import ChatClient, ChatSettings

    def ask(state: ServerState, retries: int):
        with ChatServer(state) as srv:
            client = ChatClient(ChatSettings(endpoint=srv.url, model="m", retries=retries, timeout=5))
            msg = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,x"}}]}]
            return client.run([lambda: msg])[0]

    backoff = ask(ServerState(modes=("429x2",), retry_after_ms=None), retries=3)  # waits ~0.5 s, then ~1 s
    assert backoff.error is None and backoff.attempts == 3 and 1.1 <= backoff.latency_s < 3.0
    told = ask(ServerState(modes=("429x2",), retry_after_ms=50), retries=3)  # the server's 50 ms, twice
    assert told.error is None and told.attempts == 3 and 0.1 <= told.latency_s < 0.6
    gave_up = ask(ServerState(modes=("500always",)), retries=1)
    assert gave_up.error.startswith("HTTP 500: internal error") and gave_up.attempts == 2 and gave_up.status == 500
