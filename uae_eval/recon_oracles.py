"""Exact scene-world captioner and decoder: the ceiling a caption -> image round trip can reach.

The oracle captioner writes the exact spec's caption (from the corpus's meta["scene"] when given, else the
scene the detector reads from the image); the oracle decoder renders parse_caption(text). Together they
reconstruct scene images pixel-exactly (scene F1 = 1, PSNR = inf).
"""
from __future__ import annotations

from PIL import Image

from uae_data.core.errors import InputError
from uae_data.scene_detect import read_scene
from uae_data.scenes import Scene, parse_caption, render, write_caption


class NotAScene(InputError):
    """An image the oracle captioner cannot read: no scene-world object in it (a photo, say). `position` is
    its place in the batch, so the harness can name the file."""

    def __init__(self, position: int) -> None:
        super().__init__(f"image {position}: no scene-world object in it")
        self.position = position


class OracleCaptioner:
    """`caption(images, scenes=None, seeds=None) -> texts`; `scenes` (exact specs) win over detection."""

    uses_scene_spec = True

    def __call__(self, images: list[Image.Image], scenes: list[Scene | None] | None = None,
                 seeds: list[int] | None = None) -> list[str]:
        scenes = scenes or [None] * len(images)
        seeds = seeds or list(range(len(images)))
        texts = []
        for i, (im, s, seed) in enumerate(zip(images, scenes, seeds)):
            scene = s if s is not None else read_scene(im.convert("RGB"))
            if not scene.objects:
                raise NotAScene(i)
            texts.append(write_caption(scene, seed))
        return texts


class OracleDecoder:
    """`generate(prompts, seeds) -> images`: renders the caption's scene (seeds unused: rendering is exact).
    A caption with no object statement renders as a blank canvas."""

    def __init__(self, image_size: int = 64) -> None:
        self.image_size = image_size

    def __call__(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        out = []
        for text in prompts:
            try:
                scene = parse_caption(text)
            except ValueError:
                scene = Scene(())
            out.append(render(scene, self.image_size))
        return out


CAPTIONERS = {"oracle": OracleCaptioner}
DECODERS = {"oracle": OracleDecoder}
