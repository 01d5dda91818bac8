"""Captioners that need no model: `scene` (exact, from the spec) and `keep` (the source caption)."""
from __future__ import annotations

import numpy as np

from uae_data import scenes
from uae_data.captioners.base import CAPTIONERS, Caption, CaptionerConfig
from uae_data.sources import SourceItem
from uae_data.web_captions import write_web_caption


@CAPTIONERS.register("scene")
class SceneCaptioner:
    """Writes the exact long caption of a scene item; the paraphrase is seeded per item."""

    def __init__(self, cfg: CaptionerConfig, seed: int) -> None:
        self.seed = seed

    def __call__(self, items: list[SourceItem]) -> list[Caption]:
        out = []
        for it in items:
            scene = it.meta.get("scene")
            if scene is None:
                raise ValueError(f"captioner 'scene' needs scene items (source 'scenes'); item {it.index} has none")
            rng = np.random.default_rng([self.seed, it.index, 1])
            out.append(Caption(scenes.write_caption(scene, rng), model="scene-exact"))
        return out


@CAPTIONERS.register("web")
class WebSceneCaptioner:
    """Web-style captions of scene items (`uae_data.web_captions`): the stored caption names a seeded subset of
    the objects; the exact long caption stays in the sample's meta (`exact_caption`) for evaluation only."""

    def __init__(self, cfg: CaptionerConfig, seed: int) -> None:
        self.seed, self.web, self.exact = seed, cfg.web, SceneCaptioner(cfg, seed)

    def __call__(self, items: list[SourceItem]) -> list[Caption]:
        out = []
        for it, exact in zip(items, self.exact(items)):  # the exact captions refuse items without a scene
            scene = it.meta["scene"]
            text, said = write_web_caption(scene, np.random.default_rng([self.seed, it.index, 2]), self.web)
            out.append(Caption(text, model="scene-web", meta={
                "exact_caption": exact.text, "objects": len(scene.objects), "objects_named": len(said),
                "objects_named_full": sum(m.full for m in said)}))
        return out


@CAPTIONERS.register("keep")
class KeepCaptioner:
    """Keeps the source's own caption (rows without one fail before captioning: `stages.load_shard`)."""

    def __init__(self, cfg: CaptionerConfig, seed: int) -> None:
        pass

    def __call__(self, items: list[SourceItem]) -> list[Caption]:
        return [Caption(it.caption or "", model="source") for it in items]
