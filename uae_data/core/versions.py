"""Provenance recorded with every output: package versions and the git hash of the checkout."""
from __future__ import annotations

import importlib.metadata as md
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

TRACKED = ("uae", "torch", "torchvision", "transformers", "diffusers", "tokenizers", "accelerate", "peft",
           "open_clip_torch", "webdataset", "numpy", "pillow", "scikit-image", "pandas", "pyarrow", "img2dataset", "trl")


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    """Versions of the packages that can change a number (installed ones only)."""
    out = {"python": platform.python_version()}
    for name in TRACKED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=1)
def git_hash() -> str | None:
    """HEAD of the checkout this code runs from (with '-dirty' if modified), or None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def version_line() -> str:
    """What `uae --version` prints: the installed version, or how to install a source tree that never was."""
    try:
        return f"uae {md.version('uae')}"
    except md.PackageNotFoundError:
        return "uae (not installed: run `pip install -e .`)"
