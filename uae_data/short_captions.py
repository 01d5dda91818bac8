"""Short GenEval-style prompts that are true of a scene ("a photo of two red circles"...).

Why: the decoder is pretrained on long captions, but GenEval asks with short prompts. Mixing a share
of short, true prompts into decoder pretraining (as SD3 mixes caption styles) lets the scene GenEval
score a pretrained decoder on the prompts it was built for, without rewriting them (a rewrite makes
scores incomparable, facts/geneval.md §8). The six forms mirror GenEval's six tags.
"""
from __future__ import annotations

import random
from collections import Counter

from uae_data.scenes import Scene, SceneObject

NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def with_article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def plural(name: str) -> str:
    return f"{name}es" if name.endswith("s") else f"{name}s"


def _relation(a: SceneObject, b: SceneObject) -> str | None:
    """A GenEval relation of a to b that the 3x3 grid makes unambiguous (same row or column only)."""
    if a.row == b.row and a.col != b.col:
        return "left of" if a.col < b.col else "right of"
    if a.col == b.col and a.row != b.row:
        return "above" if a.row < b.row else "below"
    return None


def short_caption(scene: Scene, seed: int) -> str:
    """One short prompt, in GenEval's templates, that holds for `scene` (drawn with `seed`)."""
    rng = random.Random(seed)
    objs = list(scene.objects)
    shapes = Counter(o.shape for o in objs)
    unique = [o for o in objs if shapes[o.shape] == 1]
    forms = ["single_object"] + (["colors"] if unique else [])  # GenEval judges colour on the top-1 of a class
    if len(shapes) >= 2:
        forms.append("two_object")
    if any(n >= 2 for n in shapes.values()):
        forms.append("counting")
    pairs = [(a, b) for a in unique for b in unique if a is not b and _relation(a, b)]
    if pairs:
        forms.append("position")
    if len(unique) >= 2:
        forms.append("color_attr")
    form = rng.choice(forms)
    if form == "single_object":
        return f"a photo of {with_article(rng.choice(objs).shape)}"
    if form == "colors":
        o = rng.choice(unique)
        return f"a photo of {with_article(o.color + ' ' + o.shape)}"
    if form == "two_object":
        a, b = rng.sample(sorted(shapes), 2)
        return f"a photo of {with_article(a)} and {with_article(b)}"
    if form == "counting":
        shape = rng.choice(sorted(s for s, n in shapes.items() if n >= 2))
        return f"a photo of {NUMBERS[shapes[shape]]} {plural(shape)}"
    if form == "position":
        a, b = rng.choice(pairs)
        return f"a photo of {with_article(a.shape)} {_relation(a, b)} {with_article(b.shape)}"
    a, b = rng.sample(unique, 2)
    return f"a photo of {with_article(a.color + ' ' + a.shape)} and {with_article(b.color + ' ' + b.shape)}"
