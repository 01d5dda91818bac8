"""Scene-DPG: DPG-Bench's format on the scene world, so the benchmark runs offline and exactly.

An item is a seeded scene; its prompt is the scene's dense caption (`write_caption`: every object's size,
colour, shape and cell, counts, some relations), and its questions are DPG-style yes/no propositions in the
official CSV columns. Existence questions are the parents of everything else, as in DPG-Bench:

    entity - whole (circle, top left)                 Is there a circle in the top left cell?
    attribute - color (circle, top left, red)         Is the circle in the top left cell red?       parent: its entity
    attribute - size (circle, top left, small)        Is the circle in the top left cell small?     parent: its entity
    other - count (circle, ==2)                       Are there two circles?                        parents: those entities
    relation - spatial (red circle, blue star, left of)  Is the red circle to the left of the blue star?  parents: both

The tuple is written so that the scene judge answers it exactly from a tile's scene (`answer`); the
question text is what a VQA judge (mplug, vlm) is asked. Relations are asked only between objects unique by
colour and shape that share a row or a column (the 3x3 grid makes those unambiguous).
"""
from __future__ import annotations

import re
from collections import Counter

from uae_data.scenes import COLORS, POSITIONS, SHAPES, SIZES, Scene, SceneObject
from uae_data.short_captions import plural, relation  # where a is relative to b (same row or column)

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
_POS = {name: (r, c) for r, row in enumerate(POSITIONS) for c, name in enumerate(row)}
_WHOLE = re.compile(r"^entity - whole \((\w+), ([a-z ]+)\)$")
_ATTR = re.compile(r"^attribute - (color|size) \((\w+), ([a-z ]+), (\w+)\)$")
_COUNT = re.compile(r"^other - count \((\w+), ==(\d+)\)$")
_REL = re.compile(r"^relation - spatial \((\w+) (\w+), (\w+) (\w+), (left of|right of|above|below)\)$")


def questions(scene: Scene) -> list[tuple[int, list[int], str, str]]:
    """[(proposition_id, parent ids, tuple, question)] for a scene, ids from 1 in CSV order."""
    rows: list[tuple[int, list[int], str, str]] = []
    entity: dict[tuple[int, int], int] = {}

    def add(parents: list[int], fact: str, text: str) -> int:
        rows.append((len(rows) + 1, parents, fact, text))
        return len(rows)

    for o in scene.objects:
        entity[o.row, o.col] = add([0], f"entity - whole ({o.shape}, {o.position})",
                                   f"Is there a {o.shape} in the {o.position} cell?")
    for o in scene.objects:
        parent = [entity[o.row, o.col]]
        add(parent, f"attribute - color ({o.shape}, {o.position}, {o.color})",
            f"Is the {o.shape} in the {o.position} cell {o.color}?")
        add(parent, f"attribute - size ({o.shape}, {o.position}, {o.size})",
            f"Is the {o.shape} in the {o.position} cell {o.size}?")
    shapes = Counter(o.shape for o in scene.objects)
    for shape in sorted(s for s, n in shapes.items() if n >= 2):
        parents = [entity[o.row, o.col] for o in scene.objects if o.shape == shape]
        add(parents, f"other - count ({shape}, =={shapes[shape]})",
            f"Are there {NUMBER_WORDS[shapes[shape]]} {plural(shape)}?")
    unique = [o for o in scene.objects if sum((p.color, p.shape) == (o.color, o.shape) for p in scene.objects) == 1]
    pairs = [(a, b) for i, a in enumerate(unique) for b in unique[i + 1:] if relation(a, b)]
    for a, b in pairs[:3]:
        rel = relation(a, b)
        add([entity[a.row, a.col], entity[b.row, b.col]],
            f"relation - spatial ({a.color} {a.shape}, {b.color} {b.shape}, {rel})",
            f"Is the {a.color} {a.shape} {RELATION_WORDS[rel]} the {b.color} {b.shape}?")
    return rows


def parses(fact: str) -> bool:
    """Whether `answer` can answer this tuple (the scene judge refuses anything else up front)."""
    return any(p.match(fact) for p in (_WHOLE, _ATTR, _COUNT, _REL)) and _known(fact)


def _known(fact: str) -> bool:
    words = re.findall(r"[a-z]+", fact.split("(", 1)[1])
    vocabulary = {*SHAPES, *COLORS, *SIZES, "left", "right", "of", "above", "below"} | {
        w for name in _POS for w in name.split()}
    return all(w in vocabulary for w in words)


def _at(scene: Scene, position: str) -> SceneObject | None:
    cell = _POS.get(position)
    return next((o for o in scene.objects if (o.row, o.col) == cell), None)


def answer(scene: Scene, fact: str) -> str:
    """"yes" or "no": the tuple's truth in `scene`, exactly (see the module doc for each form)."""
    if m := _WHOLE.match(fact):
        o = _at(scene, m[2])
        return "yes" if o is not None and o.shape == m[1] else "no"
    if m := _ATTR.match(fact):
        o = _at(scene, m[3])
        value = None if o is None or o.shape != m[2] else (o.color if m[1] == "color" else o.size)
        return "yes" if value == m[4] else "no"
    if m := _COUNT.match(fact):
        return "yes" if sum(o.shape == m[1] for o in scene.objects) == int(m[2]) else "no"
    if m := _REL.match(fact):
        a = [o for o in scene.objects if (o.color, o.shape) == (m[1], m[2])]
        b = [o for o in scene.objects if (o.color, o.shape) == (m[3], m[4])]
        return "yes" if len(a) == 1 and len(b) == 1 and relation(a[0], b[0]) == m[5] else "no"
    raise ValueError(f"not a Scene-DPG tuple: {fact!r}")


def csv_rows(item_id: str, scene: Scene, caption: str) -> list[dict]:
    """The item's rows in the official dpg_bench.csv columns."""
    out = []
    for qid, parents, fact, text in questions(scene):
        broad, detailed = (part.strip() for part in fact.split("(")[0].split("-", 1))
        out.append({"item_id": item_id, "text": caption, "keywords": ", ".join(sorted({o.shape for o in scene.objects})),
                    "proposition_id": qid, "dependency": ",".join(map(str, parents)), "category_broad": broad,
                    "category_detailed": detailed, "tuple": fact, "question_natural_language": text})
    return out
