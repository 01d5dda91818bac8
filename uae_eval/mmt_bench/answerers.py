"""Scene-world MMT questions and answerers (oracle, random, caption-reader).

A question is (qtype, target) about a Scene; `solve` gives the correct option text, so the
generator and the oracle share one rule. Answerers are `answer(images, prompt, row=...) -> text` with `wants_row = True`, so the
harness passes the TSV row (the oracle reads its scene/qtype/target columns).
"""
from __future__ import annotations

import json
import random
from typing import Callable

from uae_data.scenes import COLORS, POSITIONS, SHAPES, Scene
from uae_data.web_captions import Mention, mentions

L2 = {"count": "Count", "colour": "VR", "shape": "VR", "position": "Loc", "relation": "Loc"}
RELATIONS = ("left of", "right of", "above", "below")


def _find(scene: Scene, name: str):
    color, shape = name.split(" ")
    return next(o for o in scene.objects if (o.color, o.shape) == (color, shape))


def _cell(target: str) -> tuple[int, int]:
    r, c = target.split(",")
    return int(r), int(c)


def solve(scene: Scene, qtype: str, target: str) -> str:
    """The correct option text of question (qtype, target) about `scene`."""
    objs = scene.objects
    if qtype == "count":
        return str(len(objs))
    if qtype in ("colour", "shape"):
        o = next(o for o in objs if (o.row, o.col) == _cell(target))
        return o.color if qtype == "colour" else o.shape
    if qtype == "position":
        o = _find(scene, target)
        return POSITIONS[o.row][o.col]
    if qtype == "relation":  # target "colour shape|colour shape": where is the first relative to the second
        a, b = (_find(scene, t) for t in target.split("|"))
        if a.row == b.row:
            return "left of" if a.col < b.col else "right of"
        return "above" if a.row < b.row else "below"
    raise ValueError(f"unknown question type {qtype!r}")


def question_text(scene: Scene, qtype: str, target: str) -> str:
    if qtype == "count":
        return "How many objects are in the image?"
    if qtype == "colour":
        r, c = _cell(target)
        return f"What colour is the object in the {POSITIONS[r][c]}?"
    if qtype == "shape":
        r, c = _cell(target)
        return f"What shape is the object in the {POSITIONS[r][c]}?"
    if qtype == "relation":
        a, b = target.split("|")
        return f"Where is the {a} relative to the {b}?"
    return f"Where is the {target}?"


def pool(qtype: str) -> list[str]:
    if qtype == "count":
        return [str(n) for n in range(1, 10)]
    if qtype == "colour":
        return list(COLORS)
    if qtype == "shape":
        return list(SHAPES)
    if qtype == "relation":
        return list(RELATIONS)
    return [p for row in POSITIONS for p in row]


def _row_options(row: dict) -> dict[str, str]:
    return {k: str(row[k]) for k in "ABCD" if k in row}


def _letter_of(text: str, row: dict) -> str:
    for k, v in _row_options(row).items():
        if v == text:
            return k
    return "Z"


def oracle(images, prompt: str, row: dict) -> str:
    scene = Scene.from_dict(json.loads(row["scene"]))
    return _letter_of(solve(scene, row["qtype"], row["target"]), row)


def make_random(seed: int = 0) -> Callable:
    rng = random.Random(seed)
    def answer(images, prompt, row):
        return rng.choice(list(_row_options(row)))
    answer.wants_row = True
    return answer


def solve_mentions(said: list[Mention], qtype: str, target: str) -> str | None:
    """`solve` over what a caption names (`uae_data.web_captions.mentions`), attributes it leaves out included.

    Why: a web-style caption names some objects, sometimes without size or colour. Counting counts the objects
    it names (a caption that stops early undercounts, as a reader would); a question about an attribute or an
    object the caption does not give has no answer (None). On exact long captions this is `solve` on
    `parse_caption`'s scene: the same objects, every attribute given.
    """
    if qtype == "count":
        return str(len(said)) if said else None
    if qtype in ("colour", "shape"):
        m = next((m for m in said if (m.row, m.col) == _cell(target)), None)
        return None if m is None else (m.color if qtype == "colour" else m.shape)

    def find(name: str) -> Mention | None:
        color, shape = name.split(" ")
        return next((m for m in said if (m.color, m.shape) == (color, shape)), None)

    if qtype == "position":
        m = find(target)
        return None if m is None else POSITIONS[m.row][m.col]
    if qtype == "relation":
        a, b = (find(t) for t in target.split("|"))
        if a is None or b is None:
            return None
        if a.row == b.row:
            return "left of" if a.col < b.col else "right of"
        return "above" if a.row < b.row else "below"
    raise ValueError(f"unknown question type {qtype!r}")


def make_caption_reader(caption: Callable[[list], list[str]]) -> Callable:
    """Answer from what `caption(images)[0]` names (`solve_mentions`); questions it cannot answer get "Z"."""
    def answer(images, prompt, row):
        try:
            text = solve_mentions(mentions(caption(images)[0]), row["qtype"], row["target"])
            return "Z" if text is None else _letter_of(text, row)
        except Exception:  # noqa: BLE001 - an unreadable caption is a wrong answer, not a crash
            return "Z"
    answer.wants_row = True
    answer.needs_columns = ("qtype", "target")  # type: ignore[attr-defined]
    return answer


oracle.wants_row = True
oracle.needs_columns = ("scene", "qtype", "target")  # type: ignore[attr-defined]

ANSWERERS: dict[str, Callable[..., Callable]] = {
    "oracle": lambda seed=0, **_: oracle,
    "random": lambda seed=0, **_: make_random(seed),
    "caption-reader": lambda seed=0, caption=None, **_: make_caption_reader(caption),
}


def build_answerer(name: str, seed: int = 0, caption: Callable | None = None) -> Callable:
    """The named scene answerer; a model path is not handled here (the CLI wraps the model itself)."""
    if name not in ANSWERERS:
        from uae_data.core.errors import ConfigError
        raise ConfigError(f"mmt-bench: unknown answerer {name!r}; choose {', '.join(ANSWERERS)} or let the CLI load a model")
    if name == "caption-reader" and caption is None:
        from uae_data.core.errors import ConfigError
        raise ConfigError("mmt-bench: caption-reader needs a caption(images) -> texts callable (a model)")
    return ANSWERERS[name](seed=seed, caption=caption)
