"""`--engine ray`: the same shards as the local engine, built by Ray tasks and Ray Data actor pools
on a local Ray started by the test (this machine only, 2 CPUs)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from uae_data.core.config import load_config
from uae_data.corpus_config import CorpusConfig
from uae_data.pipeline import build

from conftest import ROOT
from tests.served_photos import CASES, check_accounting, urls_cfg, write_url_list


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    ray = pytest.importorskip("ray")
    # workers are killed at shutdown: their import-time temp folders (wandb's) go to a folder pytest owns
    scratch = tmp_path_factory.mktemp("ray-workers")
    # Ray's session folders (logs, sockets) go to <tmp>/ray; the ones this run made are removed after it
    sessions = Path(tempfile.gettempdir()) / "ray"
    before = set(sessions.glob("session_*"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"TMPDIR": str(scratch)}})
    yield ray
    ray.shutdown()
    for folder in set(sessions.glob("session_*")) - before:
        if folder.is_symlink():
            folder.unlink()
        else:
            shutil.rmtree(folder, ignore_errors=True)
    if sessions.is_dir() and not any(sessions.iterdir()):
        sessions.rmdir()


@pytest.mark.integration
def test_ray_engine_builds_the_same_shards_as_local_and_resumes(tmp_path, local_ray):
    over = ["source.n=10", "shard_size=4", "image_size=32", "filters.dedup_threshold=0"]
    cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", over, kind="corpus")
    local = build(cfg, tmp_path / "local", workers=1)
    ray_built = build(cfg, tmp_path / "ray", engine="ray")
    assert ray_built["sha256"] == local["sha256"] and ray_built["counts"] == local["counts"]
    (tmp_path / "ray/shards/corpus-000001.tar").unlink()
    again = build(cfg, tmp_path / "ray", engine="ray")
    assert again["sha256"] == local["sha256"]


@pytest.mark.integration
def test_ray_engine_downloads_through_img2dataset_ray_distributor(tmp_path, local_ray, www):
    csv = write_url_list(tmp_path / "urls.csv", www[1])
    manifest = build(urls_cfg(csv), tmp_path / "c", engine="ray")
    assert manifest["counts"]["input_rows"] == len(CASES) and manifest["counts"]["samples"] == 4
    check_accounting(tmp_path / "c", www[1])


@pytest.mark.integration
def test_ray_engine_captions_through_a_misbehaving_openai_server_as_the_local_engine_does(tmp_path, local_ray):
    """The `openai` captioner in a Ray Data actor: the same shards, the same failed rows with their reasons, and
    every image asked exactly as often as with the local engine (none lost, none twice)."""
    import pandas as pd

    from openai_server import ALWAYS_FAILS, MODES, ChatServer

    with ChatServer() as srv:
        over = {"source.n": 40, "shard_size": 10, "image_size": 32, "filters.dedup_threshold": 0,
                "captioner.name": "openai", "captioner.endpoint": srv.url, "captioner.model": "test-vlm",
                "captioner.concurrency": 8, "captioner.timeout": 1.0, "captioner.retries": 3}
        cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", [f"{k}={v}" for k, v in over.items()],
                          kind="corpus")
        local = build(cfg, tmp_path / "local", workers=1)
        asked_local = dict(srv.state.asked)
        srv.state.asked.clear()  # the server's fates count attempts per image: the Ray build meets the same ones
        ray_built = build(cfg, tmp_path / "ray", engine="ray")
        asked_ray = dict(srv.state.asked)
        modes = {d: srv.state.mode(d) for d in asked_ray}
    assert asked_ray == asked_local and len(asked_ray) == 40 and set(modes.values()) == set(MODES)
    assert ray_built["sha256"] == local["sha256"] and ray_built["counts"] == local["counts"]
    cols = ["key", "status", "stage", "reason", "caption_attempts", "caption_truncated"]
    by_engine = [pd.read_parquet(tmp_path / d / "stats.parquet")[cols].sort_values("key").reset_index(drop=True)
                 for d in ("local", "ray")]
    pd.testing.assert_frame_equal(*by_engine)
    assert (by_engine[1].status == "failed").sum() == sum(m in ALWAYS_FAILS for m in modes.values()) > 0
    assert ray_built["caption_usage"]["requests"] == 40
