"""Scene F1: objects matched on (shape, colour, cell) between the original's scene and the one
`scene_detect.read_scene` reads from the reconstruction. 1.0 for identical scenes; 0 when either is empty
and the other is not (both empty -> 1.0).

The original's scene is read by the detector too, unless the caller passes exact specs
(`metric.score_specs(scenes, reconstructions)`), e.g. from a corpus's meta["scene"].
"""
from __future__ import annotations

from uae_data.scene_detect import read_scene
from uae_data.scenes import Scene
from uae_eval.metrics.base import METRICS, check_pairs


def object_keys(scene: Scene) -> set[tuple[str, str, int, int]]:
    return {(o.shape, o.color, o.row, o.col) for o in scene.objects}


def scene_f1(reference: Scene, predicted: Scene) -> float:
    ref, pred = object_keys(reference), object_keys(predicted)
    if not ref and not pred:
        return 1.0
    hits = len(ref & pred)
    return 2.0 * hits / (len(ref) + len(pred))


@METRICS.register("scene")
class SceneF1:
    higher_is_better = True

    def __call__(self, originals: list, reconstructions: list) -> list[float]:
        check_pairs(originals, reconstructions)
        return self.score_specs([read_scene(im.convert("RGB")) for im in originals], reconstructions)

    def score_specs(self, scenes: list[Scene], reconstructions: list) -> list[float]:
        check_pairs(scenes, reconstructions)
        return [scene_f1(s, read_scene(im.convert("RGB"))) for s, im in zip(scenes, reconstructions)]

    def provenance(self) -> dict:
        return {"metric": "scene", "match": "(shape, colour, cell)", "reader": "uae_data.scene_detect.read_scene"}


def _f1(ref: list, pred: list) -> float:
    """Multiset F1 (both empty -> 1.0)."""
    from collections import Counter

    a, b = Counter(ref), Counter(pred)
    if not a and not b:
        return 1.0
    return 2.0 * sum((a & b).values()) / (sum(a.values()) + sum(b.values()))


def scene_soft(reference: Scene, predicted: Scene) -> float:
    """Mean of three F1s, coarse to exact: colours, (colour, cell), (shape, colour, cell).

    Exact scene F1 is 0 for most images of a barely trained decoder, which gives RL no signal; partial
    credit for the right colours and places keeps the reward graded while still peaking only at 1.0 for
    the exact scene.
    """
    r, p = reference.objects, predicted.objects
    return (_f1([o.color for o in r], [o.color for o in p])
            + _f1([(o.color, o.row, o.col) for o in r], [(o.color, o.row, o.col) for o in p])
            + _f1([(o.shape, o.color, o.row, o.col) for o in r], [(o.shape, o.color, o.row, o.col) for o in p])) / 3


@METRICS.register("scene-soft")
class SceneSoft(SceneF1):
    """Graded scene agreement (see `scene_soft`); 1.0 only for the exact scene."""

    def score_specs(self, scenes: list[Scene], reconstructions: list) -> list[float]:
        check_pairs(scenes, reconstructions)
        return [scene_soft(s, read_scene(im.convert("RGB"))) for s, im in zip(scenes, reconstructions)]

    def provenance(self) -> dict:
        return {"metric": "scene-soft", "match": "mean F1 of colour, (colour, cell), (shape, colour, cell)",
                "reader": "uae_data.scene_detect.read_scene"}
