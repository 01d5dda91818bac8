"""Experiment trackers (issue #19): `log_with` sends the metrics.jsonl rows to TensorBoard event files (and
wandb offline) under RUN/trackers, read back here; unknown trackers fail before training."""
from __future__ import annotations

import json

import pytest

from uae_data.core.config import load_config
from uae_data.corpus_config import CorpusConfig
from uae_data.pipeline import build
from uae_train.stages.pretrain import PretrainConfig, pretrain

from conftest import ROOT


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "c"
    build(load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", ["source.n=32", "image_size=32"]), out, workers=1)
    return out


def _cfg(corpus, *over):
    return load_config(PretrainConfig, ROOT / "manifests/train/pretrain-scene.yaml",
                       [f"corpus={corpus}", "image_size=32", "batch_size=2", "encoder_steps=3", "decoder_steps=3",
                        "log_every=1", "reliance_samples=0", *over], kind="pretrain")


@pytest.mark.unit
def test_tensorboard_event_files_hold_the_metrics_rows(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    pretrain(_cfg(corpus, "log_with=[tensorboard]"), tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(tmp_path / "run" / "trackers" / "tensorboard" / "pretrain"))
    acc.Reload()
    for phase in ("encoder", "decoder"):
        logged = [(e.step, e.value) for e in acc.Scalars(f"{phase}/loss")]
        want = [(r["step"], r["loss"]) for r in rows if r["phase"] == phase]
        assert [s for s, _ in logged] == [s for s, _ in want]
        assert all(abs(a - b) < 1e-6 for (_, a), (_, b) in zip(logged, want))
    assert "encoder/token_accuracy" in acc.Tags()["scalars"]


@pytest.mark.unit
def test_wandb_runs_offline_into_the_run_folder(corpus, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is an optional tracker (pip install wandb)")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    pretrain(_cfg(corpus, "log_with=[wandb]", "encoder_steps=1", "decoder_steps=1"), tmp_path / "run")
    offline = list((tmp_path / "run" / "trackers").glob("wandb/offline-run-*"))
    assert len(offline) == 1 and any(offline[0].glob("*.wandb"))


@pytest.mark.unit
def test_an_unknown_tracker_is_a_config_error(corpus, tmp_path):
    with pytest.raises(ValueError, match="unknown tracker 'tensorbord'"):
        _cfg(corpus, "log_with=[tensorbord]")
