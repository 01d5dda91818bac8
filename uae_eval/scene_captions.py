"""Does the encoder see? Its captions of held-out scenes, parsed back and scored cell by cell.

A scene-world caption is exact text about a 3 × 3 grid, so `parse_caption` turns it back into a scene and
we can count what the caption got right: for each of the 9 cells whether it says the cell is occupied
(occupancy), and for each occupied cell of the true scene whether the caption names the right colour,
shape and size there. `cell_attributes` is the share of those three attributes right over all occupied
cells (chance: colour 1/10, shape 1/|shapes|, size 1/3). A blind encoder (trained on a constant image)
gets occupancy and attribute rates near what the caption prior alone allows; compare against it.
A caption that does not parse scores 0 on every cell it should have described.

Web-style captions name only some objects, so three more figures (`uae_data.web_captions.recall_counts`):
`object_recall`, the share of the scenes' objects a caption names in their cell with the right colour, shape
and size; `attribute_precision`, the share of the objects it names that exist as named (whatever attributes it
gives must match; a caption that names nothing counts as no named objects); and `words_per_caption`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from uae_data import scenes
from uae_data.web_captions import recall_counts
from uae_eval.results import Results, write_results

ATTRIBUTES = ("color", "shape", "size")


def score_caption(text: str, truth: scenes.Scene) -> dict:
    """Per-caption counts: occupancy hits (of 9), attribute hits and the number of true objects."""
    try:
        said = {(o.row, o.col): o for o in scenes.parse_caption(text).objects}
        parsed = True
    except ValueError:
        said, parsed = {}, False
    true = {(o.row, o.col): o for o in truth.objects}
    cells = [(r, c) for r in range(scenes.GRID) for c in range(scenes.GRID)]
    row = {"parsed": parsed, "occupancy": sum(((k in said) == (k in true)) for k in cells), "objects": len(true)}
    for a in ATTRIBUTES:
        row[a] = sum(k in said and getattr(said[k], a) == getattr(o, a) for k, o in true.items())
    row["exact"] = said == true
    counts = recall_counts(text, truth)
    row.update(named=counts["named"], named_correct=counts["correct"], recalled=counts["recalled"],
               words=counts["words"])
    return row


def aggregate(rows: Sequence[dict]) -> dict[str, float]:
    objects = max(1, sum(r["objects"] for r in rows))
    n = max(1, len(rows))
    metrics = {"occupancy": sum(r["occupancy"] for r in rows) / (scenes.GRID ** 2 * n)}
    for a in ATTRIBUTES:
        metrics[a] = sum(r[a] for r in rows) / objects
    metrics["cell_attributes"] = sum(metrics[a] for a in ATTRIBUTES) / len(ATTRIBUTES)
    metrics["exact_scene"] = sum(r["exact"] for r in rows) / n
    metrics["parsed"] = sum(r["parsed"] for r in rows) / n
    named = sum(r["named"] for r in rows)
    metrics["object_recall"] = sum(r["recalled"] for r in rows) / objects
    metrics["attribute_precision"] = sum(r["named_correct"] for r in rows) / named if named else 0.0
    metrics["words_per_caption"] = sum(r["words"] for r in rows) / n
    return metrics


def chance() -> dict[str, float]:
    """Attribute rates of a caption that guesses uniformly (for the report's chance column)."""
    rates = {"color": 1 / len(scenes.COLORS), "shape": 1 / len(scenes.SHAPES), "size": 1 / len(scenes.SIZES)}
    rates["cell_attributes"] = sum(rates.values()) / 3
    return rates


def run(images: Sequence[Image.Image], truths: Sequence[scenes.Scene], caption: Callable[[list], list[str]],
        out: Path, model: dict, config: dict | None = None) -> Results:
    """Caption `images` (greedy, as the harness's `caption` does), score against `truths`, write results."""
    if len(images) != len(truths) or not len(images):
        raise ValueError(f"need one true scene per image, got {len(images)} images and {len(truths)} scenes")
    texts = caption(list(images))
    rows = [score_caption(t, s) for t, s in zip(texts, truths)]
    samples = [{"index": i, "caption": t, "truth": scenes.write_caption(s, 0), **r}
               for i, (t, s, r) in enumerate(zip(texts, truths, rows))]
    results = Results(benchmark="scene-captions", benchmark_version="1", model=model, metrics=aggregate(rows),
                      primary_metric="cell_attributes", higher_is_better=True, n_items=len(rows),
                      config=dict(config or {}), extra={"chance": chance()})
    write_results(Path(out), results, samples)
    return results
