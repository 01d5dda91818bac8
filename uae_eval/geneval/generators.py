"""Image generators for GenEval (registry): `oracle` and `random` for the scene world.

A generator is called as `generate(metas, seeds) -> images`, one image per (prompt metadata, seed)
pair. Metadata (not just the prompt text) is passed so scene-world generators can be exact; a
text-to-image model wraps as `from_text_fn(fn)` and only reads `meta["prompt"]`.
"""
from __future__ import annotations

from typing import Callable, Protocol

from PIL import Image

from uae_data import scenes
from uae_data.registry import Registry


class Generator(Protocol):
    name: str

    def __call__(self, metas: list[dict], seeds: list[int]) -> list[Image.Image]: ...


GENERATORS: Registry = Registry("generator")


class _SceneGenerator:
    name = "scene"

    def __init__(self, image_size: int = 64, **_: object) -> None:
        self.size = image_size


@GENERATORS.register("oracle")
class OracleGenerator(_SceneGenerator):
    """Renders a scene that satisfies each prompt exactly: the ceiling of the scene GenEval."""

    name = "oracle"

    def __call__(self, metas: list[dict], seeds: list[int]) -> list[Image.Image]:
        from uae_eval.geneval.scene_prompts import scene_for_prompt

        return [scenes.render(scene_for_prompt(m, s), self.size) for m, s in zip(metas, seeds)]


@GENERATORS.register("random")
class RandomGenerator(_SceneGenerator):
    """Random scenes that ignore the prompt: the floor of the scene GenEval."""

    name = "random"

    def __call__(self, metas: list[dict], seeds: list[int]) -> list[Image.Image]:
        return [scenes.render(scenes.sample_scene(s), self.size) for s in seeds]


def from_text_fn(fn: Callable[[list[str], list[int]], list[Image.Image]], name: str = "model") -> Generator:
    """Wrap any `generate(prompts, seeds) -> images` (e.g. a diffusers pipeline) as a GenEval generator."""

    class _TextGenerator:
        def __call__(self, metas: list[dict], seeds: list[int]) -> list[Image.Image]:
            return fn([m["prompt"] for m in metas], seeds)

    g = _TextGenerator()
    g.name = name  # type: ignore[attr-defined]
    return g


def build_generator(name: str, image_size: int = 64, **options: object) -> Generator:
    return GENERATORS.get(name)(image_size=image_size, **options)
