"""Shared fixtures: the repo root and a CLI runner that calls the real `uae` entry point."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
