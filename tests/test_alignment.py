"""Alignment metric on controls (identical, independent, permuted pairs) and on a tiny real-class encoder."""
from __future__ import annotations

import numpy as np
import pytest

from uae_eval.alignment import (AlignmentConfig, cknna, knn_mask, layer_scores, mutual_knn, random_baseline, run)
from uae_eval.results import read_results


def _feats(n: int = 200, d: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.unit
def test_identical_representations_score_one():
    a = _feats()
    assert mutual_knn(a, a, k=10) == pytest.approx(1.0)
    assert cknna(a, a, k=10) == pytest.approx(1.0, abs=1e-3)  # platonic-rep adds 1e-6 to the denominator


@pytest.mark.unit
def test_scaling_and_rotation_do_not_change_mutual_knn():
    a = _feats()
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(32, 32)))
    assert mutual_knn(a, 3.0 * a @ q, k=10) == pytest.approx(1.0)


@pytest.mark.unit
def test_independent_random_features_score_near_the_random_baseline():
    a, b = _feats(seed=0), _feats(seed=1)
    base = random_baseline(200, 10)
    assert base == pytest.approx(10 / 199)
    assert abs(mutual_knn(a, b, k=10) - base) < 0.03
    assert abs(cknna(a, b, k=10)) < 0.15


@pytest.mark.unit
def test_permuting_the_pairs_drops_alignment():
    a = _feats()
    b = a @ np.random.default_rng(2).normal(size=(32, 48)) + 0.3 * _feats(d=48, seed=3)  # related, not equal
    paired = mutual_knn(a, b, k=10)
    perm = np.random.default_rng(4).permutation(200)
    shuffled = mutual_knn(a, b[perm], k=10)
    assert paired > 0.3 and shuffled < random_baseline(200, 10) + 0.03
    assert cknna(a, b, k=10) > cknna(a, b[perm], k=10) + 0.3


@pytest.mark.unit
def test_knn_excludes_self_and_matches_a_hand_example():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    mask = knn_mask(x, 1)
    assert not mask.diagonal().any()
    assert mask.nonzero().tolist() == [[0, 1], [1, 0], [2, 3], [3, 2]]
    y = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])  # neighbours swapped for every sample
    assert mutual_knn(x, y, k=1) == 0.0


@pytest.mark.unit
def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in N"):
        mutual_knn(_feats(10), _feats(11), k=3)
    with pytest.raises(ValueError, match="k must be"):
        mutual_knn(_feats(10), _feats(10), k=10)


@pytest.mark.unit
def test_run_writes_per_layer_curves_and_controls(tmp_path):
    a = _feats(64)
    feats = {"understanding": {"image": [a, a, a], "text": [_feats(64, seed=5), a + 0.01 * _feats(64, seed=6), a]}}
    res = run(AlignmentConfig(limit=64, k=5), tmp_path, feats, model={"name": "toy", "path": None, "config": {}})
    back = read_results(tmp_path)
    assert back.primary_metric == "understanding/mutual_knn/mean"
    curve = [back.metrics[f"understanding/mutual_knn/layer_{i:02d}"] for i in range(3)]
    assert curve[0] < 0.3 and curve[2] == pytest.approx(1.0) and curve[1] > 0.8
    assert back.metrics["understanding/mutual_knn_shuffled_pairs/mean"] < 0.3
    assert back.extra["curves"]["understanding: mutual_knn"]["y"] == pytest.approx(curve)
    assert res.extra["random_baseline_mutual_knn"] == pytest.approx(5 / 63)


@pytest.mark.unit
def test_layer_scores_need_matching_layer_counts():
    with pytest.raises(ValueError, match="number of layers"):
        layer_scores({"image": [_feats(20)], "text": []}, k=3)


@pytest.mark.unit
def test_tiny_qwen_encoder_hidden_states_give_one_point_per_layer():
    from uae_data.scenes import render, sample_scene, write_caption
    from uae_train.models.encoder import Encoder
    from uae_train.evaluation.layer_features import encoder_features

    enc = Encoder.tiny(image_size=64, seed=0)
    scenes = [sample_scene(i) for i in range(24)]
    images = [render(s, 64) for s in scenes]
    captions = [write_caption(s, i) for i, s in enumerate(scenes)]
    feats = encoder_features(enc, images, captions, batch_size=12)
    n_layers = enc._core().config.text_config.num_hidden_layers + 1  # embeddings + each layer
    assert len(feats["image"]) == len(feats["text"]) == n_layers
    assert all(f.shape == (24, 64) for f in feats["image"] + feats["text"])
    scores = layer_scores(feats, k=5, metrics=("mutual_knn", "cknna"))
    assert all(0.0 <= s <= 1.0 for s in scores["mutual_knn"])
    # the same features on both sides are the identity control on real hidden states
    assert layer_scores({"image": feats["image"], "text": feats["image"]}, k=5)["mutual_knn"] == pytest.approx([1.0] * n_layers)
