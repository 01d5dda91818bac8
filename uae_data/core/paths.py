"""Where the shipped manifests live, in a source checkout and in an installed wheel.

Why: manifests/ stays at the top of the repository (the project's layout), and the wheel ships it as the
package `uae_manifests` (pyproject maps it). Paths in manifests and defaults are written
"manifests/..."; `shipped()` resolves them wherever uae runs from.
"""
from __future__ import annotations

from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parents[2] / "manifests"


def manifests_dir() -> Path:
    """The source tree's manifests/ when run from a checkout, else the installed `uae_manifests` package."""
    if SOURCE_TREE.is_dir():
        return SOURCE_TREE
    from importlib.resources import files

    return Path(str(files("uae_manifests")))


def shipped(path: str | Path) -> Path:
    """A path as given when it exists (absolute or from the working folder); a "manifests/..." path
    that does not exist there resolves to the shipped copy; anything else is returned unchanged."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    parts = p.parts
    if parts and parts[0] == "manifests":
        return manifests_dir().joinpath(*parts[1:])
    return p
