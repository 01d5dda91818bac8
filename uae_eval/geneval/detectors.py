"""Every GenEval detector backend by name: `build_detector(name, **options)`.

Why a module of its own: the backends live in detect.py (scene, mask2former) and official_mask2former.py
(geneval-mask2former, which imports detect.py's helpers); importing them all here, above both, registers
every backend without an import cycle between them.
"""
from __future__ import annotations

from typing import Any

from uae_eval.geneval import official_mask2former  # noqa: F401  (registers "geneval-mask2former")
from uae_eval.geneval.detect import DETECTORS, Detector, build_from_registry


def build_detector(name: str, **options: Any) -> Detector:
    """A detector by registry name (`scene` | `mask2former` | `geneval-mask2former`) with backend options."""
    return build_from_registry(DETECTORS, name, options)
