"""The demo headline's statistics: mean ± sd over seeds and the paired gain's 95% t interval."""
from __future__ import annotations

import math

import pytest

from uae_train.demo.stats import paired_gain, row, summary, t975


@pytest.mark.unit
def test_paired_gain_is_the_t_interval_over_seeds():
    g = paired_gain(0.5, [0.6, 0.7, 0.65])
    assert g["mean"] == pytest.approx(0.15) and g["sd"] == pytest.approx(0.05)
    half = 4.303 * 0.05 / math.sqrt(3)  # t_{0.975, 2}
    assert g["ci95"] == pytest.approx([0.15 - half, 0.15 + half])
    per_seed = paired_gain([0.5, 0.6], [0.7, 0.7])  # one before per seed: gains 0.2 and 0.1
    assert per_seed["values"] == pytest.approx([0.2, 0.1]) and per_seed["ci95"][0] < 0.15 < per_seed["ci95"][1]


@pytest.mark.unit
def test_one_seed_claims_no_interval_and_a_constant_gain_has_a_zero_width_one():
    assert paired_gain(0.5, [0.7])["ci95"] is None and summary([1.0])["sd"] is None
    flat = paired_gain(0.5, [0.5, 0.5, 0.5])
    assert flat["ci95"] == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError):
        paired_gain([0.1, 0.2], [0.3])
    assert t975(2) == 4.303 and t975(12) == t975(10) and t975(100) == 1.96


@pytest.mark.unit
def test_headline_row_carries_before_after_gain_chance_and_controls():
    r = row("MMT", "stage 1", "accuracy", 0.4, [0.5, 0.6], chance=0.25,
            controls=[{"name": "constant reward", "gain": paired_gain(0.4, [0.4, 0.41])}])
    assert r["before"]["mean"] == 0.4 and r["after"]["n"] == 2 and r["gain"]["mean"] == pytest.approx(0.15)
    assert r["chance"] == 0.25 and r["controls"][0]["name"] == "constant reward"


@pytest.mark.unit
def test_web_headline_compares_the_true_reward_with_each_control_seed_by_seed(tmp_path):
    import json

    from uae_train.demo.web import web_headline_rows

    def put(folder, **metrics):
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"metrics": metrics, "primary_metric": "cell_attributes"}))

    recall = {"pretrain": [0.3], "unified-grpo": [0.6, 0.7, 0.65], "stage1-length": [0.5, 0.52, 0.51],
              "stage1-constant": [0.3, 0.3, 0.3]}
    for label, values in recall.items():
        for k, v in enumerate(values):
            root = tmp_path if k == 0 else tmp_path / f"seed-{k}"
            put(root / "eval" / label / "scene-captions", object_recall=v, attribute_precision=1.0,
                words_per_caption=20 + 40 * v, cell_attributes=v)
    put(tmp_path / "eval" / "exact-caption-encoder" / "scene-captions", object_recall=0.95, attribute_precision=1.0,
        words_per_caption=100.0, cell_attributes=0.97)
    rows = web_headline_rows(tmp_path, 3)
    r = next(x for x in rows if x["metric"].startswith("object recall"))
    assert r["gain"]["mean"] == pytest.approx(0.35)
    ctrl = {c["name"]: c for c in r["controls"]}
    assert ctrl["constant reward"]["gain"]["mean"] == 0.0 and "true_minus_control" not in ctrl["constant reward"]
    diff = ctrl["length reward"]["true_minus_control"]
    assert diff["values"] == pytest.approx([0.1, 0.18, 0.14]) and diff["ci95"][0] > 0
    assert ctrl["exact-caption encoder"]["value"] == 0.95
    assert [x["metric"].split(" (")[0] for x in rows] == ["object recall", "attribute precision", "words per caption"]
