"""Reconstruction rewards for Unified-GRPO: a weighted mix of image-pair similarities.

Both stages score (original, reconstruction) pairs; the reward is Σ w_k · metric_k. Every metric of the
uae_eval registry is a reward (clip, dino, ssim, scene, scene-soft; psnr is scaled to [0, 1] by /50 dB so
it mixes with the others), plus `pixel` (1 − mean squared error on [0, 1] RGB), `constant` (the
control run: a reward with no signal must not move the model) and `length` (the control for "say more": it
pays for the objects a caption names and the words it writes, never looking at an image; stage 1 only). Both images get the same preprocessing:
the reconstruction is resized to the original's size inside each metric (facts §5.6: reward(x, x) = 1).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from uae_data.core.errors import ConfigError
from uae_data.scenes import SHAPES, Scene
from uae_data.web_captions import mentions

GENEVAL_TERMS = ("geneval", "geneval-partial")
CAPTION_TERMS = ("length",)  # terms that read the caption, not the images
LENGTH_OBJECTS, LENGTH_WORDS = 9, 150  # the length reward saturates at 9 named objects (the grid) and 150 words


def length_reward(caption: str) -> float:
    """0.8 · objects named / 9 + 0.2 · words / 150, each capped at 1: more named objects and more words pay,
    whether or not they are in the image (the words term breaks ties between captions naming as many)."""
    named = min(len(mentions(caption)), LENGTH_OBJECTS) / LENGTH_OBJECTS
    words = min(len(caption.split()), LENGTH_WORDS) / LENGTH_WORDS
    return 0.8 * named + 0.2 * words


def _pixel(originals: Sequence[Image.Image], recons: Sequence[Image.Image]) -> list[float]:
    out = []
    for a, b in zip(originals, recons):
        a = a.convert("RGB")
        b = b.convert("RGB").resize(a.size, Image.BICUBIC) if b.size != a.size else b.convert("RGB")
        x = np.asarray(a, dtype=np.float32) / 255.0
        y = np.asarray(b, dtype=np.float32) / 255.0
        out.append(float(1.0 - np.mean((x - y) ** 2)))
    return out


def reward_terms() -> list[str]:
    """Every reward term: the uae_eval metric registry plus pixel, constant and the GenEval judges."""
    from uae_eval.metrics import metric_names

    return sorted({*metric_names(), "pixel", "constant", *GENEVAL_TERMS, *CAPTION_TERMS})


def check_reward(weights: dict[str, float], options: dict[str, dict]) -> None:
    """Weights and per-term options against the terms and what each term's constructor takes (ConfigError)."""
    from uae_data.core.config import check_options
    from uae_eval.metrics import METRICS, metric_names

    if not weights:
        raise ConfigError("reward: give at least one metric weight, e.g. {scene-soft: 1.0}")
    known = reward_terms()
    unknown = sorted(set(weights) - set(known))
    if unknown:
        raise ConfigError(f"reward: unknown metric(s) {unknown}; choose from {known}")
    for name, opts in options.items():
        if name not in known:
            raise ConfigError(f"unknown key 'reward_options.{name}' (known: {', '.join(known)})")
        if name in GENEVAL_TERMS:
            from uae_eval.geneval.reward import GenEvalReward

            target = GenEvalReward
        else:
            target = METRICS.get(name) if name in metric_names() else (lambda: None)  # pixel, constant, length: none
        check_options(f"reward_options.{name}", opts or {}, target)


class Reward:
    """reward(originals, reconstructions, scenes=None, prompts=None) -> (total, parts): the (N,) float32
    weighted total and each term's N values (unweighted), a plain callable as TRL's reward functions.

    scenes: exact specs of the originals (scene corpora carry them), used by scene metrics instead of
    re-detecting the original.
    """

    def __init__(self, weights: dict[str, float], metric_options: dict | None = None) -> None:
        from uae_eval.metrics import build_metric

        check_reward(weights, metric_options or {})
        self.weights = {k: float(v) for k, v in weights.items()}
        options = metric_options or {}
        self.metrics = {k: build_metric(k, **options.get(k, {})) for k in weights
                        if k not in ("pixel", "constant", *GENEVAL_TERMS, *CAPTION_TERMS)}
        self.geneval = None
        if set(weights) & set(GENEVAL_TERMS):
            from uae_eval.geneval.reward import GenEvalReward

            self.geneval = GenEvalReward(**options.get("geneval", {}))
            namer = getattr(self.geneval.detector, "class_names", None)
            self.geneval_classes = namer() if callable(namer) else list(SHAPES)

    @property
    def reads_images(self) -> bool:
        """False when every term ignores the images (constant, length): a stage may then skip painting."""
        return any(k not in ("constant", *CAPTION_TERMS) for k in self.weights)

    def _geneval(self, recons, prompts: Sequence[str] | None) -> dict[str, list[float]]:
        from uae_eval.geneval.prompts import prompt_metadata

        if prompts is None or len(prompts) != len(recons):
            raise ConfigError("reward geneval: needs the prompt of every painting (stage2 prompts: short)")
        parsed = {p: prompt_metadata(p, self.geneval_classes) for p in set(prompts)}  # a group shares its prompt
        for p, meta in parsed.items():
            if meta is None:
                raise ConfigError(f"reward geneval: {p!r} is not a GenEval-template prompt of the detector's classes "
                                  f"('a photo of ...'); use stage2 prompts: short on a corpus with short captions")
        self.geneval(list(recons), [parsed[p] for p in prompts])
        return {"geneval": self.geneval.parts["strict"], "geneval-partial": self.geneval.parts["partial"]}

    def _term(self, name: str, originals, recons, scenes: Sequence[Scene] | None,
              captions: Sequence[str] | None = None) -> list[float]:
        if name == "length":
            if captions is None or len(captions) != len(recons):
                raise ConfigError("reward length: needs the caption of every reconstruction (a stage-1 reward)")
            return [length_reward(c) for c in captions]
        if name == "pixel":
            return _pixel(originals, recons)
        if name == "constant":
            return [1.0] * len(recons)
        metric = self.metrics[name]
        if scenes is not None and hasattr(metric, "score_specs"):
            values = metric.score_specs(list(scenes), list(recons))
        else:
            values = metric(list(originals), list(recons))
        if name == "psnr":
            values = [min(v, 50.0) / 50.0 for v in values]
        return values

    def __call__(self, originals: Sequence[Image.Image], recons: Sequence[Image.Image],
                 scenes: Sequence[Scene] | None = None,
                 prompts: Sequence[str] | None = None,
                 captions: Sequence[str] | None = None) -> tuple[torch.Tensor, dict[str, list[float]]]:
        """prompts: what each painting was painted from; only the geneval terms read them.
        captions: the captions the reconstructions were painted from; only the length term reads them."""
        if len(originals) != len(recons):
            raise ValueError(f"reward needs pairs: {len(originals)} originals, {len(recons)} reconstructions")
        total = np.zeros(len(recons), dtype=np.float64)
        parts: dict[str, list[float]] = {}
        judged = self._geneval(recons, prompts) if self.geneval is not None else {}
        for name, w in self.weights.items():
            values = judged[name] if name in judged else self._term(name, originals, recons, scenes, captions)
            parts[name] = values
            total += w * np.asarray(values, dtype=np.float64)
        return torch.tensor(total, dtype=torch.float32), parts


def build_reward(weights: dict[str, float], metric_options: dict | None = None) -> Reward:
    return Reward(weights, metric_options)
