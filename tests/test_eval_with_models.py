"""MMT-Bench and recon run end to end with tiny real-class models (Qwen2.5-VL class, SD3 transformer) from config."""
from __future__ import annotations

import json

import pytest

from uae_data.core.config import load_config
from uae_data.corpus_config import CorpusConfig
from uae_data.pipeline import build

from conftest import ROOT

pytestmark = pytest.mark.integration


def test_mmt_bench_model_path_runs_a_tiny_vlm_end_to_end(tiny_run, tmp_path, uae):
    r = uae("eval", "mmt-bench", "--model", str(tiny_run / "encoder"), "limit=4", "--out", str(tmp_path / "m"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "m/results.json").read_text())
    assert res["n_items"] == 4 and 0.0 <= res["metrics"]["overall"] <= 1.0
    samples = [json.loads(l) for l in (tmp_path / "m/samples.jsonl").read_text().splitlines()]
    assert all("prediction" in s and "hit" in s for s in samples)


def test_recon_runs_tiny_encoder_and_decoder_end_to_end(tiny_run, tmp_path, uae):
    corpus = tmp_path / "c"
    build(load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", ["source.n=6", "shard_size=6"]), corpus, workers=1)
    r = uae("eval", "recon", "--data", str(corpus), "limit=3", "bootstrap=50", "--encoder", str(tiny_run / "encoder"),
            "--decoder", str(tiny_run / "decoder"), "--steps", "2", "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "r/results.json").read_text())
    assert res["n_items"] == 3 and {"scene", "psnr", "ssim"} <= set(res["metrics"])
    assert res["model"]["config"]["decoder"].endswith("decoder")
