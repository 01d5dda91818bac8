"""Shared fixtures: the repo root, CLI runners (the real `uae` entry point, or `cli.app` in process), scene
corpora built once per session, and photos served on 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session", autouse=True)
def no_wandb_debris() -> Iterator[None]:
    """wandb makes two temp folders (tmp*wandb-media, tmp*wandb-artifacts) in every process that imports it and
    never removes them (8 pairs a suite run); remove the ones made during this run (a CI run once filled /tmp)."""
    root = Path(tempfile.gettempdir())
    before = set(root.glob("tmp*wandb-*"))
    yield
    for folder in set(root.glob("tmp*wandb-*")) - before:
        shutil.rmtree(folder, ignore_errors=True)


def run_uae(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """Run `uae ...` as a user would (a subprocess through cli.py), capturing output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **kw.pop("env", {})}
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], cwd=kw.pop("cwd", ROOT),
                          capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture
def uae():
    return run_uae


class InProcessRun:
    """Typer CliRunner's result under subprocess.CompletedProcess's field names (returncode, stdout, stderr)."""

    def __init__(self, result) -> None:
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def run_uae_in_process(*args: str, env: dict | None = None) -> InProcessRun:
    """Run `uae ...` through `cli.app` in this process (Typer's CliRunner): the same parsing, output and exit
    codes without a Python start-up. An unexpected exception propagates to the test instead of becoming exit 1.
    Tests about the process itself (entry point, tracebacks on stderr, environment) use `uae`."""
    from typer.testing import CliRunner

    import cli

    return InProcessRun(CliRunner().invoke(cli.app, list(args), env=env, catch_exceptions=False))


@pytest.fixture
def uae_in_process():
    return run_uae_in_process


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
            from uae_data.corpus_config import CorpusConfig
            from uae_data.pipeline import build

            out = tmp_path_factory.mktemp(f"scenes-{n}-{image_size}px") / "corpus"
            over = [f"source.n={n}", f"shard_size={(n + 1) // 2}", f"image_size={image_size}"]
            build(load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", over, kind="corpus"), out, workers=1)
            built[n, image_size] = out
        return built[n, image_size]

    return make


@pytest.fixture(scope="session")
def www(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    """(folder, http://127.0.0.1:PORT): the photos and bad inputs of tests/served_photos.py, served from a thread."""
    from benchmarks.corpus_urls import serve
    from tests.served_photos import make_www

    folder = tmp_path_factory.mktemp("www")
    make_www(folder)
    with serve(folder) as base:
        yield folder, base


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder with a saved tiny encoder (64 px) and decoder (32 px), as `uae train pretrain` leaves one;
    tests only read it."""
    from uae_train.models.decoder import Decoder
    from uae_train.models.encoder import Encoder

    root = tmp_path_factory.mktemp("tiny-run")
    enc = Encoder.tiny(image_size=64, seed=0)
    enc.save_pretrained(root / "encoder")
    Decoder.tiny(enc.hidden_size, image_size=32, seed=0).save_pretrained(root / "decoder")
    return root
