"""The scene detector: exact on renders, tolerant of noise and soft edges, and the inverse of render."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from uae_data.detection import Detection, box_iou
from uae_data.scene_detect import classify_pixels, detect, read_scene, recovery_rate
from uae_data.scenes import (
    BACKGROUND, COLORS, SHAPES, SIZES, Scene, SceneObject, object_box, object_mask, render, render_array, sample_scene,
)

pytestmark = pytest.mark.unit


def _objects_found(scene: Scene, detections: list[Detection], size: int, min_iou: float = 0.5) -> int:
    """How many of the scene's objects have a detection with their shape, colour and an overlapping box."""
    return sum(any(d.label == o.shape and d.color == o.color and box_iou(d.box, object_box(o, size)) >= min_iou
                   for d in detections) for o in scene.objects)


def test_detector_recovers_every_object_on_at_least_98_percent_of_500_scenes_at_64():
    assert recovery_rate(500, size=64, seed=123) >= 0.98


def test_detector_recovers_most_scenes_at_32():
    assert recovery_rate(200, size=32, seed=7) >= 0.95


@pytest.mark.parametrize("size", [48, 128])
def test_detector_works_at_other_image_sizes(size):
    assert recovery_rate(20, size=size, seed=1) >= 0.95


def test_detections_carry_exact_boxes_masks_colours_and_scores_on_a_clean_render():
    scene = Scene(tuple(SceneObject(shape, color, "large", i // 3, i % 3)
                        for i, (shape, color) in enumerate(zip(SHAPES, COLORS))))
    detections = detect(render(scene, 64))
    assert len(detections) == len(scene.objects)
    by_colour = {d.color: d for d in detections}
    for o in scene.objects:
        d = by_colour[o.color]
        assert d.label == o.shape
        assert d.box == tuple(float(v) for v in object_box(o, 64))
        assert d.mask.shape == (64, 64) and np.array_equal(d.mask, object_mask(o, 64))
        assert 0.0 < d.score <= 1.0
    assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)


def test_same_colour_neighbours_stay_separate_objects():
    full = Scene(tuple(SceneObject("square", "red", "large", r, c) for r in range(3) for c in range(3)))
    for size in (32, 64):
        assert len(detect(render(full, size))) == 9


def test_detector_finds_objects_in_an_image_with_gaussian_noise():
    rng = np.random.default_rng(0)
    found = total = 0
    for _ in range(60):
        scene = sample_scene(rng)
        noisy = render_array(scene, 64) + rng.normal(0, 20, (64, 64, 3))
        detections = detect(np.clip(noisy, 0, 255).astype(np.uint8))
        found += _objects_found(scene, detections, 64)
        total += len(scene.objects)
        assert len(detections) <= len(scene.objects) + 1
    assert found / total >= 0.95


def test_detector_reads_soft_edged_antialiased_renders():
    rng = np.random.default_rng(1)
    found = total = spurious = 0
    for _ in range(60):
        scene = sample_scene(rng)
        soft = render(scene, 256).resize((64, 64), Image.LANCZOS)
        detections = detect(soft)
        found += _objects_found(scene, detections, 64)
        total += len(scene.objects)
        spurious += max(0, len(detections) - len(scene.objects))
    assert found / total >= 0.95 and spurious <= 3


def test_read_scene_inverts_render():
    hits = sum(read_scene(render(s, 64)) == s for s in (sample_scene(seed) for seed in range(300)))
    assert hits >= 297
    hits32 = sum(read_scene(render(s, 32)) == s for s in (sample_scene(seed) for seed in range(100)))
    assert hits32 >= 95


def test_read_scene_keeps_the_best_detection_per_cell_and_sizes_by_box():
    obj = SceneObject("ring", "green", "medium", 1, 2)
    img = render(Scene((obj,)), 64)
    weak = Detection("circle", 0.2, tuple(float(v) for v in object_box(obj, 64)), color="green")
    strong = detect(img)[0]
    assert read_scene(img, [weak, strong]) == Scene((obj,))
    for size_name in SIZES:
        o = SceneObject("triangle", "black", size_name, 2, 0)
        assert read_scene(render(Scene((o,)), 64)) == Scene((o,))


def test_detect_returns_nothing_on_blank_and_off_palette_images():
    assert detect(Image.new("RGB", (64, 64), BACKGROUND)) == []
    assert detect(np.full((40, 40, 3), 128, np.uint8)) == []
    assert read_scene(Image.new("RGB", (64, 64), BACKGROUND)) == Scene(())


def test_detect_accepts_pil_uint8_float_and_non_square_inputs():
    scene = sample_scene(5)
    arr = render_array(scene, 64)
    expected = [(d.label, d.color, d.box) for d in detect(arr)]
    for image in (Image.fromarray(arr), arr.astype(np.float32) / 255.0, arr.astype(np.float64)):
        assert [(d.label, d.color, d.box) for d in detect(image)] == expected
    wide = np.concatenate([arr, np.broadcast_to(np.array(BACKGROUND, np.uint8), (64, 32, 3))], axis=1)
    assert sorted((d.label, d.color) for d in detect(wide)) == sorted((o.shape, o.color) for o in scene.objects)


def test_classify_pixels_and_detect_reject_non_image_arrays():
    with pytest.raises(ValueError, match="RGB"):
        classify_pixels(np.zeros((4, 4, 5)))
    with pytest.raises(ValueError, match="RGB"):
        detect(np.zeros(10))


def test_tiny_specks_are_ignored():
    arr = render_array(Scene(()), 64)
    arr[10, 10] = COLORS["red"]
    arr[40:42, 40] = COLORS["blue"]
    assert detect(arr) == []
