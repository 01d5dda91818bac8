"""Data for every recipe: the endless seeded training stream, global batches, held-out images.

Every rank of a multi-process run reads the same stream of sample *references and metadata* (cheap: no
pixels) and takes its slice, so a run's samples do not depend on the number of processes; each rank decodes
only the images it trains on (`load_image`). A resumed run fast-forwards the stream by the samples it had seen.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from uae_data.core.errors import CorpusError, InputError
from uae_data.scenes import Scene, render, sample_scene
from uae_data.shard_index import ordered_refs, read_image, read_sample
from uae_data.shards import corpus_dataset, list_shards
from uae_data.short_captions import prompt_scene


def sample_stream(corpus: Path, shuffle: int, seed: int, skip: int = 0,
                  keep: Callable[[dict], bool] | None = None) -> Iterator[dict]:
    """Endless seeded sample stream over the corpus (epoch e reshuffles with seed + e, the order of
    `corpus_dataset`); skips `skip` samples; `keep` filters samples before they are counted (so a resumed
    run skips the same ones). Samples are {key, caption, meta, ref}: the pixels stay in the shard until
    `load_image` (a rank reads every sample's metadata but decodes only its own images)."""
    list_shards(corpus)  # one line, early, when the folder has no shards
    epoch, seen = 0, 0
    while True:
        empty = True
        for s in map(read_sample, ordered_refs(corpus, shuffle, seed + epoch)):
            if keep is not None and not keep(s):
                continue
            empty = False
            seen += 1
            if seen > skip:
                yield s
        if empty:
            raise CorpusError(f"{corpus}: the shards hold no samples" + (" that this stage trains on (a filter such as "
                                                                          "stage 2's train_on_eval_prompts: false "
                                                                          "dropped them all)" if keep else ""))
        epoch += 1


def scene_of(sample: dict) -> Scene | None:
    """The exact scene a scene-corpus sample was rendered from (its meta), or None for other corpora."""
    spec = (sample.get("meta") or {}).get("scene")
    if not spec:
        return None
    return Scene.from_dict(spec) if isinstance(spec, dict) else None


def load_image(sample: dict, image_size: int) -> Image.Image:
    """A stream sample's image, decoded (RGB) and resized to image_size: the one costly step per sample."""
    image = read_image(sample["ref"])
    if image is None:
        raise CorpusError(f"{sample['ref'].path}: sample {sample['key']} has no image")
    return image.resize((image_size, image_size))


def batch_images(batch: list[dict], image_size: int, need: Iterable[int] | None = None) -> list:
    """The images of the batch's positions in `need` (None = all), None elsewhere."""
    want = range(len(batch)) if need is None else set(need)
    return [load_image(s, image_size) if i in want else None for i, s in enumerate(batch)]


def batch_fields(batch: list[dict], images: list) -> tuple[list, list[Scene | None], list[str | None]]:
    """(images, scene specs, short prompts) of a global batch (every rank reads the same samples): the
    images `batch_images` decoded (None where this rank needs none), scene specs and short prompts (meta
    short_caption; None where a row has none)."""
    return images, [scene_of(s) for s in batch], [(s.get("meta") or {}).get("short_caption") for s in batch]


def heldout(eval_corpus: str, n: int, seed: int, image_size: int) -> tuple[list[Image.Image], list[Scene | None]]:
    """Held-out images (+ scene specs when known).

    eval_corpus "" = the scene world: n scenes drawn from generators seeded (seed, i), a stream the corpus
    builder never uses (it seeds by row from the corpus seed), rendered at image_size. Otherwise the first
    n samples of that corpus folder (keep it out of the training corpus).
    """
    if not eval_corpus:
        scenes = [sample_scene(np.random.default_rng([seed, 7919, i])) for i in range(n)]
        return [render(s, image_size) for s in scenes], list(scenes)
    images, scenes = [], []
    for s in corpus_dataset(Path(eval_corpus), shuffle=0):
        images.append(s["image"].convert("RGB").resize((image_size, image_size)))
        scenes.append(scene_of(s))
        if len(images) == n:
            break
    if not images:
        raise InputError(f"{eval_corpus}: no held-out samples")
    return images, scenes


def heldout_prompts(n: int, seed: int, image_size: int) -> tuple[list[Image.Image], list[Scene], list[str]]:
    """n held-out framed prompt scenes (`short_captions.prompt_scene`: exactly what a GenEval-form prompt
    names) with their prompts, from generators seeded (seed, 7927, i), a stream no corpus draws.

    Why: a stage that paints short prompts is judged on scenes its prompts describe; a random scene's short
    caption names one or two of its up to six objects, so a painting of the prompt cannot match the scene.
    """
    drawn = [prompt_scene(random.Random(int(np.random.default_rng([seed, 7927, i]).integers(2**62))))
             for i in range(n)]
    return [render(s, image_size) for s, _ in drawn], [s for s, _ in drawn], [p for _, p in drawn]


def shift_by_one(items: list, shuffle: bool) -> list:
    """The shuffled-reward control: each item's reference is the next item of the batch, so the reward no
    longer says anything about the image the policy saw. As given when off or with fewer than 2 items."""
    if not shuffle or len(items) < 2:
        return items
    return items[1:] + items[:1]


def rank_seed(base: int, rank: int) -> int:
    """A rank's sampling seed: rank 0 keeps the 1-process seed, others get their own stream (a run is
    reproducible for a given number of processes)."""
    return base if rank == 0 else (base + rank * 1_000_000_007) % (2**62)
