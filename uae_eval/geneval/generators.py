"""Image generators for GenEval (registry): `oracle`, `random` and `noise` for the scene world.

A generator is called as `generate(metas, seeds) -> images`, one image per (prompt metadata, seed)
pair. Metadata (not just the prompt text) is passed so scene-world generators can be exact; a
text-to-image model wraps as `from_text_fn(fn)` and only reads `meta["prompt"]`.
"""
from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
from PIL import Image, ImageFilter

from uae_data import scenes
from uae_data.core.registry import Registry


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


# ---------------------------------------------------------------- object-free images (detector honesty)

_PALETTE = np.array(list(scenes.COLORS.values()), np.float32)
_GREY = np.array(scenes.BACKGROUND, np.float32)


def _palette_colours(rng: np.random.Generator, k: int) -> np.ndarray:
    return _PALETTE[rng.choice(len(_PALETTE), size=k, replace=k > len(_PALETTE))]


def _gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    """I.i.d. Gaussian pixel noise around a random mean grey-ish level (sigma 30-90)."""
    return rng.normal(rng.uniform(60, 200, 3), rng.uniform(30, 90), (n, n, 3))


def _speckle(rng: np.random.Generator, n: int) -> np.ndarray:
    """Scene grey with 5-50% of pixels (or 2x2 blocks) set to 1-3 random palette colours."""
    block = int(rng.choice([1, 2]))
    m = -(-n // block)
    img = np.broadcast_to(_GREY, (m, m, 3)).copy()
    colours = _palette_colours(rng, int(rng.integers(1, 4)))
    hit = rng.random((m, m)) < rng.uniform(0.05, 0.5)
    img[hit] = colours[rng.integers(0, len(colours), int(hit.sum()))]
    return img.repeat(block, 0).repeat(block, 1)[:n, :n]


def _grey(rng: np.random.Generator, n: int) -> np.ndarray:
    """The scene background and nothing else (an empty scene)."""
    return np.broadcast_to(_GREY, (n, n, 3)).copy()


def _flat(rng: np.random.Generator, n: int) -> np.ndarray:
    """One colour fills the frame: a palette colour half the time, else a random RGB."""
    colour = _palette_colours(rng, 1)[0] if rng.random() < 0.5 else rng.uniform(0, 255, 3)
    return np.broadcast_to(colour, (n, n, 3)).copy()


def _upsample(low: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    im = Image.fromarray(np.clip(low, 0, 255).astype(np.uint8))
    return np.asarray(im.resize((n, n), [Image.BILINEAR, Image.BICUBIC][int(rng.integers(2))]), np.float32)


def _smooth(rng: np.random.Generator, n: int) -> np.ndarray:
    """Low-res (2-8 px) random colour noise upsampled bilinear or bicubic: a smooth random colour field.

    Half the time the low-res pixels are palette colours or grey, so the field passes through exact
    scene colours."""
    r = int(rng.choice([2, 3, 4, 5, 6, 8]))
    if rng.random() < 0.5:
        low = rng.uniform(0, 255, (r, r, 3))
    else:
        choices = np.concatenate([_PALETTE, _GREY[None]])
        low = choices[rng.integers(0, len(choices), (r, r))]
    return _upsample(low, n, rng)


def _blobs(rng: np.random.Generator, n: int) -> np.ndarray:
    """1-6 Gaussian blobs of palette colours on the scene grey, blurred (sigma 1.5-3 px at 64): what a weakly
    trained decoder paints. Half the blobs sit on grid-cell centres with glyph-like sizes."""
    cell = n / scenes.GRID
    img = np.broadcast_to(_GREY, (n, n, 3)).copy()
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    for _ in range(int(rng.integers(1, 7))):
        if rng.random() < 0.5:
            cy, cx = (rng.integers(0, scenes.GRID, 2) + 0.5) * cell
        else:
            cy, cx = rng.uniform(0, n, 2)
        radius = rng.uniform(0.25, 0.45) * cell  # half a glyph's extent
        sy, sx = radius * rng.uniform(0.6, 1.0, 2)
        alpha = np.clip(rng.uniform(1.0, 2.0) * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2))), 0, 1)
        img = img * (1 - alpha[..., None]) + _palette_colours(rng, 1)[0] * alpha[..., None]
    sigma = rng.uniform(1.5, 3.0) * n / 64
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(sigma))
    return np.asarray(im, np.float32)


def _gradient(rng: np.random.Generator, n: int) -> np.ndarray:
    """A linear ramp between two colours (palette, grey or random) at a random angle."""
    choices = np.concatenate([_PALETTE, _GREY[None], rng.uniform(0, 255, (3, 3))])
    a, b = choices[rng.choice(len(choices), 2, replace=False)]
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = (np.mgrid[0:n, 0:n] + 0.5) / n
    t = (np.cos(theta) * (xx - 0.5) + np.sin(theta) * (yy - 0.5)) / np.sqrt(0.5) + 0.5
    return a + np.clip(t, 0, 1)[..., None] * (b - a)


def _stripes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sharp stripes (period 3-16 px at 64) of one or two palette colours on the scene grey, any of 4 directions."""
    period = max(2, int(rng.integers(3, 17) * n / 64))
    yy, xx = np.mgrid[0:n, 0:n]
    coord = [xx, yy, xx + yy, xx - yy + n][int(rng.integers(4))]
    phase = (coord // max(1, period // 2)) % 2
    colours = _palette_colours(rng, 2)
    img = np.broadcast_to(_GREY, (n, n, 3)).copy()
    img[phase == 1] = colours[0] if rng.random() < 0.5 else colours[((coord[phase == 1] // period) % 2)]
    return img


def _checker(rng: np.random.Generator, n: int) -> np.ndarray:
    """A checkerboard of a palette colour and the scene grey, squares 2-14 px at 64, randomly offset."""
    sq = max(1, int(rng.integers(2, 15) * n / 64))
    oy, ox = rng.integers(0, sq, 2)
    yy, xx = np.mgrid[0:n, 0:n]
    on = ((yy + oy) // sq + (xx + ox) // sq) % 2 == 1
    img = np.broadcast_to(_GREY, (n, n, 3)).copy()
    img[on] = _palette_colours(rng, 1)[0]
    return img


# family name -> painter(rng, n) -> float (n, n, 3) RGB in ~[0, 255] (clipped by `paint_noise`)
NOISE_FAMILIES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "gaussian": _gaussian, "speckle": _speckle, "grey": _grey, "flat": _flat, "smooth": _smooth,
    "blobs": _blobs, "gradient": _gradient, "stripes": _stripes, "checker": _checker,
}


def paint_noise(family: str, seed: int, size: int = 64) -> Image.Image:
    """One object-free image of `family` (a NOISE_FAMILIES name), a pure function of (family, seed, size)."""
    if family not in NOISE_FAMILIES:
        raise ValueError(f"unknown noise family {family!r} (known: {', '.join(NOISE_FAMILIES)}, cycle)")
    rng = np.random.default_rng([int(seed), list(NOISE_FAMILIES).index(family)])
    arr = NOISE_FAMILIES[family](rng, size)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def noise_family(family: str, seed: int) -> str:
    """The family an image paints: `family` itself, or for "cycle" the seed's turn in NOISE_FAMILIES order."""
    return list(NOISE_FAMILIES)[seed % len(NOISE_FAMILIES)] if family == "cycle" else family


@GENERATORS.register("noise")
class NoiseGenerator(_SceneGenerator):
    """Object-free images that ignore the prompt: an honest detector scores them ~0 on every tag.

    family: one of NOISE_FAMILIES (gaussian, speckle, grey, flat, smooth, blobs, gradient, stripes,
    checker), or "cycle" (default): image seed s paints family number s mod 9, so every run of the
    same prompts and seed paints the same images. Set it with `generator_options: {family: smooth}`
    in a geneval manifest or `generator_options.family=smooth` on the command line.
    """

    name = "noise"

    def __init__(self, image_size: int = 64, family: str = "cycle", **_: object) -> None:
        super().__init__(image_size)
        if family != "cycle" and family not in NOISE_FAMILIES:
            raise ValueError(f"noise generator: unknown family {family!r} (known: {', '.join(NOISE_FAMILIES)}, cycle)")
        self.family = family

    def __call__(self, metas: list[dict], seeds: list[int]) -> list[Image.Image]:
        return [paint_noise(noise_family(self.family, s), s, self.size) for s in seeds]


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
