"""Short GenEval-style prompts that are true of a scene ("a photo of two red circles"...).

Why: the decoder is pretrained on long captions, but GenEval asks with short prompts. Mixing a share
of short, true prompts into decoder pretraining (as SD3 mixes caption styles) lets the scene GenEval
score a pretrained decoder on the prompts it was built for, without rewriting them (a rewrite makes
scores incomparable, facts/geneval.md §8). The six forms mirror GenEval's six tags.
"""
from __future__ import annotations

import random
from collections import Counter

from uae_data.scenes import COLORS, GRID, SHAPES, SIZES, Scene, SceneObject

NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def with_article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def plural(name: str) -> str:
    return f"{name}es" if name.endswith("s") else f"{name}s"


def relation(a: SceneObject, b: SceneObject) -> str | None:
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
    pairs = [(a, b) for a in unique for b in unique if a is not b and relation(a, b)]
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
        return f"a photo of {with_article(a.shape)} {relation(a, b)} {with_article(b.shape)}"
    a, b = rng.sample(unique, 2)
    return f"a photo of {with_article(a.color + ' ' + a.shape)} and {with_article(b.color + ' ' + b.shape)}"


FORMS = ("single_object", "colors", "two_object", "counting", "position", "color_attr")
_SIDES = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}


# where a fixed layout puts the prompt's objects, by count (prompt order, left to right, then top to bottom)
FIXED_CELLS = {1: [(1, 1)], 2: [(1, 0), (1, 2)], 3: [(1, 0), (1, 1), (1, 2)], 4: [(0, 0), (0, 2), (2, 0), (2, 2)]}


def prompt_scene(rng: random.Random, layout: str = "fixed") -> tuple[Scene, str]:
    """A short prompt in one of GenEval's six forms (drawn evenly) and a scene of exactly what it names.

    Why: a short prompt written for a random 1-6-object scene ("a photo of a cross" for a cross among five
    other objects) asks the decoder to invent every object it does not name, and the scene-world DiT answered
    GenEval prompts with crowded random scenes. A photo captioned "a photo of a cross" shows a cross, framed:
    with `layout` fixed, a lone object sits in the centre cell, two or three along the middle row in prompt
    order, four in the corners, and a relation's pair along the middle row or column. With `layout` random
    (cells drawn at random) the demo DiT could not choose a cell for an unplaced object and painted faint
    ghosts in all nine (docs/scene-world-learning.md). Colours and sizes the prompt leaves open stay random.
    """
    if layout not in ("fixed", "random"):
        raise ValueError(f"layout {layout!r}: expected fixed or random")
    cells = [(r, c) for r in range(GRID) for c in range(GRID)]
    form = rng.choice(FORMS)

    def place(n: int) -> list[tuple[int, int]]:
        return list(FIXED_CELLS[n]) if layout == "fixed" else rng.sample(cells, n)

    def obj(shape: str, cell: tuple[int, int]) -> SceneObject:
        return SceneObject(shape, rng.choice(list(COLORS)), rng.choice(list(SIZES)), *cell)

    if form in ("single_object", "colors"):
        o = obj(rng.choice(SHAPES), place(1)[0])
        name = f"{o.color} {o.shape}" if form == "colors" else o.shape
        return Scene((o,)), f"a photo of {with_article(name)}"
    if form == "counting":
        n, shape = rng.choice(sorted(NUMBERS)[:3]), rng.choice(SHAPES)  # GenEval-scene counts two to four
        objs = tuple(obj(shape, cell) for cell in place(n))
        return Scene(objs), f"a photo of {NUMBERS[n]} {plural(shape)}"
    a_shape, b_shape = rng.sample(SHAPES, 2)
    if form == "position":
        rel = rng.choice(sorted(_SIDES))
        dr, dc = _SIDES[rel]
        if layout == "fixed":  # across the centre: "left of" puts a in the middle left cell, b in the middle right
            a_cell, b_cell = (1 + dr, 1 + dc), (1 - dr, 1 - dc)
        else:
            b_cell = rng.choice([(r, c) for r, c in cells if 0 <= r + dr < GRID and 0 <= c + dc < GRID])
            k = rng.choice([k for k in range(1, GRID) if 0 <= b_cell[0] + k * dr < GRID and 0 <= b_cell[1] + k * dc < GRID])
            a_cell = (b_cell[0] + k * dr, b_cell[1] + k * dc)
        a, b = obj(a_shape, a_cell), obj(b_shape, b_cell)
        assert relation(a, b) == rel
        return Scene((a, b)), f"a photo of {with_article(a_shape)} {rel} {with_article(b_shape)}"
    a_cell, b_cell = place(2)
    a, b = obj(a_shape, a_cell), obj(b_shape, b_cell)
    if form == "two_object":
        return Scene((a, b)), f"a photo of {with_article(a_shape)} and {with_article(b_shape)}"
    return Scene((a, b)), f"a photo of {with_article(a.color + ' ' + a_shape)} and {with_article(b.color + ' ' + b_shape)}"
