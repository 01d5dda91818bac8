"""GenEval as an in-process, batched reward: one detector and colour classifier loaded once, scored by the
official rules, so prompt-following GRPO (Flow-GRPO's GenEval task) needs no separate reward server.

Flow-GRPO runs the official scorer behind an HTTP server because mmcv will not install beside its trainer;
with uae's port of the official detector (`geneval-mask2former`) the same scores come from a callable:

    reward = GenEvalReward(detector="geneval-mask2former", detector_options={"checkpoint": PATH}, colour="clip")
    r = reward(images, metadata_rows)      # (N,) float32: 1.0 where the image is correct (GenEval's score)
    reward.parts["partial"]                 # share of the prompt's items that pass (a denser signal)

`metadata_rows` are GenEval metadata lines (tag, include, exclude). In the scene world (`detector="scene"`,
`colour="scene"`) it needs no weights at all. `uae train stage2` uses it as the reward term `geneval`
(and `geneval-partial`) with `prompts: short`: each row's short prompt is read back to its metadata
(`prompts.prompt_metadata`).
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from PIL import Image

from uae_eval.geneval import rules
from uae_eval.geneval.colour import build_colourer
from uae_eval.geneval.detectors import build_detector


class GenEvalReward:
    """reward(images, metadata) -> (N,) float32 strict GenEval correctness; `parts` holds strict and partial."""

    def __init__(self, detector: str = "scene", detector_options: dict[str, Any] | None = None,
                 colour: str = "scene", colour_options: dict[str, Any] | None = None,
                 rules_config: rules.RulesConfig | None = None, batch_size: int = 16) -> None:
        self.detector = build_detector(detector, **(detector_options or {}))
        self.colourer = build_colourer(colour, **(colour_options or {}))
        self.rules = rules_config or rules.RulesConfig()
        self.batch_size = batch_size
        self.parts: dict[str, list[float]] = {}

    def judge(self, images: Sequence[Image.Image], metadata: Sequence[dict]) -> list[list[bool]]:
        """Per image, whether each item of its prompt passes (include items, then exclude items)."""
        if len(images) != len(metadata):
            raise ValueError(f"GenEval reward needs one metadata row per image: {len(images)} images, "
                             f"{len(metadata)} rows")
        out: list[list[bool]] = []
        for i in range(0, len(images), self.batch_size):
            batch, metas = list(images[i:i + self.batch_size]), metadata[i:i + self.batch_size]
            for image, meta, found in zip(batch, metas, self.detector(batch)):
                self.colourer(image, found)
                items, _ = rules.judge_items(meta, rules.filter_detections(meta, found, self.rules), self.rules)
                out.append(items)
        return out

    def __call__(self, images: Sequence[Image.Image], metadata: Sequence[dict]) -> torch.Tensor:
        items = self.judge(images, metadata)
        strict = [float(all(x)) for x in items]
        self.parts = {"strict": strict, "partial": [sum(x) / len(x) if x else 1.0 for x in items]}
        return torch.tensor(strict, dtype=torch.float32)

    def provenance(self) -> dict:
        return {"detector": self.detector.provenance(), "colour": self.colourer.provenance()}
