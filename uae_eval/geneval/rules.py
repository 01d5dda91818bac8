"""The official GenEval decision procedure (evaluation/evaluate_images.py @af4902f) as pure functions.

filter_detections   score bar, top-k per class, optional greedy NMS        (official `evaluate_image`)
evaluate            include/exclude clauses, colour, position; reasons     (official `evaluate`)
relative_position   A against B with size-shrunk centre offsets            (official `relative_position`)
summarize           per-tag image accuracy; overall = unweighted tag mean  (official summary_scores.py)

Colours come from each Detection's `.color`, filled by a colour classifier (CLIP for the official
setting, exact palette lookup in the scene world) before the rules run; None never matches a colour.
The only deliberate departure: when A bears two relations to B and the expected one is missing, the
reason lists them in the fixed order left of, right of, above, below (official iterates a Python set,
whose order depends on PYTHONHASHSEED).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from uae_data.core.config import help_field
from uae_data.detection import Detection
from uae_eval.geneval.prompts import GENEVAL_TAGS

COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
RELATION_ORDER: tuple[str, ...] = ("left of", "right of", "above", "below")


@dataclass
class RulesConfig:
    """Official thresholds (`--options` keys of evaluate_images.py in brackets); defaults are official."""

    threshold: float = help_field(0.3, help="keep detections with score > this [threshold]")
    counting_threshold: float = help_field(0.9, help="score bar on counting prompts, for every class [counting_threshold]")
    max_objects: int = help_field(16, help="keep at most this many detections per class, best first [max_objects]")
    nms_threshold: float = help_field(1.0, help="greedy per-class NMS IoU bar; 1.0 = off [max_overlap]")
    position_threshold: float = help_field(0.1, help="centre offsets shrink by this x (size A + size B) [position_threshold]")

    def validate(self) -> None:
        for name in ("threshold", "counting_threshold"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.position_threshold < 0:
            raise ValueError(f"position_threshold must be >= 0, got {self.position_threshold}")
        if self.max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {self.max_objects}")
        if self.nms_threshold <= 0:
            raise ValueError(f"nms_threshold must be > 0 (1.0 = off), got {self.nms_threshold}")

    def is_official(self) -> bool:
        return self == RulesConfig()


def box_iou_plus_one(a: Iterable[float], b: Iterable[float]) -> float:
    """IoU with the official +1-pixel area convention (inclusive pixel boxes): official `compute_iou`."""
    a, b = list(a), list(b)

    def area(box: list[float]) -> float:
        return max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)

    inter = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    return inter / union if union else 0


def filter_detections(metadata: dict, detections: list[Detection], cfg: RulesConfig | None = None) -> dict[str, list[Detection]]:
    """Per class: score > bar (counting prompts: > counting_threshold for every class), best first, top
    max_objects, then greedy NMS when nms_threshold != 1. Classes left empty are absent from the result.

    Note: mmdet scores are float32, and float32(0.3) > 0.3 in float64; a Python float 0.3 is dropped.
    Ties in score keep the official order (numpy argsort, reversed).
    """
    cfg = cfg or RulesConfig()
    bar = cfg.counting_threshold if metadata["tag"] == "counting" else cfg.threshold
    by_class: dict[str, list[Detection]] = {}
    for d in detections:
        by_class.setdefault(d.label, []).append(d)
    kept: dict[str, list[Detection]] = {}
    for label, dets in by_class.items():
        scores = np.array([d.score for d in dets], dtype=float)
        order = np.argsort(scores)[::-1]
        order = order[scores[order] > bar][: cfg.max_objects].tolist()
        out = []
        while order:
            best = order.pop(0)
            out.append(dets[best])
            order = [i for i in order
                     if cfg.nms_threshold == 1 or box_iou_plus_one(dets[best].box, dets[i].box) < cfg.nms_threshold]
        if out:
            kept[label] = out
    return kept


def relative_position(box_a, box_b, threshold: float = 0.1) -> set[str]:
    """Relations of box A to box B (xyxy, y down): a subset of {left of, right of, above, below}.

    Per axis the centre offset shrinks by threshold x (size A + size B) toward 0; if both shrunk
    offsets are < 1e-3 in size there is no relation. Each shrunk offset is divided by the length of
    the unshrunk offset, and an axis gives a relation when that exceeds 0.5 in size.
    """
    boxes = np.array([list(box_a)[:4], list(box_b)[:4]], dtype=float).reshape(2, 2, 2)  # (obj, corner, xy)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - threshold * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def _ordered(relations: set[str]) -> list[str]:
    return [r for r in RELATION_ORDER if r in relations]


def evaluate(metadata: dict, detections_by_class: dict[str, list[Detection]], cfg: RulesConfig | None = None) -> tuple[bool, str]:
    """(correct, reason) for one image, reasons worded and joined with "\\n" exactly as official.

    `detections_by_class` is filter_detections' output (each list best first). Include items AND,
    exclude items OR; colour and position are judged on the top-`count` detections only.
    """
    items, reason = judge_items(metadata, detections_by_class, cfg)
    return all(items), reason


def judge_items(metadata: dict, detections_by_class: dict[str, list[Detection]],
                cfg: RulesConfig | None = None) -> tuple[list[bool], str]:
    """Per item of the prompt (each include item, then each exclude item): did it pass? And the official reason.

    The image is correct when every item passes (`evaluate`); the share of passing items is the looser
    reward `uae_eval.geneval.reward` reports beside the strict one.
    """
    cfg = cfg or RulesConfig()
    items: list[bool] = []
    objects = detections_by_class
    reason: list[str] = []
    matched_groups: list[list[Detection] | None] = []
    for req in metadata.get("include", []):
        classname, count = req["class"], req["count"]
        matched = True
        found = objects.get(classname, [])[:count]
        if len(found) < count:
            matched = False
            reason.append(f"expected {classname}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = [d.color for d in found]
                n_target = colors.count(req["color"])
                if n_target < count:
                    matched = False
                    reason.append(
                        f"expected {req['color']} {classname}>={count}, found {n_target} {req['color']}; and "
                        + ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    )
            if "position" in req and matched:
                expected_rel, target_group = req["position"]
                if matched_groups[target_group] is None:
                    matched = False
                    reason.append(f"no target for {classname} to be {expected_rel}")
                else:
                    for obj in found:
                        for target in matched_groups[target_group]:
                            true_rels = relative_position(obj.box, target.box, cfg.position_threshold)
                            if expected_rel not in true_rels:
                                matched = False
                                reason.append(f"expected {classname} {expected_rel} target, found "
                                              f"{' and '.join(_ordered(true_rels))} target")
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
        items.append(matched)
    for req in metadata.get("exclude", []):
        classname = req["class"]
        n_found = len(objects.get(classname, []))
        items.append(n_found < req["count"])
        if n_found >= req["count"]:
            reason.append(f"expected {classname}<{req['count']}, found {n_found}")
    return items, "\n".join(reason)


def image_details(detections_by_class: dict[str, list[Detection]]) -> dict[str, list[list[float]]]:
    """The official `details` field: class -> [[x1, y1, x2, y2, score], ...] of the kept detections."""
    return {label: [[float(v) for v in d.box] + [float(d.score)] for d in dets]
            for label, dets in detections_by_class.items()}


def summarize(rows: Iterable[dict]) -> dict[str, float]:
    """Scores of a run, as official summary_scores.py computes them.

    rows: one per image, with keys `tag`, `correct` (bool) and `prompt_index` (any hashable prompt id;
    official groups by the metadata string). Returns {tag: accuracy over that tag's images} for each tag
    present (official tag order first, others after in order of appearance), `overall` = unweighted mean
    of those tag scores (a missing tag drops out, as official), `images_correct` = fraction of images
    correct and `prompts_any_correct` = fraction of prompts with at least one correct image.
    """
    rows = list(rows)
    if not rows:
        raise ValueError("no results to summarize (0 images)")
    by_tag: dict[str, list[bool]] = {}
    by_prompt: dict[object, bool] = {}
    for i, r in enumerate(rows):
        try:
            tag, ok, pid = r["tag"], bool(r["correct"]), r["prompt_index"]
        except KeyError as e:
            raise ValueError(f"result row {i} lacks {e.args[0]!r} (need tag, correct, prompt_index)") from None
        by_tag.setdefault(tag, []).append(ok)
        by_prompt[pid] = by_prompt.get(pid, False) or ok
    scores = {t: sum(v) / len(v) for t, v in by_tag.items()}  # order of appearance, as official groupby
    tags = [t for t in GENEVAL_TAGS if t in scores] + [t for t in scores if t not in GENEVAL_TAGS]
    out: dict[str, float] = {t: scores[t] for t in tags}
    out["overall"] = sum(scores.values()) / len(scores)  # = official np.mean (same order, < 8 terms)
    out["images_correct"] = sum(ok for v in by_tag.values() for ok in v) / len(rows)
    out["prompts_any_correct"] = sum(by_prompt.values()) / len(by_prompt)
    return out
