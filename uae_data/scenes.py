"""The scene world: seeded scenes of flat shapes on a 3x3 grid, their exact renders and long captions.

We own this world exactly, so every command runs offline and every reward or score is meaningful
without pretrained weights: `render` draws a scene pixel-exactly (no anti-aliasing), `write_caption`
describes it densely from several templates, and `parse_caption` inverts any caption it writes.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator

import numpy as np
from PIL import Image

# GenEval's ten colours, in GenEval's order; pairwise RGB distances are >= 105 (background included).
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 25, 25),
    "orange": (255, 130, 0),
    "yellow": (250, 230, 40),
    "green": (35, 160, 60),
    "blue": (35, 75, 225),
    "purple": (135, 45, 200),
    "pink": (250, 135, 200),
    "brown": (120, 70, 20),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
}
BACKGROUND: tuple[int, int, int] = (150, 150, 150)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "ring", "diamond")
# Object extent (width and height of its box) as a fraction of a grid cell; large leaves a gap
# between neighbours, so objects never touch and detection stays exact.
SIZES: dict[str, float] = {"small": 0.55, "medium": 0.7, "large": 0.86}
GRID = 3
POSITIONS: tuple[tuple[str, ...], ...] = (
    ("top left", "top middle", "top right"),
    ("middle left", "center", "middle right"),
    ("bottom left", "bottom middle", "bottom right"),
)
RING_INNER = 0.55  # inner diameter / outer diameter
STAR_INNER = 0.5  # inner radius / outer radius (fat enough to stay a star at 10 px)


@dataclass(frozen=True)
class SceneObject:
    """One flat shape filling a `size` fraction of grid cell (row, col); rows count down from the top."""

    shape: str
    color: str
    size: str
    row: int
    col: int

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.color not in COLORS or self.size not in SIZES:
            for field, value, allowed in (("shape", self.shape, SHAPES), ("color", self.color, COLORS),
                                          ("size", self.size, SIZES)):
                if value not in allowed:
                    raise ValueError(f"unknown {field} {value!r}; expected one of {', '.join(allowed)}")
        if type(self.row) is not int or type(self.col) is not int:  # fast path for plain ints (sampling)
            for field, value in (("row", self.row), ("col", self.col)):
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                    raise ValueError(f"{field} must be an int in 0..{GRID - 1}, got {value!r}")
                object.__setattr__(self, field, int(value))
        if not (0 <= self.row < GRID and 0 <= self.col < GRID):
            raise ValueError(f"row and col must be ints in 0..{GRID - 1}, got row={self.row}, col={self.col}")

    @property
    def position(self) -> str:
        return POSITIONS[self.row][self.col]


@dataclass(frozen=True)
class Scene:
    """A set of objects, at most one per cell; stored sorted by (row, col) so equality is well defined."""

    objects: tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        if not all(isinstance(o, SceneObject) for o in self.objects):
            raise ValueError("Scene.objects must be SceneObject instances (use Scene.from_dict for dicts)")
        objs = tuple(sorted(self.objects, key=lambda o: (o.row, o.col)))
        for a, b in zip(objs, objs[1:]):
            if (a.row, a.col) == (b.row, b.col):
                raise ValueError(f"two objects in the {a.position} cell ({a.color} {a.shape}, "
                                 f"{b.color} {b.shape}); a cell holds at most one")
        object.__setattr__(self, "objects", objs)

    def to_dict(self) -> dict:
        # as {"objects": [asdict(o), ...]} (same keys, same order), without asdict's recursive deep copy
        return {"objects": [{"shape": o.shape, "color": o.color, "size": o.size, "row": o.row, "col": o.col}
                            for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        try:
            return cls(tuple(SceneObject(**o) for o in d["objects"]))
        except (KeyError, TypeError) as e:
            want = "{'objects': [{shape, color, size, row, col}, ...]}"
            raise ValueError(f"not a scene dict (want {want}): {e}") from None


_CHOICES = np.array([[len(SHAPES)], [len(COLORS)], [len(SIZES)]])


def sample_scene(seed_or_rng: int | np.random.Generator, min_objects: int = 1, max_objects: int = 6) -> Scene:
    """A uniformly random scene: object count, distinct cells and attributes all drawn from the seed."""
    if not 0 <= min_objects <= max_objects <= GRID * GRID:
        raise ValueError(f"need 0 <= min_objects <= max_objects <= {GRID * GRID}, got {min_objects}, {max_objects}")
    rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(int(seed_or_rng))
    n = int(rng.integers(min_objects, max_objects + 1))
    cells = rng.permutation(GRID * GRID)[:n].tolist()
    draws = (rng.random((3, n)) * _CHOICES).astype(int).tolist()
    colors, sizes = list(COLORS), list(SIZES)
    return Scene(tuple(
        SceneObject(SHAPES[s], colors[c], sizes[z], cell // GRID, cell % GRID) for cell, s, c, z in zip(cells, *draws)
    ))


# ---------------------------------------------------------------- rendering

def _unit_polygons() -> dict[str, np.ndarray]:
    """Polygons in the unit square (x right, y down), each stretched to touch all four sides."""
    t = 1 / 3
    angles = np.deg2rad(-90 + 36 * np.arange(10))
    radii = np.where(np.arange(10) % 2 == 0, 1.0, STAR_INNER)
    star = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    star = (star - star.min(0)) / (star.max(0) - star.min(0))
    return {
        "square": np.array([(0, 0), (1, 0), (1, 1), (0, 1)], float),
        "triangle": np.array([(0.5, 0), (1, 1), (0, 1)], float),
        "diamond": np.array([(0.5, 0), (1, 0.5), (0.5, 1), (0, 0.5)], float),
        "cross": np.array([(t, 0), (2 * t, 0), (2 * t, t), (1, t), (1, 2 * t), (2 * t, 2 * t), (2 * t, 1),
                           (t, 1), (t, 2 * t), (0, 2 * t), (0, t), (t, t)], float),
        "star": star,
    }


_POLYGONS = _unit_polygons()


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Which unit-square points (u, v) lie inside `shape` (even-odd rule for polygons).

    Points are first pulled a hair toward the centre, so points exactly on an edge count as inside
    on every side alike (every shape is star-shaped about the centre): masks stay mirror-symmetric.
    """
    u, v = 0.5 + (u - 0.5) * (1 - 1e-9), 0.5 + (v - 0.5) * (1 - 1e-9)
    if shape in ("circle", "ring"):
        d2 = (u - 0.5) ** 2 + (v - 0.5) ** 2
        inside = d2 <= 0.25
        return inside & (d2 >= 0.25 * RING_INNER**2) if shape == "ring" else inside
    poly = _POLYGONS[shape]
    inside = np.zeros(np.broadcast(u, v).shape, bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, 0)):
        if y1 != y2:
            crosses = (y1 > v) != (y2 > v)
            inside ^= crosses & (u < x1 + (v - y1) * (x2 - x1) / (y2 - y1))
    return inside


@lru_cache(maxsize=1024)
def shape_mask(shape: str, height: int, width: int) -> np.ndarray:
    """`shape` stretched to fill a height x width box, sampled at pixel centres: the detector's templates."""
    v = (np.arange(height)[:, None] + 0.5) / height
    u = (np.arange(width)[None, :] + 0.5) / width
    mask = _inside(shape, u, v)
    mask.flags.writeable = False
    return mask


@lru_cache(maxsize=8192)
def _glyph(shape: str, size: str, row: int, col: int, image_size: int) -> tuple[int, int, np.ndarray]:
    """(y0, x0, patch): the object's pixels as a bool patch cropped tight, its top-left pixel at (y0, x0)."""
    cell = image_size / GRID
    extent = SIZES[size] * cell
    x0, y0 = (col + 0.5) * cell - extent / 2, (row + 0.5) * cell - extent / 2
    px0, py0 = int(np.floor(x0)), int(np.floor(y0))
    u = (np.arange(px0, int(np.ceil(x0 + extent)))[None, :] + 0.5 - x0) / extent
    v = (np.arange(py0, int(np.ceil(y0 + extent)))[:, None] + 0.5 - y0) / extent
    patch = _inside(shape, u, v)
    rows, cols = np.flatnonzero(patch.any(1)), np.flatnonzero(patch.any(0))
    if len(rows) == 0:  # too small to cover any pixel centre: paint the centre pixel
        return int(y0 + extent / 2), int(x0 + extent / 2), np.ones((1, 1), bool)
    patch = patch[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].copy()
    patch.flags.writeable = False
    return py0 + int(rows[0]), px0 + int(cols[0]), patch


def object_patch(obj: SceneObject, size: int) -> tuple[int, int, np.ndarray]:
    """(y0, x0, patch): the pixels `render` paints for `obj`, a read-only bool patch cropped tight at (y0, x0)."""
    return _glyph(obj.shape, obj.size, obj.row, obj.col, size)


def object_mask(obj: SceneObject, size: int) -> np.ndarray:
    """Bool (size, size) mask of the pixels `render` paints for `obj`."""
    y0, x0, patch = object_patch(obj, size)
    mask = np.zeros((size, size), bool)
    mask[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]] = patch
    return mask


def object_box(obj: SceneObject, size: int) -> tuple[int, int, int, int]:
    """Tight (x1, y1, x2, y2) box of the drawn pixels, x2/y2 exclusive (max + 1), as the detector measures it."""
    y0, x0, patch = object_patch(obj, size)
    return x0, y0, x0 + patch.shape[1], y0 + patch.shape[0]


_RGB = {name: np.array(rgb, np.uint8) for name, rgb in COLORS.items()}


def render_array(scene: Scene, size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 render; only the 11 palette colours occur, so colours are exact."""
    if size < 2 * GRID:
        raise ValueError(f"image size must be >= {2 * GRID} pixels, got {size}")
    img = np.empty((size, size, 3), np.uint8)
    img[:] = BACKGROUND
    for o in scene.objects:
        y0, x0, patch = _glyph(o.shape, o.size, o.row, o.col, size)
        img[y0:y0 + patch.shape[0], x0:x0 + patch.shape[1]][patch] = _RGB[o.color]
    return img


@lru_cache(maxsize=8192)
def _glyph_stamp(shape: str, size: str, row: int, col: int, image_size: int) -> tuple[tuple[int, int, int, int], Image.Image]:
    """(box, mask): `_glyph`'s patch as a 1-bit PIL mask and the (x0, y0, x1, y1) box it is pasted into."""
    y0, x0, patch = _glyph(shape, size, row, col, image_size)
    h, w = patch.shape
    mask = Image.frombytes("1", (w, h), np.packbits(patch, axis=1).tobytes())  # rows padded to whole bytes, MSB first
    return (x0, y0, x0 + w, y0 + h), mask


def render(scene: Scene, size: int = 64) -> Image.Image:
    """The scene as an RGB PIL image of size x size pixels, deterministic and without anti-aliasing.

    Pixel-identical to `render_array` (a test), drawn in PIL: a 1-bit mask pasted per object paints exactly
    the patch's pixels, ~5x faster than numpy boolean indexing plus `Image.fromarray` at 64x64.
    """
    if size < 2 * GRID:
        raise ValueError(f"image size must be >= {2 * GRID} pixels, got {size}")
    img = Image.new("RGB", (size, size), BACKGROUND)
    for o in scene.objects:
        box, mask = _glyph_stamp(o.shape, o.size, o.row, o.col, size)
        img.paste(COLORS[o.color], box, mask)
    return img


# ---------------------------------------------------------------- captions

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_RELATIONS = {  # (sign of row difference, sign of col difference) of a relative to b
    (0, -1): "to the left of", (0, 1): "to the right of", (-1, 0): "above", (1, 0): "below",
    (-1, -1): "above and to the left of", (-1, 1): "above and to the right of",
    (1, -1): "below and to the left of", (1, 1): "below and to the right of",
}
_OPENINGS = (
    "this image shows {n} {objects} on a plain grey background.",
    "the picture is a simple synthetic scene with {n} flat {objects} drawn on a grey canvas.",
    "we are looking at a square canvas split into a three by three grid that holds {n} {objects}.",
    "a flat grey canvas contains {n} simple {objects} laid out on a three by three grid.",
)
_STATEMENTS = (
    "a {size} {color} {shape} sits in the {pos} cell.",
    "in the {pos} cell there is a {size} {color} {shape}.",
    "the {pos} cell holds a {size} {color} {shape}.",
    "there is a {size} {color} {shape} in the {pos} cell.",
    "a {size} {color} {shape} occupies the {pos} cell.",
)
_COUNTS = (
    "there {are} {n} {objects} in total: {breakdown}.",
    "in total the scene contains {n} {objects}: {breakdown}.",
    "counting them gives {n} {objects}: {breakdown}.",
)
_COLOR_COUNTS = (
    "by colour, {breakdown}.",
    "looking at colours, {breakdown}.",
    "as for the colours, {breakdown}.",
)
_RELATION_SENTENCES = (
    "the {a} is {rel} the {b}.",
    "the {a} appears {rel} the {b}.",
    "the {a} lies {rel} the {b}.",
)
_CLOSINGS = (
    "no two objects overlap, and the remaining {e} cells are empty.",
    "every object has a cell of its own, so nothing overlaps and {e} cells are left empty.",
    "the other {e} cells show only the grey background.",
)
_FILLERS = (
    "the background is a flat, even grey with no texture, shading or border.",
    "all shapes are drawn in solid colour with sharp edges and no outline.",
    "there is no text, shadow or perspective anywhere in the image.",
    "the lighting is uniform and the whole canvas is seen from straight above.",
    "apart from what is described here, the canvas is empty.",
)
_MIN_WORDS, _MAX_WORDS = 40, 150


def _plural(word: str, n: int) -> str:
    return word if n == 1 else word + ("es" if word.endswith("ss") else "s")


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _most_common(counts: Counter, order: list[str] | tuple[str, ...]) -> list[tuple[str, int]]:
    """(name, count) by falling count, ties in canonical order, so captions are deterministic."""
    return sorted(counts.items(), key=lambda x: (-x[1], order.index(x[0])))


def _py_rng(seed_or_rng: int | np.random.Generator) -> random.Random:
    """Captions draw from Python's Random (several times cheaper per draw than numpy's)."""
    if isinstance(seed_or_rng, np.random.Generator):
        return random.Random(int(seed_or_rng.integers(2**63)))
    return random.Random(int(seed_or_rng))


def _reference(o: SceneObject, objs: tuple[SceneObject, ...]) -> str:
    """Shortest unambiguous name of `o` in a relation ("red circle", "small red circle", or with its cell)."""
    if sum((p.color, p.shape) == (o.color, o.shape) for p in objs) == 1:
        return f"{o.color} {o.shape}"
    if sum((p.size, p.color, p.shape) == (o.size, o.color, o.shape) for p in objs) == 1:
        return f"{o.size} {o.color} {o.shape}"
    return f"{o.color} {o.shape} in the {o.position} cell"


# Caption pieces that depend on a template and a few scene facts, cached with their word counts: sentences
# are then formatted and split once per process, not once per caption (the caches hold ~10 MB at most).
# Same strings as formatting in place.

@lru_cache(maxsize=None)
def _statement(template: str, size: str, color: str, shape: str, pos: str) -> tuple[str, int]:
    """(sentence, words) of one per-object statement (a few thousand possible)."""
    text = template.format(size=size, color=color, shape=shape, pos=pos)
    return text, len(text.split())


@lru_cache(maxsize=None)
def _framing(n: int) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]:
    """([(opening, words)] by template, [(closing, words)] by template) for a scene of n objects."""
    n_word, objects_word = _NUMBERS[n], _plural("object", n)
    openings = tuple((t, len(t.split())) for t in (o.format(n=n_word, objects=objects_word) for o in _OPENINGS))
    closings = tuple((t, len(t.split())) for t in (c.format(e=_NUMBERS[GRID * GRID - n]) for c in _CLOSINGS))
    return openings, closings


@lru_cache(maxsize=1 << 14)
def _count_sentence(template: str, shapes: tuple[str, ...]) -> tuple[str, int]:
    """(sentence, words) counting the scene's objects by shape; `shapes` is the sorted multiset of shapes."""
    n = len(shapes)
    breakdown = _join([f"{_NUMBERS[k]} {_plural(s, k)}" for s, k in _most_common(Counter(shapes), SHAPES)])
    text = template.format(are="is" if n == 1 else "are", n=_NUMBERS[n], objects=_plural("object", n), breakdown=breakdown)
    return text, len(text.split())


@lru_cache(maxsize=1 << 14)
def _color_sentence(template: str, colors: tuple[str, ...]) -> tuple[str, int]:
    """(sentence, words) counting the scene's objects by colour; `colors` is the sorted multiset of colours."""
    parts = [f"{_NUMBERS[k]} {'is' if k == 1 else 'are'} {c}" for c, k in _most_common(Counter(colors), _COLOR_ORDER)]
    text = template.format(breakdown=_join(parts))
    return text, len(text.split())


_FILLER_WORDS = {f: len(f.split()) for f in _FILLERS}
_COLOR_ORDER = list(COLORS)


def write_caption(scene: Scene, seed_or_rng: int | np.random.Generator) -> str:
    """A dense lower-case caption of 40-150 words (for 1-6 objects), paraphrased from several templates.

    It names every object's size, colour, shape and cell, some pairwise relations, the counts by shape
    and colour, and the empty cells; `parse_caption` recovers the scene from it exactly.
    """
    objs = scene.objects
    if not objs:
        raise ValueError("cannot caption an empty scene: it needs at least one object")
    r = _py_rng(seed_or_rng)
    choice = r.choice
    n = len(objs)
    # The random draws, their order and number, are fixed: a seed gives the same caption in every version.
    openings, closings = _framing(n)
    opening = choice(openings)  # as many as _OPENINGS, in the same order: same draw, same template
    statements = [_statement(choice(_STATEMENTS), o.size, o.color, o.shape, POSITIONS[o.row][o.col]) for o in objs]
    count = _count_sentence(choice(_COUNTS), tuple(sorted([o.shape for o in objs])))
    optional: list[tuple[str, int]] = []  # (sentence, words), dropped from the end when the caption runs long
    if n > 1:
        optional.append(_color_sentence(choice(_COLOR_COUNTS), tuple(sorted([o.color for o in objs]))))
        order = list(objs)
        r.shuffle(order)
        for a, b in list(zip(order, order[1:]))[:3]:
            rel = _RELATIONS[((a.row > b.row) - (a.row < b.row), (a.col > b.col) - (a.col < b.col))]
            relation = choice(_RELATION_SENTENCES).format(a=_reference(a, objs), rel=rel, b=_reference(b, objs))
            optional.insert(0, (relation, len(relation.split())))
    closing = choice(closings)
    fillers = list(_FILLERS)
    r.shuffle(fillers)
    words = opening[1] + sum(w for _, w in statements) + count[1] + sum(w for _, w in optional) + closing[1]
    while words > _MAX_WORDS and optional:
        words -= optional.pop()[1]
    while words < _MIN_WORDS and fillers:
        filler = fillers.pop()
        optional.append((filler, _FILLER_WORDS[filler]))
        words += _FILLER_WORDS[filler]
    return " ".join([opening[0], *(t for t, _ in statements), count[0], *(t for t, _ in optional), closing[0]])


_POS_OF = {name: (r, c) for r, row in enumerate(POSITIONS) for c, name in enumerate(row)}


def _alternation(names) -> str:
    return "|".join(sorted(map(re.escape, names), key=len, reverse=True))


_TRIPLE_RE = re.compile(rf"\b({_alternation(SIZES)})\s+({_alternation(COLORS)})\s+({_alternation(SHAPES)})\b")
_CELL_RE = re.compile(rf"\b({_alternation(_POS_OF)})\s+cell\b")
_RELATION_RE = re.compile(r"\b(left of|right of|above|below)\b")


def statements(text: str, phrase_re: re.Pattern) -> Iterator[tuple[tuple[str, ...], tuple[int, int]]]:
    """(phrase_re's groups, (row, col)) of each sentence of `text` naming exactly one phrase_re match and one
    "<position> cell" and no relation: the object statements `parse_caption` (and web_captions.mentions) read."""
    norm = re.sub(r"[-_]", " ", text.lower()).replace("centre", "center")
    for sentence in re.split(r"[.!?;\n]+", norm):
        phrases, cells = phrase_re.findall(sentence), _CELL_RE.findall(sentence)
        if len(phrases) == 1 and len(cells) == 1 and not _RELATION_RE.search(sentence):
            yield phrases[0], _POS_OF[cells[0]]


def parse_caption(text: str) -> Scene:
    """The scene a caption describes, from its per-object statements.

    A statement is a sentence naming exactly one "size colour shape" and one "<position> cell" and no
    relation; other sentences are ignored. Repeated statements for a cell keep the first, so an imperfect
    (e.g. generated) caption still yields a scene; text with no statement at all raises ValueError.
    """
    if not isinstance(text, str):
        raise ValueError(f"caption must be a string, got {type(text).__name__}")
    found: dict[tuple[int, int], SceneObject] = {}
    for (size, color, shape), (row, col) in statements(text, _TRIPLE_RE):
        found.setdefault((row, col), SceneObject(shape, color, size, row, col))
    if not found:
        snippet = text[:60].replace("\n", " ")
        want = "'a <size> <colour> <shape> ... <position> cell'"
        raise ValueError(f"no object statement ({want}) in caption {snippet!r}")
    return Scene(tuple(found.values()))

def tokenize_words(text: str) -> list[str]:
    """Lower-case words and single punctuation marks, the units of the scene WordLevel tokenizer."""
    return re.findall(r"[a-z]+|[^\sa-z]", text.lower())


def scene_vocabulary() -> list[str]:
    """Every token any `write_caption` output can contain, sorted (templates plus every filler value)."""
    texts = [*_OPENINGS, *_STATEMENTS, *_COUNTS, *_COLOR_COUNTS, *_RELATION_SENTENCES, *_CLOSINGS, *_FILLERS]
    words = {t for text in texts for t in tokenize_words(re.sub(r"\{\w+\}", " ", text))}
    words |= {t for name in (*COLORS, *SIZES, *_POS_OF, *_RELATIONS.values(), *_NUMBERS) for t in tokenize_words(name)}
    words |= set(SHAPES) | {_plural(s, 2) for s in (*SHAPES, "object")}
    words |= {"is", "are", "in", "the", "cell", "and", ",", "."}
    return sorted(words)


VOCABULARY: list[str] = scene_vocabulary()
