"""Reconstruction rewards (`uae_train.rl.rewards`, plain callables returning (total, parts)): every image-similarity term gives reward(x, x) = 1, PSNR is
mixed in as min(dB, 50) / 50, the total is the weighted sum of the logged parts, and a wrong term name is a
one-line config error. Embedding terms use tiny backbones built from config (random weights, no hub)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.tiny_backbones import tiny_backbones
from uae_data.core.errors import ConfigError
from uae_data.scenes import render, sample_scene
from uae_train.rl.rewards import build_reward

pytestmark = pytest.mark.unit

SIMILARITY_TERMS = ("pixel", "psnr", "ssim", "scene", "scene-soft", "clip", "longclip", "dino", "dinov3")
EMBEDDING_TERMS = ("clip", "longclip", "dino", "dinov3")


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, str]:
    return tiny_backbones(tmp_path_factory.mktemp("reward-backbones"))


def options(backbones: dict[str, str], name: str) -> dict:
    """metric_options for a one-term reward: local tiny models for the embedding terms, CPU."""
    if name == "clip":
        return {"clip": {"model": backbones["clip"], "pretrained": None, "device": "cpu"}}
    if name in EMBEDDING_TERMS:
        return {name: {"model": backbones[name], "device": "cpu"}}
    return {}


def scenes_and_images(n: int = 3, size: int = 64):
    scenes = [sample_scene(40 + i) for i in range(n)]
    return scenes, [render(s, size) for s in scenes]


def flat(value: int, size: int = 8) -> Image.Image:
    return Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8))


@pytest.mark.parametrize("name", SIMILARITY_TERMS)
def test_each_similarity_term_scores_an_image_against_itself_at_one(backbones, name):
    reward = build_reward({name: 1.0}, options(backbones, name))
    scenes, ims = scenes_and_images()
    total, parts = reward(ims, ims)
    assert total.shape == (3,) and total.dtype == torch.float32
    assert np.allclose(total.numpy(), 1.0, atol=1e-5)
    assert np.allclose(parts[name], 1.0, atol=1e-5)
    assert np.allclose(reward(ims, ims, scenes)[0].numpy(), 1.0, atol=1e-5)  # exact specs (scene metrics read them)


@pytest.mark.parametrize("name", ("pixel", "psnr", "ssim"))
def test_a_reconstruction_of_another_size_is_resized_to_the_original(name):
    reward = build_reward({name: 1.0})
    assert reward([flat(100)], [flat(100, size=16)])[0].tolist() == pytest.approx([1.0], abs=1e-6)  # flat stays flat
    same_size = reward([flat(100)], [flat(110)])[0].tolist()
    assert reward([flat(100)], [flat(110, size=16)])[0].tolist() == pytest.approx(same_size)


def test_other_images_score_below_one():
    _, ims = scenes_and_images(3)
    other = ims[1:] + ims[:1]
    for name in ("pixel", "psnr", "ssim", "scene-soft"):
        assert max(build_reward({name: 1.0})(ims, other)[0].tolist()) < 1.0


def test_psnr_term_is_decibels_over_50_clipped_at_one():
    reward = build_reward({"psnr": 1.0})
    base = flat(100)
    # every channel of every pixel off by 10: MSE = 100, PSNR = 10·log10(255² / 100) = 28.13 dB
    mse100 = 10 * math.log10(255 ** 2 / 100)
    # off by 1 everywhere: MSE = 1, PSNR = 48.13 dB (under the 50 dB clip)
    mse1 = 10 * math.log10(255 ** 2)
    # one channel of one pixel off by 1 on 8×8×3: MSE = 1/192, PSNR = 70.96 dB (clipped to 50)
    one_off = np.full((8, 8, 3), 100, dtype=np.uint8)
    one_off[0, 0, 0] = 101
    total, parts = reward([base] * 4, [flat(110), flat(101), Image.fromarray(one_off), flat(100)])
    got = total.tolist()
    assert got == pytest.approx([mse100 / 50, mse1 / 50, 1.0, 1.0], abs=1e-6)
    assert got[0] == pytest.approx(0.5626, abs=1e-4)
    assert parts["psnr"] == pytest.approx(got)


def test_pixel_term_is_one_minus_the_mean_squared_error_on_unit_rgb():
    got = build_reward({"pixel": 1.0})([flat(100), flat(0)], [flat(110), flat(255)])[0].tolist()
    assert got == pytest.approx([1 - (10 / 255) ** 2, 0.0], abs=1e-6)


def test_constant_control_term_is_one_for_any_pair():
    _, ims = scenes_and_images(3)
    reward = build_reward({"constant": 1.0})
    assert reward(ims, ims[::-1])[0].tolist() == [1.0, 1.0, 1.0]


def test_total_is_the_weighted_sum_of_the_logged_parts():
    weights = {"pixel": 2.0, "psnr": 0.5, "ssim": 1.5, "constant": 0.25}
    reward = build_reward(weights)
    _, ims = scenes_and_images(3)
    total, parts = reward(ims, ims[1:] + ims[:1])
    assert set(parts) == set(weights) and all(len(v) == 3 for v in parts.values())
    expected = sum(w * np.asarray(parts[k], dtype=np.float64) for k, w in weights.items())
    assert np.allclose(total.numpy(), expected, atol=1e-6)
    assert total.dtype == torch.float32
    single = {k: build_reward({k: 1.0})(ims, ims[1:] + ims[:1])[0].tolist() for k in weights}
    assert all(parts[k] == pytest.approx(single[k]) for k in weights)  # a part is the term alone


def test_a_wrong_term_name_is_a_one_line_config_error_naming_it_and_the_choices():
    with pytest.raises(ConfigError) as err:
        build_reward({"pixel": 1.0, "clipp": 1.0})
    msg = str(err.value)
    assert "\n" not in msg and "clipp" in msg and "choose from" in msg and "'scene-soft'" in msg
    with pytest.raises(ConfigError, match="at least one metric weight"):
        build_reward({})


def test_unpaired_inputs_are_refused():
    _, ims = scenes_and_images(3)
    with pytest.raises(ValueError, match="reward needs pairs: 3 originals, 2 reconstructions"):
        build_reward({"pixel": 1.0})(ims, ims[:2])


def test_reward_options_are_checked_against_each_term_before_anything_is_built():
    with pytest.raises(ConfigError, match=r"unknown key 'reward_options\.clip\.modle'"):
        build_reward({"clip": 1.0}, {"clip": {"modle": "ViT-L-14"}})
    with pytest.raises(ConfigError, match=r"unknown key 'reward_options\.clipp'"):
        build_reward({"pixel": 1.0}, {"clipp": {}})
    with pytest.raises(ConfigError, match=r"reward_options\.pixel\.scale"):  # pixel takes no options
        build_reward({"pixel": 1.0}, {"pixel": {"scale": 2}})
