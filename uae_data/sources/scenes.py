"""The embedded default source: seeded scenes of the scene world, rendered on the fly."""
from __future__ import annotations

import random
from typing import Iterator

import numpy as np

from uae_data import scenes
from uae_data.short_captions import prompt_scene, short_caption
from uae_data.sources.base import SOURCES, SourceConfig, SourceContext, SourceItem


def item_rng(seed: int, index: int) -> np.random.Generator:
    """Per-item generator: item i is the same whatever shard or worker builds it."""
    return np.random.default_rng([seed, index])


@SOURCES.register("scenes")
class SceneSource:
    name = "scenes"

    def __init__(self, cfg: SourceConfig, ctx: SourceContext) -> None:
        self.cfg, self.size, self.seed = cfg, ctx.image_size, ctx.seed

    def prepare(self) -> None:
        pass  # generated on the fly: nothing to snapshot

    def __len__(self) -> int:
        return self.cfg.n

    def items(self, start: int, stop: int) -> Iterator[SourceItem]:
        for i in range(start, min(stop, len(self))):
            seed = self.seed * 1_000_003 + i
            # its own generator, drawn only when asked, so corpora without prompt scenes stay as they were
            if self.cfg.prompt_scenes and np.random.default_rng([self.seed, i, 1]).random() < self.cfg.prompt_scenes:
                scene, caption = prompt_scene(random.Random(seed))
            else:
                scene = scenes.sample_scene(item_rng(self.seed, i), self.cfg.min_objects, self.cfg.max_objects)
                # The source caption is a short GenEval-style prompt true of the scene (kept as short_caption).
                # Beside prompt scenes a random scene keeps none: a five-word prompt for a six-object scene
                # taught the decoder to answer short prompts with crowded scenes.
                caption = None if self.cfg.prompt_scenes else short_caption(scene, seed)
            yield SourceItem(index=i, image=scenes.render(scene, self.size), caption=caption, meta={"scene": scene})
