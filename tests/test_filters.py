"""Quality filters: size/aspect rules, pHash near-duplicates, and CLIP scoring of long captions
(sentence chunks under the model's context, never a silent truncation) with a tiny open_clip model
registered from a local config and loaded from a local checkpoint (no hub)."""
from __future__ import annotations

import json

import imagehash
import numpy as np
import pandas as pd
import pytest

from uae_data import scenes
from uae_data.clip_score import ClipScorer, count_tokens, split_caption
from uae_data.core.config import load_config
from uae_data.filters import ClipFilterConfig, FilterConfig, near_duplicates, size_reason
from uae_data.corpus_config import CorpusConfig
from uae_data.pipeline import build

from conftest import ROOT

LONG = " ".join(scenes.write_caption(scenes.sample_scene(i), np.random.default_rng(i)) for i in range(4))


@pytest.mark.unit
def test_size_rules_use_the_short_side_and_long_to_short_ratio():
    cfg = FilterConfig(min_side=16, max_aspect=5)
    assert size_reason(cfg, 1, 1) == "min side 1 < 16"
    assert size_reason(cfg, 400, 20) == "aspect 20 > 5"
    assert size_reason(cfg, 100, 20) is None and size_reason(FilterConfig(), 1, 1) is None


@pytest.mark.unit
def test_near_duplicates_keep_the_first_and_match_imagehash_distances():
    images = [scenes.render(scenes.sample_scene(i), 64) for i in range(12)]
    images.insert(5, images[2].copy())
    hashes = [imagehash.phash(im) for im in images]
    dups = near_duplicates(list(range(len(images))), [str(h) for h in hashes], threshold=4)
    assert dups[5] == (2, 0)
    for i, (first, dist) in dups.items():
        assert first < i and hashes[i] - hashes[first] == dist <= 4
    # order of the input lists does not matter, only the indices
    order = list(reversed(range(len(images))))
    assert near_duplicates(order, [str(hashes[i]) for i in order], threshold=4) == dups
    assert near_duplicates([0, 1], [str(hashes[0])] * 2, threshold=0) == {1: (0, 0)}


@pytest.mark.unit
def test_long_caption_is_split_into_chunks_that_each_fit_77_tokens():
    import open_clip

    tok = open_clip.get_tokenizer("ViT-B-32")  # bundled BPE vocabulary, no download
    assert count_tokens(tok, LONG) > 300
    chunks = split_caption(LONG, lambda t: count_tokens(tok, t) <= 77)
    assert len(chunks) >= 4 and all(count_tokens(tok, c) <= 77 for c in chunks)
    assert " ".join(chunks).split() == LONG.split()  # nothing dropped
    word = "word " * 200  # one sentence longer than the context is cut at word boundaries
    assert all(count_tokens(tok, c) <= 77 for c in split_caption(word, lambda t: count_tokens(tok, t) <= 77))


TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> dict:
    """A tiny open_clip model: config registered from a local JSON, weights saved to a local checkpoint."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("clip")
    config = folder / "tiny-clip-test.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-clip-test")
    torch.save(model.state_dict(), folder / "tiny.pt")
    return {"model": "tiny-clip-test", "pretrained": str(folder / "tiny.pt"), "model_config": str(config)}


@pytest.mark.unit
def test_clip_score_of_a_long_caption_is_the_mean_over_its_chunks(tiny_clip):
    scorer = ClipScorer(ClipFilterConfig(**tiny_clip, device="cpu"))
    image = scenes.render(scenes.sample_scene(0), 64)
    got = scorer([image, image], [LONG, "a red circle."])[0]
    chunks, _ = scorer._chunks(LONG)
    per_chunk = [scorer([image], [c])[0].score for c in chunks]
    assert got.chunks == len(chunks) > 1 and not got.truncated
    assert got.score == pytest.approx(float(np.mean(per_chunk)), abs=1e-5)
    trunc = ClipScorer(ClipFilterConfig(**tiny_clip, device="cpu", long_captions="truncate"))
    one = trunc([image], [LONG])[0]
    assert one.truncated and one.chunks == 1  # truncation is recorded, never silent


@pytest.mark.unit
def test_clip_filter_records_scores_and_drops_below_threshold(tmp_path, tiny_clip):
    base = ["source.n=6", "shard_size=3", "image_size=32", "captioner.name=scene",
            *[f"filters.clip.{k}={v}" for k, v in tiny_clip.items()]]
    cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", base, kind="corpus")
    build(cfg, tmp_path / "a", workers=1)
    from uae_data.shards import iter_samples

    scores = {s["key"]: s["meta"]["clip_score"] for s in iter_samples(tmp_path / "a")}
    assert len(scores) == 6 and all(-1 <= v <= 1 for v in scores.values())
    cut = float(np.median(list(scores.values())))
    cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", base + [f"filters.clip.min_score={cut}"])
    build(cfg, tmp_path / "b", workers=1)
    stats = pd.read_parquet(tmp_path / "b/stats.parquet").set_index("key")
    for key, score in scores.items():
        assert (stats.loc[key, "status"] == "dropped") == (score < cut)
        if score < cut:
            assert stats.loc[key, "reason"].startswith("clip score") and stats.loc[key, "stage"] == "clip"


@pytest.mark.unit
def test_missing_clip_checkpoint_is_a_one_line_model_error(tmp_path):
    from uae_data.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="nope.pt: CLIP checkpoint not found"):
        ClipScorer(ClipFilterConfig(model="ViT-B-32", pretrained=str(tmp_path / "nope.pt")))
