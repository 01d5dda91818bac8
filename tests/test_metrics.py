"""Reconstruction metrics / rewards: identity gives the maximum, other images score lower, values are
deterministic and do not depend on batching. Tiny CLIP / DINOv2 built from config (random weights, no hub)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from benchmarks.tiny_geneval_models import tiny_clip
from uae_data.scenes import Scene, SceneObject, render, sample_scene
from uae_eval.metrics import METRICS, build_metric
from uae_eval.metrics.scene import scene_f1

pytestmark = pytest.mark.unit


def images(n: int, seed: int = 0) -> list[Image.Image]:
    return [render(sample_scene(seed * 1000 + i), 64) for i in range(n)]


def noise(n: int, seed: int = 1) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def clip_metric(tmp_path_factory):
    return build_metric("clip", model=str(tiny_clip(tmp_path_factory.mktemp("clip"))), pretrained=None, device="cpu")


@pytest.fixture(scope="module")
def dino_metric(tmp_path_factory):
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    path = tmp_path_factory.mktemp("dino")
    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)
    Dinov2Model(cfg).save_pretrained(path)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(path)
    return build_metric("dino", model=str(path), device="cpu")


def test_registry_knows_every_metric_and_rejects_unknown():
    build_metric("psnr")
    assert {"psnr", "ssim", "clip", "dino", "scene"} <= set(METRICS.names())
    with pytest.raises(KeyError, match="unknown metric"):
        build_metric("lpipz")


def test_psnr_is_inf_for_identical_and_capped_on_request():
    a, b = images(2), noise(2)
    assert build_metric("psnr")(a, a) == [math.inf, math.inf]
    assert build_metric("psnr", psnr_cap=100.0)(a, a) == [100.0, 100.0]
    low = build_metric("psnr")(a, b)
    assert all(0 < v < 20 for v in low)


def test_psnr_matches_hand_computed_value():
    a = Image.new("RGB", (8, 8), (0, 0, 0))
    b = Image.new("RGB", (8, 8), (10, 10, 10))  # mse = 100
    assert build_metric("psnr")([a], [b])[0] == pytest.approx(10 * math.log10(255 ** 2 / 100))


def test_ssim_is_one_for_identical_and_lower_for_noise():
    a, b = images(2), noise(2)
    m = build_metric("ssim")
    assert m(a, a) == pytest.approx([1.0, 1.0])
    assert all(v < 0.5 for v in m(a, b))


def test_pair_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="pairs"):
        build_metric("psnr")(images(2), images(1))


@pytest.mark.parametrize("name", ["clip_metric", "dino_metric"])
def test_embedding_cosine_identity_lower_deterministic_and_batch_invariant(name, request):
    m = request.getfixturevalue(name)
    a, b = images(3), noise(3, seed=5)
    same = m(a, a)
    assert same == pytest.approx([1.0] * 3, abs=1e-5)
    other = m(a, b)
    assert all(v < 1.0 - 1e-4 for v in other)
    assert m(a, b) == other  # deterministic
    singles = [m([x], [y])[0] for x, y in zip(a, b)]
    assert singles == pytest.approx(other, abs=1e-5)
    assert m.higher_is_better and m.provenance()["metric"] in ("clip", "dino")


def test_scene_f1_identical_is_one_and_partial_matches_count():
    s = Scene((SceneObject("circle", "red", "large", 0, 0), SceneObject("square", "blue", "small", 1, 1)))
    t = Scene((SceneObject("circle", "red", "small", 0, 0), SceneObject("square", "green", "small", 1, 1)))
    assert scene_f1(s, s) == 1.0
    assert scene_f1(s, t) == pytest.approx(0.5)  # size is not matched; the colour change is a miss
    assert scene_f1(s, Scene(())) == 0.0 and scene_f1(Scene(()), Scene(())) == 1.0


def test_scene_metric_on_rendered_images():
    a, b = images(4), images(4, seed=9)
    m = build_metric("scene")
    assert m(a, a) == [1.0] * 4
    assert np.mean(m(a, b)) < 0.5
    specs = [sample_scene(i) for i in range(4)]
    assert m.score_specs(specs, a) == [1.0] * 4
