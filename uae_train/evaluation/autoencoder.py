"""The encoder and decoder wired as plain callables, the form every harness takes.

`text_to_image(encoder, decoder)` -> generate(prompts, seeds) -> images: the encoder re-reads the
prompt and its hidden states condition the decoder (the UAE connector path; `models.painting.paint`).
`image_to_text(encoder)` -> caption(images) -> texts.
"""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image

from uae_train.models.painting import paint


def text_to_image(encoder, decoder, steps: int = 20, guidance: float = 1.0, max_text_tokens: int = 256,
                  batch_size: int = 16) -> Callable[[list[str], list[int]], list[Image.Image]]:
    def generate(prompts: list[str] | list[dict], seeds: list[int]) -> list[Image.Image]:
        # the GenEval harness hands its generator metadata rows; paint their "prompt" (until this was read,
        # the decoder painted the row's dict rendered as text)
        prompts = [p["prompt"] if isinstance(p, dict) else p for p in prompts]
        if not all(isinstance(p, str) for p in prompts):
            raise TypeError("text_to_image paints strings or GenEval metadata rows with a 'prompt'")
        return paint(decoder.reader(encoder), decoder, prompts, seeds, steps, guidance,
                     max_text_tokens=max_text_tokens, batch=batch_size)

    generate.name = "uae-decoder"  # type: ignore[attr-defined]
    return generate


def image_to_text(encoder, sample: bool = False, max_new_tokens: int = 160, seed: int = 0,
                  batch_size: int = 16) -> Callable[[list[Image.Image]], list[str]]:
    @torch.no_grad()
    def caption(images: list[Image.Image]) -> list[str]:
        texts: list[str] = []
        for i in range(0, len(images), batch_size):
            texts += encoder.caption(images[i:i + batch_size], n=1, sample=sample, max_new_tokens=max_new_tokens,
                                     seed=seed + i)
        return texts

    return caption


def prefetched_captioner(encoder, images: list[Image.Image], max_new_tokens: int = 160,
                         batch_size: int = 32) -> Callable[[list[Image.Image]], list[str]]:
    """caption(images) that answers from captions written up front for `images` in batches (greedy).

    Harnesses that ask one image at a time (MMT-Bench's caption-reader) would otherwise run one `generate`
    per row; batching them first is ~batch_size× fewer decoding passes. Unknown images are captioned live.
    """
    live = image_to_text(encoder, max_new_tokens=max_new_tokens, batch_size=batch_size)
    texts = live(list(images)) if images else []
    cache = {_key(im): t for im, t in zip(images, texts)}

    def caption(batch: list[Image.Image]) -> list[str]:
        missing = [im for im in batch if _key(im) not in cache]
        if missing:
            cache.update({_key(im): t for im, t in zip(missing, live(missing))})
        return [cache[_key(im)] for im in batch]

    return caption


def _key(image: Image.Image) -> tuple:
    import hashlib

    rgb = image.convert("RGB")
    return rgb.size, hashlib.sha1(rgb.tobytes()).hexdigest()


def mmt_captioner(encoder, tsv: str, limit: int | None, max_new_tokens: int):
    """A caption-reader's captioner for an MMT TSV: its first `limit` rows' images captioned up front in batches."""
    from uae_eval.mmt_bench.data import decode_images, load_tsv

    df = load_tsv(tsv)
    if limit:
        df = df.head(limit)
    images = [im for field in df["image"] for im in decode_images(field)[:1]]
    return prefetched_captioner(encoder, images, max_new_tokens=max_new_tokens)
