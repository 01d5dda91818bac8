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
