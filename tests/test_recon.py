"""Reconstruction benchmark: oracle captioner + oracle decoder is exact (scene F1 = 1, PSNR = inf) on a
corpus and on an image folder; the shuffled-caption control drops both; CI, seeds and outputs hold."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from uae_data.core.config import load_config
from uae_data.core.errors import ConfigError, InputError
from uae_data.scenes import render, sample_scene
from uae_eval.recon import ReconConfig, bootstrap_ci, derangement, run
from uae_eval.recon_oracles import OracleCaptioner, OracleDecoder
from uae_eval.results import read_results, read_samples

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def corpus(scene_corpus):
    return scene_corpus(24, 64)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    for i in range(12):
        render(sample_scene(100 + i), 64).save(d / f"im{i:03d}.png")
    return d


def cfg_for(data, **over) -> ReconConfig:
    over = {"metrics": ["scene", "psnr", "ssim"], "bootstrap": 200, **over}
    return load_config(ReconConfig, None,
                       [f"data={data}"] + [f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
                                           for k, v in over.items()], kind="recon")


def test_defaults_load_and_bad_metric_is_a_config_error():
    assert load_config(ReconConfig, None, kind="recon").metrics[0] == "scene"
    with pytest.raises(ConfigError, match="unknown metric 'lpipz'"):
        load_config(ReconConfig, None, ["metrics=[lpipz]"], kind="recon")
    with pytest.raises(ConfigError, match="images_per_caption"):
        load_config(ReconConfig, None, ["images_per_caption=0"], kind="recon")


def test_oracle_round_trip_on_corpus_is_exact_and_shuffled_control_drops(corpus, tmp_path):
    res = run(cfg_for(corpus), tmp_path / "oracle")
    assert res.n_items == 24 and res.primary_metric == "scene"
    assert res.metrics["scene"] == 1.0 and res.metrics["scene_ci_low"] == 1.0
    assert math.isinf(res.metrics["psnr"]) and math.isinf(res.metrics["psnr_ci_low"])
    assert res.metrics["ssim"] == pytest.approx(1.0)
    assert 40 <= res.metrics["caption_words_mean"] <= 150
    back = read_results(tmp_path / "oracle")
    assert math.isinf(back.metrics["psnr"])

    ctrl = run(cfg_for(corpus, shuffle_captions=True), tmp_path / "shuffled")
    assert ctrl.metrics["scene"] < 0.4 and ctrl.metrics["scene_ci_high"] < 0.6
    assert ctrl.metrics["psnr"] < 25 and ctrl.metrics["ssim"] < 0.9
    samples = list(read_samples(tmp_path / "shuffled"))
    assert all("caption_of" in s and s["caption_of"] != s["key"] for s in samples)
    scores = [s["metrics"]["scene"] for s in samples]
    assert scores == sorted(scores)  # worst first


def test_oracle_on_image_folder_reads_scenes_and_writes_images(folder, tmp_path):
    res = run(cfg_for(folder, images_per_caption=2, limit=5), tmp_path / "r")
    assert res.n_items == 5 and res.extra["n_reconstructions"] == 10
    assert res.metrics["scene"] == 1.0 and math.isinf(res.metrics["psnr"])
    s = next(read_samples(tmp_path / "r"))
    assert len(s["values"]["psnr"]) == 2 and len(s["reconstructions"]) == 2
    for p in (s["image"], s["original"], *s["reconstructions"]):
        assert (tmp_path / "r" / p).is_file()


def test_custom_callables_get_seeds_and_psnr_cap_keeps_means_finite(folder, tmp_path):
    seen = []

    def caption(images):
        return ["a caption"] * len(images)

    def generate(prompts, seeds):
        seen.extend(seeds)
        return [render(sample_scene(s), 64) for s in seeds]

    cfg = cfg_for(folder, images_per_caption=3, limit=4, seed=2, metrics=["psnr", "scene"],
                  metric_options={"psnr": {"psnr_cap": 60.0}}, save_images=False)
    res = run(cfg, tmp_path / "c", caption=caption, generate=generate)
    assert seen == [2 * 100003 + i for i in range(12)]
    assert math.isfinite(res.metrics["psnr"]) and res.metrics["caption_words_median"] == 2.0
    assert not (tmp_path / "c" / "images").exists()


def test_runs_are_reproducible(folder, tmp_path):
    a = run(cfg_for(folder, shuffle_captions=True, limit=6), tmp_path / "a").metrics
    b = run(cfg_for(folder, shuffle_captions=True, limit=6), tmp_path / "b").metrics
    assert a == b


def test_missing_data_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        run(cfg_for(tmp_path / "nope"), tmp_path / "o")


def test_bootstrap_ci_brackets_the_mean_and_handles_inf():
    v = np.random.default_rng(0).normal(1.0, 0.5, 200)
    lo, hi = bootstrap_ci(v, 1000, seed=0)
    assert lo < v.mean() < hi and hi - lo < 0.3
    assert bootstrap_ci(v, 1000, seed=0) == (lo, hi)
    assert bootstrap_ci([math.inf] * 5) == (math.inf, math.inf)
    assert bootstrap_ci([2.0]) == (2.0, 2.0)


@pytest.mark.parametrize("n", [0, 1, 2, 7, 50])
def test_derangement_moves_every_item(n):
    p = derangement(n, seed=3)
    assert sorted(p) == list(range(n))
    assert n < 2 or all(p[i] != i for i in range(n))


def test_oracles_round_trip_a_scene_exactly():
    scene = sample_scene(7)
    image = render(scene, 64)
    text = OracleCaptioner()([image], scenes=[scene])[0]
    assert np.array_equal(np.asarray(OracleDecoder(64)([text], [0])[0]), np.asarray(image))
    assert OracleCaptioner()([image]) == [text]  # detector path reads the same scene


def test_embedding_metric_from_options_scores_oracle_at_one(folder, tmp_path):
    from benchmarks.tiny_geneval_models import tiny_clip

    clip_dir = tiny_clip(tmp_path / "clip")
    cfg = cfg_for(folder, limit=3, metrics=["clip"],
                  metric_options={"clip": {"model": str(clip_dir), "pretrained": None, "device": "cpu"}})
    res = run(cfg, tmp_path / "r")
    assert res.metrics["clip"] == pytest.approx(1.0, abs=1e-5)
    assert res.extra["metrics"]["clip"]["model"] == str(clip_dir)


@pytest.mark.integration
def test_cli_recon_oracle_and_shuffled_control(tmp_path, uae, scene_corpus):
    corpus = scene_corpus(40, 64)
    ok = uae("eval", "recon", "--data", str(corpus), "limit=30", "bootstrap=200", "--out", str(tmp_path / "o"))
    ctrl = uae("eval", "recon", "--data", str(corpus), "limit=30", "bootstrap=200", "shuffle_captions=true",
               "--out", str(tmp_path / "s"))
    assert ok.returncode == 0 and ctrl.returncode == 0, ok.stderr + ctrl.stderr
    a = json.loads((tmp_path / "o/results.json").read_text())["metrics"]
    b = json.loads((tmp_path / "s/results.json").read_text())["metrics"]
    assert a["scene"] == 1.0 and a["psnr"] == "inf" and b["scene"] < 0.2 and float(b["psnr"]) < 30


def test_oracle_captioner_refuses_photos_that_are_not_scenes_naming_the_file(tmp_path, uae_in_process):
    from PIL import Image
    from skimage import data

    (tmp_path / "p").mkdir()
    Image.fromarray(data.astronaut()).resize((96, 96)).save(tmp_path / "p" / "astronaut.png")
    r = uae_in_process("eval", "recon", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "astronaut shows no scene-world object" in r.stderr and "--encoder" in r.stderr
    assert not (tmp_path / "o").exists()
