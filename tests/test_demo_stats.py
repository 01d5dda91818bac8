"""The demo headline's statistics: mean ± sd over seeds and the paired gain's 95% t interval."""
from __future__ import annotations

import math

import pytest

from uae_train.demo_stats import paired_gain, row, summary, t975


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
