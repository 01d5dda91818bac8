"""Web-style captions of scenes, and the object mentions any scene caption makes.

Why: UAE's encoder learned to caption from web and human captions, which name a few things in an image and
leave the rest out; stage 1 then teaches it, through the frozen decoder's reconstructions, to say what those
captions left out. `write_web_caption` writes a scene's caption that way: it names a seeded subset of the
objects (`mention_rate`), sometimes without their size or colour, in a short form (object sentences only)
or a medium one (an opening sentence, then object sentences). It never counts, relates or sums colours.

Two deviations from real alt-text, both chosen and stated. Each named object keeps its cell, so every mention
can be checked exactly. And each object sentence names the cell first ("in the top left cell, a red circle."):
fine-tuned on attribute-first sentences ("a red circle in the top left cell.") the tiny encoder named real
objects in the wrong cells (attribute precision 0.42 on 256 held-out scenes, 0.39 after 1,000 steps, against 0.66
cell-first with the same recipe; docs/scene-world-learning.md). Our reading: its pretraining taught it to read a
cell's words at that cell's image token, which works once the cell is named. Every word is one the scene
tokenizer knows.

`mentions` reads the objects a caption names, whole or partial: a sentence naming exactly one "<position>
cell" and one "[size] [colour] shape" and no relation is a mention (the first mention of a cell wins, as in
`scenes.parse_caption`). On the exact long captions it finds exactly `parse_caption`'s objects.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

import numpy as np

from uae_data.core.config import help_field
from uae_data.scenes import COLORS, POSITIONS, SHAPES, SIZES, Scene, _alternation, statements

FORMS = ("short", "medium")
# cell first, see above (forms weighted by manifest; within a form a template is drawn uniformly)
_SHORT = ("in the {pos} cell, a {desc}.", "the {pos} cell holds a {desc}.")
_MEDIUM_OPENINGS = (
    "this image shows objects on a plain grey background.",
    "a flat grey canvas contains simple objects laid out on a three by three grid.",
    "the picture is a simple synthetic scene with flat objects drawn on a grey canvas.",
)
_MEDIUM = (
    "in the {pos} cell there is a {desc}.",
    "the {pos} cell holds a {desc}.",
)


@dataclass
class WebCaptionConfig:
    """How the `web` captioner writes (manifest section `captioner.web`)."""

    mention_rate: float = help_field(0.4, help="chance that each object is named (at least one always is)")
    drop_size: float = help_field(0.3, help="chance that a named object's size is left out")
    drop_color: float = help_field(0.1, help="chance that a named object's colour is left out")
    forms: dict = help_field({"short": 0.5, "medium": 0.5},
                             help="weights of the caption forms: short (object sentences only) and medium (an "
                                  "opening sentence, then object sentences)")

    def validate(self) -> None:
        for name in ("mention_rate", "drop_size", "drop_color"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        unknown = sorted(set(self.forms) - set(FORMS))
        if unknown:
            raise ValueError(f"forms: unknown form(s) {unknown}; choose from {', '.join(FORMS)}")
        weights = list(self.forms.values())
        if not weights or any(not isinstance(w, (int, float)) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"forms needs non-negative weights with a positive sum, got {self.forms}")


@dataclass(frozen=True)
class Mention:
    """One object a caption names: its cell and whichever attributes the caption gives (None = left out)."""

    row: int
    col: int
    shape: str
    color: str | None = None
    size: str | None = None

    @property
    def full(self) -> bool:
        return self.color is not None and self.size is not None


def write_web_caption(scene: Scene, seed_or_rng: int | np.random.Generator,
                      cfg: WebCaptionConfig | None = None) -> tuple[str, list[Mention]]:
    """(caption, the mentions it makes) for `scene`, drawn from the seed."""
    cfg = cfg or WebCaptionConfig()
    if not scene.objects:
        raise ValueError("cannot caption an empty scene: it needs at least one object")
    r = random.Random(int(seed_or_rng.integers(2**63)) if isinstance(seed_or_rng, np.random.Generator)
                      else int(seed_or_rng))
    objs = list(scene.objects)
    named = [o for o in objs if r.random() < cfg.mention_rate]
    if not named:
        named = [r.choice(objs)]
    forms = [f for f in FORMS if cfg.forms.get(f, 0) > 0]
    form = r.choices(forms, weights=[cfg.forms[f] for f in forms])[0]
    templates = _SHORT if form == "short" else _MEDIUM
    sentences = [r.choice(_MEDIUM_OPENINGS)] if form == "medium" else []
    mentions = []
    for o in named:
        size = None if r.random() < cfg.drop_size else o.size
        color = None if r.random() < cfg.drop_color else o.color
        desc = " ".join(w for w in (size, color, o.shape) if w)
        sentences.append(r.choice(templates).format(desc=desc, pos=o.position))
        mentions.append(Mention(o.row, o.col, o.shape, color, size))
    return " ".join(sentences), mentions


_PHRASE_RE = re.compile(rf"\b(?:({_alternation(SIZES)})\s+)?(?:({_alternation(COLORS)})\s+)?({_alternation(SHAPES)})\b")


def mentions(text: str) -> list[Mention]:
    """The objects `text` names (see the module docstring); [] for text that names none."""
    if not isinstance(text, str):
        return []
    found: dict[tuple[int, int], Mention] = {}
    for (size, color, shape), (row, col) in statements(text, _PHRASE_RE):
        found.setdefault((row, col), Mention(row, col, shape, color or None, size or None))
    return [found[k] for k in sorted(found)]


def recall_counts(text: str, truth: Scene) -> dict[str, int]:
    """Counts behind object recall and attribute precision for one caption of `truth`.

    recalled: true objects the caption names in their cell with the right colour, shape and size.
    named: objects the caption names; correct: named objects that exist as named (an object in that cell
    whose shape, and whatever colour and size the caption gives, match).
    """
    said = mentions(text)
    true = {(o.row, o.col): o for o in truth.objects}
    recalled = correct = 0
    for m in said:
        o = true.get((m.row, m.col))
        ok = o is not None and o.shape == m.shape and m.color in (None, o.color) and m.size in (None, o.size)
        correct += ok
        recalled += ok and m.full
    return {"objects": len(true), "named": len(said), "correct": correct, "recalled": recalled,
            "words": len(text.split()) if isinstance(text, str) else 0}


def position_of(m: Mention) -> str:
    return POSITIONS[m.row][m.col]
