"""DPG-Bench's scoring as ELLA's compute_dpg_bench.py does it, as pure functions over answers.

Per tile: a question scores 1.0 when its answer is exactly "yes", else 0.0; then, walking the item's questions
in CSV order, a question with a parent (its `dependency` ids; 0 = none) that currently scores 0 is set to 0.
A parent zeroed earlier in the walk zeroes its children in turn; one zeroed later does not (the walk reads
the scores as they are when it reaches the child). Tile score = mean over the item's questions; image score =
mean over tiles; DPG-Bench = mean over images x 100.
Category scores (L1, L2) are the official quirk: the scores BEFORE the zeroing, of the LAST tile only, pooled
over every (image, question) of a category; the overall uses the zeroed scores of every tile.
The official walk looks each parent up directly: a parent that is not asked (the skipped row 0) raises
KeyError unless a parent before it in the list already scored 0 (it breaks there); the official script
catches that per image, so the image counts in no score. `MissingParent` is that case, raised exactly when
the official lookup would raise.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from uae_eval.dpg_bench.data import Item


class MissingParent(Exception):
    """The official walk would raise KeyError here: `question` depends on `parent`, which is not asked."""

    def __init__(self, question: int, parent: int) -> None:
        super().__init__(f"question {question} depends on question {parent}, which is not asked")
        self.question, self.parent = question, parent


def tile_scores(item: Item, answers: dict[int, str]) -> tuple[dict[int, float], dict[int, float]]:
    """(scores before the dependency zeroing, scores after it) of one tile; `answers` maps every asked
    proposition_id of the item to the judge's answer string."""
    scores = {q.proposition_id: float(answers[q.proposition_id] == "yes") for q in item.questions}
    before = dict(scores)
    for q in item.questions:
        for parent in q.parents:
            if parent == 0:
                continue
            if parent not in scores:
                raise MissingParent(q.proposition_id, parent)
            if scores[parent] == 0:
                scores[q.proposition_id] = 0.0
                break
    return before, scores


@dataclass
class ImageScore:
    """One image: its score (None when the official scorer would skip it), per-tile scores, and the last
    tile's scores before the zeroing (what the category scores pool)."""

    item_id: str
    score: float | None
    tiles: list[float] = field(default_factory=list)
    last_before: dict[int, float] = field(default_factory=dict)
    skipped: str | None = None  # why the official scorer counts this image in no score


def score_image(item: Item, tile_answers: Sequence[dict[int, str]]) -> ImageScore:
    """Score one image from the answers of each of its tiles (tile 0 first)."""
    if not item.questions:
        return ImageScore(item.item_id, None, skipped="no question of this item is asked (its only row is the "
                                                      "CSV's first, which the official loop skips)")
    tiles, before = [], {}
    try:
        for answers in tile_answers:
            before, after = tile_scores(item, answers)
            tiles.append(sum(after.values()) / len(after))
    except MissingParent as e:
        return ImageScore(item.item_id, None, skipped=f"{e} (the CSV's first row, which the official loop skips, "
                                                      "or a parent not in the CSV): the official scorer fails on "
                                                      "this image and counts it in no score")
    return ImageScore(item.item_id, sum(tiles) / len(tiles), tiles, before)


def category_name_l1(category: str) -> str:
    return category.split("-")[0].strip()


def aggregate(images: Iterable[ImageScore], items: dict[str, Item]) -> dict[str, float]:
    """{"overall", "l1/<name>", "l2/<name>"} x 100 over the scored images (skipped ones count in none)."""
    scores: list[float] = []
    l2: dict[str, list[float]] = defaultdict(list)
    for im in images:
        if im.score is None:
            continue
        scores.append(im.score)
        for q in items[im.item_id].questions:
            l2[q.category].append(im.last_before[q.proposition_id])
    if not scores:
        return {}
    l1: dict[str, list[float]] = defaultdict(list)
    for category in sorted(l2):
        l1[category_name_l1(category)].extend(l2[category])
    metrics = {"overall": 100 * _mean(scores)}
    metrics |= {f"l1/{k}": 100 * _mean(v) for k, v in sorted(l1.items())}
    metrics |= {f"l2/{k}": 100 * _mean(v) for k, v in sorted(l2.items())}
    return metrics


def _mean(values: list[float]) -> float:
    """np.mean's value (pairwise summation over a float64 array), so the ×100 numbers match to the last bit."""
    import numpy as np

    return float(np.mean(np.asarray(values, dtype=np.float64)))
