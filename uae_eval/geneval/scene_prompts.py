"""The scene GenEval: official metadata format and six tags, with scene-world shapes as classes.

`make_scene_metadata(seed)` mirrors the official prompts/create_prompts.py tag by tag (same templates,
articles, plurals, counting exclude N+1, position include order [B, A]) with SHAPES as classes and
GenEval's ten colours. Two departures, both forced by a world of 7 classes: the per-tag counts are
fixed to the official file's 80/99/80/94/100/100 (official draws 80 + 5 x 100 and de-duplicates),
so prompts repeat within a tag; and single_object cycles through shuffled rounds of all shapes.

`scene_for_prompt(meta, seed)` builds a scene that satisfies a prompt exactly (the `oracle` ceiling);
`spec_detections(scene, size)` gives the detections a perfect detector would report for it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from uae_data.detection import Detection
from uae_data.scenes import COLORS, GRID, SHAPES, SIZES, Scene, SceneObject, object_box, object_mask

from .prompts import GENEVAL_TAGS, RELATIONS, make_plural

OFFICIAL_COUNTS: dict[str, int] = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94,
                                   "position": 100, "color_attr": 100}
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_COLOR_NAMES = list(COLORS)
_SIZE_NAMES = list(SIZES)


def with_article(name: str) -> str:
    """Official `with_article`: "an" before a vowel letter, else "a"."""
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


# ---------------------------------------------------------------- prompt set

def _single_object(rng: np.random.Generator, n: int, classes: list[str]) -> list[dict]:
    idxs: list[int] = []
    while len(idxs) < n:  # official draws one permutation of all classes; we need several rounds
        idxs.extend(int(i) for i in rng.choice(len(classes), size=len(classes), replace=False))
    return [dict(tag="single_object", include=[{"class": classes[i], "count": 1}],
                 prompt=f"a photo of {with_article(classes[i])}") for i in idxs[:n]]


def _two_object(rng: np.random.Generator, classes: list[str]) -> dict:
    a, b = (classes[int(i)] for i in rng.choice(len(classes), size=2, replace=False))
    return dict(tag="two_object", include=[{"class": a, "count": 1}, {"class": b, "count": 1}],
                prompt=f"a photo of {with_article(a)} and {with_article(b)}")


def _counting(rng: np.random.Generator, classes: list[str], max_count: int = 4) -> dict:
    name = classes[int(rng.choice(len(classes)))]
    num = int(rng.integers(2, max_count, endpoint=True))
    return dict(tag="counting", include=[{"class": name, "count": num}], exclude=[{"class": name, "count": num + 1}],
                prompt=f"a photo of {NUMBERS[num]} {make_plural(name)}")


def _colors(rng: np.random.Generator, classes: list[str]) -> dict:
    name = classes[int(rng.choice(len(classes)))]
    color = _COLOR_NAMES[int(rng.choice(len(_COLOR_NAMES)))]
    return dict(tag="colors", include=[{"class": name, "count": 1, "color": color}],
                prompt=f"a photo of {with_article(color)} {name}")


def _position(rng: np.random.Generator, classes: list[str]) -> dict:
    a, b = (classes[int(i)] for i in rng.choice(len(classes), size=2, replace=False))
    rel = RELATIONS[int(rng.choice(len(RELATIONS)))]
    return dict(tag="position", include=[{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}],
                prompt=f"a photo of {with_article(a)} {rel} {with_article(b)}")


def _color_attr(rng: np.random.Generator, classes: list[str]) -> dict:
    a, b = (classes[int(i)] for i in rng.choice(len(classes), size=2, replace=False))
    ca, cb = (_COLOR_NAMES[int(i)] for i in rng.choice(len(_COLOR_NAMES), size=2, replace=False))
    return dict(tag="color_attr", include=[{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}],
                prompt=f"a photo of {with_article(ca)} {a} and {with_article(cb)} {b}")


_MAKERS = {"two_object": _two_object, "counting": _counting, "colors": _colors, "position": _position,
           "color_attr": _color_attr}


def make_scene_metadata(seed: int, counts: dict[str, int] | None = None) -> list[dict]:
    """The scene GenEval prompt records, tags in official order, reproducible from `seed`."""
    counts = dict(OFFICIAL_COUNTS if counts is None else counts)
    unknown = sorted(set(counts) - set(GENEVAL_TAGS))
    if unknown:
        raise ValueError(f"unknown tag {unknown[0]!r} in counts (known: {', '.join(GENEVAL_TAGS)})")
    rng = np.random.default_rng(int(seed))
    classes = list(SHAPES)
    out: list[dict] = []
    for tag in GENEVAL_TAGS:
        n = counts.get(tag, 0)
        if n < 0:
            raise ValueError(f"count for {tag} must be >= 0, got {n}")
        if tag == "single_object":
            out.extend(_single_object(rng, n, classes))
        else:
            out.extend(_MAKERS[tag](rng, classes) for _ in range(n))
    return out


def metadata_jsonl(records: list[dict]) -> str:
    """The jsonl text exactly as official writes it (json.dumps defaults, one record a line)."""
    return "".join(json.dumps(r) + "\n" for r in records)


def write_scene_manifest(seed: int, out: str | Path, names_out: str | Path | None = None) -> tuple[Path, Path]:
    """Write the scene metadata jsonl and its class-names file (default: scene_object_names.txt beside it)."""
    out = Path(out)
    names_out = Path(names_out) if names_out else out.with_name("scene_object_names.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(metadata_jsonl(make_scene_metadata(seed)), encoding="utf-8")
    names_out.write_text("".join(f"{s}\n" for s in SHAPES), encoding="utf-8")
    return out, names_out


# ---------------------------------------------------------------- oracle scenes

_STEP = {"left of": (0, -1), "right of": (0, 1), "above": (-1, 0), "below": (1, 0)}  # (drow, dcol) of A vs B


def position_cell_pairs(relation: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Grid cells ((row A, col A), (row B, col B)) where A is safely `relation` B for any sizes and shapes.

    A is >= 1 cell away from B along the relation's axis and no farther off-axis than along it, so the
    official rule gives >= (1 - 0.1 x 2 x 0.86) / sqrt(2) = 0.59 > 0.5 on that axis (tests check the
    rendered boxes at several image sizes).
    """
    dr, dc = _STEP[relation]
    pairs = []
    cells = [(r, c) for r in range(GRID) for c in range(GRID)]
    for a in cells:
        for b in cells:
            main = (a[0] - b[0]) * dr + (a[1] - b[1]) * dc  # offset along the relation, positive = right way
            off = abs((a[0] - b[0]) * dc) + abs((a[1] - b[1]) * dr)  # offset across it
            if main >= 1 and off <= main:
                pairs.append((a, b))
    return pairs


def _check_satisfiable(meta: dict) -> None:
    include = meta.get("include", [])
    for i, item in enumerate(include):
        if item["class"] not in SHAPES:
            raise ValueError(f"include[{i}].class {item['class']!r} is not a scene shape ({', '.join(SHAPES)})")
        if "color" in item and item["color"] not in COLORS:
            raise ValueError(f"include[{i}].color {item['color']!r} is not a scene colour ({', '.join(COLORS)})")
        if "position" in item and (item["count"] != 1 or include[item["position"][1]]["count"] != 1):
            raise ValueError(f"include[{i}].position: the oracle places only single objects (count 1) in relation")
    classes = [item["class"] for item in include]
    if len(set(classes)) != len(classes):
        raise ValueError(f"include names a class twice ({classes}); the oracle needs distinct classes")
    total = sum(item["count"] for item in include)
    if total > GRID * GRID:
        raise ValueError(f"prompt needs {total} objects; a scene holds at most {GRID * GRID}")
    for j, item in enumerate(meta.get("exclude", [])):
        wanted = sum(inc["count"] for inc in include if inc["class"] == item["class"])
        if wanted >= item["count"]:
            raise ValueError(f"exclude[{j}] forbids {item['count']} {item['class']} but include asks for {wanted}")


def scene_for_prompt(meta: dict, seed: int) -> Scene:
    """A scene that satisfies `meta` exactly under the official rules and a perfect detector.

    Each include item becomes exactly `count` objects of its class (its colour if given), so counting
    prompts get exactly N; a position item and its reference are placed on a cell pair from
    `position_cell_pairs`; all free attributes (cells, sizes, other colours) are drawn from `seed`.
    No extra objects are added. Raises ValueError for prompts outside the scene world.
    """
    _check_satisfiable(meta)
    rng = np.random.default_rng(int(seed))
    include = meta["include"]
    free = [(r, c) for r in range(GRID) for c in range(GRID)]
    cells: dict[int, list[tuple[int, int]]] = {}
    for i, item in enumerate(include):
        if "position" in item:
            rel, ref = item["position"]
            if ref in cells:  # the reference is already placed (it is itself in a relation): keep it there
                pairs = [(a, b) for a, b in position_cell_pairs(rel) if b == cells[ref][0] and a in free]
            else:
                pairs = [(a, b) for a, b in position_cell_pairs(rel) if a in free and b in free]
            if not pairs:
                raise ValueError(f"include[{i}].position: no free cell is {rel} its reference")
            a, b = pairs[int(rng.integers(len(pairs)))]
            cells[i] = [a]
            if ref not in cells:
                cells[ref] = [b]
                free.remove(b)
            free.remove(a)
    objects = []
    for i, item in enumerate(include):
        if i not in cells:
            picks = rng.choice(len(free), size=item["count"], replace=False)
            cells[i] = [free[int(k)] for k in picks]
            free = [c for c in free if c not in cells[i]]
        for row, col in cells[i]:
            color = item.get("color") or _COLOR_NAMES[int(rng.integers(len(_COLOR_NAMES)))]
            size = _SIZE_NAMES[int(rng.integers(len(_SIZE_NAMES)))]
            objects.append(SceneObject(item["class"], color, size, row, col))
    return Scene(tuple(objects))


def spec_detections(scene: Scene, image_size: int = 64, masks: bool = False) -> list[Detection]:
    """What a perfect detector and colour classifier report for `render(scene, image_size)`:
    label = shape, color = colour, box = the drawn pixels' tight box, score 1.0 (mask on request)."""
    return [Detection(label=o.shape, score=1.0, box=tuple(float(v) for v in object_box(o, image_size)),
                      mask=object_mask(o, image_size) if masks else None, color=o.color)
            for o in scene.objects]
