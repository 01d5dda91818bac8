"""Scene-world painters for DPG-Bench (registry): `oracle`, `random`, `noise`, each `generate(prompts, seeds)`.

oracle  paints the scene a Scene-DPG prompt describes (`parse_caption` inverts `write_caption` exactly): the ceiling
random  a random scene per seed, ignoring the prompt: what chance scores
noise   object-free images (GenEval's noise families, `family` option): an honest judge answers no to everything
A text-to-image model (`--pipeline`, `--decoder`) has the same call, so the harness paints through one interface.
"""
from __future__ import annotations

from typing import Callable

from PIL import Image

from uae_data import scenes
from uae_data.core.errors import InputError
from uae_data.core.registry import Registry

GENERATORS: Registry[Callable[..., Callable]] = Registry("generator")
RANDOM_STREAM = 0xD96  # the random painter's own seed stream (see random_scenes)


def _named(fn: Callable, name: str) -> Callable:
    fn.name = name  # type: ignore[attr-defined]
    return fn


@GENERATORS.register("oracle")
def oracle(image_size: int = 64) -> Callable:
    def generate(prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        return [scenes.render(scenes.parse_caption(p), image_size) for p in prompts]

    return _named(generate, "oracle")


@GENERATORS.register("random")
def random_scenes(image_size: int = 64) -> Callable:
    """Scenes from a random stream of their own: Scene-DPG's item i is `sample_scene(i)` (seed 0), so a painter
    seeded with plain tile seeds would paint item i's own scene whenever a tile's seed equals i (every tile with
    tiles=1: a "random" 100)."""
    import numpy as np

    def generate(prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        return [scenes.render(scenes.sample_scene(np.random.default_rng([s, RANDOM_STREAM])), image_size)
                for s in seeds]

    return _named(generate, "random")


@GENERATORS.register("noise")
def noise(image_size: int = 64, family: str = "cycle") -> Callable:
    from uae_eval.geneval.generators import NOISE_FAMILIES, noise_family, paint_noise

    if family != "cycle" and family not in NOISE_FAMILIES:
        raise ValueError(f"noise generator: unknown family {family!r} (known: {', '.join(NOISE_FAMILIES)}, cycle)")

    def generate(prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        return [paint_noise(noise_family(family, s), s, image_size) for s in seeds]

    return _named(generate, "noise")


def build_generator(name: str, image_size: int = 64, **options) -> Callable:
    if name not in GENERATORS:
        raise InputError(f"unknown generator {name!r} (known: {', '.join(GENERATORS.names())}); a real model "
                         "paints with --pipeline or --decoder")
    return GENERATORS.get(name)(image_size=image_size, **options)


def check_oracle_prompts(prompts: list[tuple[str, str]], source: str) -> None:
    """The oracle paints only what a scene caption describes: refuse any other prompt before painting."""
    for item_id, text in prompts:
        try:
            scenes.parse_caption(text)
        except ValueError:
            raise InputError(f"{source}: the prompt of item {item_id!r} is not a scene caption; the scene oracle "
                             "paints Scene-DPG prompts only (paint real prompts with --pipeline or --decoder)") from None
