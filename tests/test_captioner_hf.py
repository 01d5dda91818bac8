"""`hf` captioner: a real VLM class (Qwen2.5-VL) built tiny from config with a local tokenizer, no hub.

uae_data never imports uae_train; only this test uses `Encoder.tiny(...).save_pretrained` to make
the model folder a user would otherwise pass by name or path.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from uae_data import scenes
from uae_data.captioners import CaptionerConfig, build_captioner
from uae_data.core.errors import ModelLoadError
from uae_data.sources import SourceItem

from tests.served_photos import CASES, TEST_OPTS, read_corpus, write_url_list


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    from uae_train.models.encoder import Encoder

    return Encoder.tiny(image_size=64, seed=0).save_pretrained(tmp_path_factory.mktemp("vlm") / "tiny-qwen2.5-vl")


def items(n: int) -> list[SourceItem]:
    return [SourceItem(index=i, image=scenes.render(scenes.sample_scene(i), 64), caption=f"short {i}") for i in range(n)]


@pytest.mark.unit
def test_hf_captioner_flags_captions_that_hit_max_new_tokens(tiny_vlm):
    cap = build_captioner(CaptionerConfig(name="hf", model=str(tiny_vlm), max_new_tokens=5, batch_size=2,
                                          options={"device": "cpu"}), seed=0)
    out = cap(items(3))
    assert len(out) == 3 and all(isinstance(c.text, str) and c.model == str(tiny_vlm) for c in out)
    assert all(c.truncated for c in out if len(c.text.split()) >= 5)
    again = cap(items(3))
    assert [c.text for c in again] == [c.text for c in out]  # greedy: reproducible
    cap.stops = set(range(len(cap.processor.tokenizer)))  # every token ends the caption: nothing is truncated
    stopped = cap(items(2))
    assert [(c.text, c.truncated) for c in stopped] == [("", False), ("", False)]


@pytest.mark.unit
def test_hf_captioner_bad_model_path_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="empty: not a model folder"):
        build_captioner(CaptionerConfig(name="hf", model=str(tmp_path / "empty")), seed=0)


@pytest.mark.integration
def test_cli_urls_build_recaptioned_by_tiny_vlm(www, tmp_path, uae, tiny_vlm):
    csv = write_url_list(tmp_path / "urls.csv", www[1])
    out = tmp_path / "c"
    r = uae("build-corpus", "manifests/corpus/urls-example.yaml", *TEST_OPTS, "captioner.max_new_tokens=6",
            "--source", "urls", "--input", str(csv), "--captioner", "hf", "--caption-model", str(tiny_vlm),
            "--workers", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    stats = pd.read_parquet(out / "stats.parquet")
    assert len(stats) == len(CASES) and (stats.status == "ok").sum() == 4
    captions = {c: cap for _, c, *_ in CASES for cap in [c]}
    samples = read_corpus(out)
    assert len(samples) == 4
    for s in samples:
        meta = s["json"]
        assert meta["caption_model"] == str(tiny_vlm) and isinstance(meta["caption_truncated"], bool)
        assert meta["short_caption"] in captions and meta["caption_words"] == len(s["txt"].split())
    assert json.loads((out / "manifest.json").read_text())["config"]["captioner"]["model"] == str(tiny_vlm)
