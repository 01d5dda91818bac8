"""Shared fixtures: the repo root, a CLI runner that calls the real `uae` entry point, scene corpora built
once per session, and photos served on 127.0.0.1."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    return ROOT


def run_uae(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run `uae ...` as a user would (a subprocess through cli.py), capturing output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=kw.pop("cwd", ROOT),
                          capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture
def uae():
    return run_uae


@pytest.fixture(scope="session")
def scene_corpus(tmp_path_factory) -> Callable[[int, int], Path]:
    """scene_corpus(n, image_size) -> a corpus folder as `uae build-corpus` writes it (manifests/corpus/scenes.yaml:
    n seeded scenes, images image_size px, two shards of n/2), built once per session for each (n, image_size).

    Tests only read it: a test that writes into a corpus builds its own.
    """
    built: dict[tuple[int, int], Path] = {}

    def make(n: int, image_size: int) -> Path:
        if (n, image_size) not in built:
            from uae_data.core.config import load_config
            from uae_data.pipeline import CorpusConfig, build

            out = tmp_path_factory.mktemp(f"scenes-{n}-{image_size}px") / "corpus"
            over = [f"source.n={n}", f"shard_size={(n + 1) // 2}", f"image_size={image_size}"]
            build(load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", over, kind="corpus"), out, workers=1)
            built[n, image_size] = out
        return built[n, image_size]

    return make


@pytest.fixture(scope="session")
def www(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """(folder, http://127.0.0.1:PORT): the photos and bad inputs of tests/served_photos.py, served from a thread."""
    from tests.served_photos import make_www, serve

    folder = tmp_path_factory.mktemp("www")
    make_www(folder)
    with serve(folder) as base:
        yield folder, base
