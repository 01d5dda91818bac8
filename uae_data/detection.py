"""The one detection type shared by every detector backend (scene, Mask2Former) and the GenEval rules."""
from __future__ import annotations

import math

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detection:
    """One detected object in one image.

    box is (x1, y1, x2, y2) in pixels, y pointing down (as mmdet/GenEval).
    mask is a bool array (H, W) or None (precomputed detections carry none).
    color is a colour classifier's answer for the object, or None when not classified.
    """

    label: str
    score: float
    box: tuple[float, float, float, float]
    mask: np.ndarray | None = field(default=None, repr=False)
    color: str | None = None

    def to_dict(self) -> dict:
        """JSON-safe form (the mask is dropped: it is large and derivable)."""
        d = {"label": self.label, "score": float(self.score), "box": [float(v) for v in self.box]}
        if self.color is not None:
            d["color"] = self.color
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Detection":
        box = d["box"]
        if len(box) != 4:
            raise ValueError(f"box must have 4 numbers (x1, y1, x2, y2), got {box!r}")
        score, coords = float(d["score"]), tuple(float(v) for v in box)
        if not all(math.isfinite(v) for v in (score, *coords)):  # NaN would pass or fail every threshold silently
            raise ValueError(f"score and box must be finite numbers, got score {d['score']!r}, box {box!r}")
        return cls(label=str(d["label"]), score=score, box=coords, color=d.get("color"))


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """IoU of two xyxy boxes (continuous coordinates)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
