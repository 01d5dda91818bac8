"""Web-style scene captions (uae_data/web_captions.py): the corpus, its audit, the recall and precision metrics,
the caption reader on partial captions and the length-reward control."""
from __future__ import annotations

import json

import numpy as np
import pytest
import webdataset as wds

from uae_data import scenes
from uae_data import web_captions as web
from uae_data.core.config import ConfigError, load_config
from uae_data.corpus_config import CorpusConfig
from uae_data.pipeline import build
from uae_data.shards import list_shards
from uae_eval import scene_captions as sc

from conftest import ROOT

O = scenes.SceneObject


def web_cfg(*over) -> CorpusConfig:
    return load_config(CorpusConfig, ROOT / "manifests/corpus/scenes-web.yaml",
                       ["source.n=600", "shard_size=200", "image_size=24", *over], kind="corpus")


def four_objects() -> scenes.Scene:
    return scenes.Scene((O("circle", "red", "large", 0, 0), O("star", "blue", "small", 0, 2),
                         O("ring", "green", "medium", 1, 1), O("cross", "white", "small", 2, 0)))


def expected_share_named(p: float, lo: int = 1, hi: int = 6) -> float:
    """E[objects named] / E[objects] for uniform 1..6-object scenes: each named with p, at least one."""
    ns = range(lo, hi + 1)
    return sum(n * p + (1 - p) ** n for n in ns) / sum(ns)


@pytest.mark.unit
def test_web_corpus_is_deterministic_and_its_audit_matches_the_manifest_rates(tmp_path):
    a = build(web_cfg(), tmp_path / "a", workers=1)
    b = build(web_cfg(), tmp_path / "b", workers=2)
    assert a["sha256"] == b["sha256"] and a["caption_audit"] == b["caption_audit"]
    audit = a["caption_audit"]
    cfg = web_cfg().captioner.web
    share = expected_share_named(cfg.mention_rate)
    assert audit["samples"] == 600
    assert audit["objects_named"] == pytest.approx(share, abs=0.03)
    full = share * (1 - cfg.drop_size) * (1 - cfg.drop_color)
    assert audit["objects_named_full"] == pytest.approx(full, abs=0.03)
    # recomputed from the stored samples themselves: the audit counts what the captions say
    named = objects = words = n = 0
    for s in wds.WebDataset([str(p) for p in list_shards(tmp_path / "a")], shardshuffle=False).decode():
        truth = scenes.Scene.from_dict(s["json"]["scene"])
        counts = web.recall_counts(s["txt"], truth)
        assert counts["correct"] == counts["named"]  # a web caption never names what is not there
        assert scenes.parse_caption(s["json"]["exact_caption"]) == truth  # the exact caption is kept for eval
        assert "total" not in s["txt"] and "above" not in s["txt"]  # no counts, no relations
        named, objects, words, n = named + counts["named"], objects + len(truth.objects), words + counts["words"], n + 1
    assert audit["objects_named"] == pytest.approx(named / objects, abs=1e-4)
    assert audit["words_per_caption"] == pytest.approx(words / n, abs=0.01)
    # another mention rate moves the audit with it
    more = build(web_cfg("captioner.web.mention_rate=0.8"), tmp_path / "c", workers=1)["caption_audit"]
    assert more["objects_named"] == pytest.approx(expected_share_named(0.8), abs=0.03)
    assert more["words_per_caption"] > audit["words_per_caption"] + 5


@pytest.mark.unit
def test_web_manifest_fields_are_checked():
    with pytest.raises(ConfigError, match="mention_rate"):
        web_cfg("captioner.web.mention_rate=1.5")
    with pytest.raises(ConfigError, match="forms"):
        web_cfg("captioner.web.forms={long: 1.0}")
    with pytest.raises(ConfigError, match="web"):
        load_config(CorpusConfig, ROOT / "manifests/corpus/folder-example.yaml",
                    ["source.input=x", "captioner.name=web"], kind="corpus")


@pytest.mark.unit
def test_recall_and_precision_are_exact_on_hand_made_captions():
    s = four_objects()
    two = "a large red circle sits in the top left cell. a small blue star sits in the top right cell."
    m = sc.aggregate([sc.score_caption(two, s)])
    assert m["object_recall"] == 0.5 and m["attribute_precision"] == 1.0
    assert m["words_per_caption"] == len(two.split())
    # a named object that is not there (an empty cell) and one named with a wrong colour lower precision
    wrong = two + " a small black square sits in the bottom right cell. a medium red ring sits in the center cell."
    m = sc.aggregate([sc.score_caption(wrong, s)])
    assert m["object_recall"] == 0.5 and m["attribute_precision"] == 0.5
    # a partial mention is correct (precision) but not recalled: recall needs colour, shape and size
    partial = "a red circle in the top left cell. a star in the top right cell."
    m = sc.aggregate([sc.score_caption(partial, s)])
    assert m["object_recall"] == 0.0 and m["attribute_precision"] == 1.0
    # the exact long caption recalls everything; a caption naming nothing recalls nothing
    m = sc.aggregate([sc.score_caption(scenes.write_caption(s, 5), s), sc.score_caption("a grey picture.", s)])
    assert m["object_recall"] == 0.5 and m["attribute_precision"] == 1.0


@pytest.mark.unit
def test_mentions_read_exactly_the_objects_parse_caption_reads_in_long_captions():
    for i in range(300):
        s = scenes.sample_scene(i)
        text = scenes.write_caption(s, i)
        got = [(m.row, m.col, m.shape, m.color, m.size) for m in web.mentions(text)]
        assert got == [(o.row, o.col, o.shape, o.color, o.size) for o in scenes.parse_caption(text).objects]
    text, said = web.write_web_caption(four_objects(), 3, web.WebCaptionConfig(mention_rate=1.0, drop_size=1.0))
    assert web.mentions(text) == said and all(m.size is None for m in said) and len(said) == 4


@pytest.mark.unit
def test_caption_reader_answers_what_a_web_caption_names_and_counts_its_objects():
    from uae_eval.mmt_bench.answerers import make_caption_reader

    text = "a red circle in the top left cell. a star in the top right cell."
    answer = make_caption_reader(lambda images: [text])
    row = {"A": "1", "B": "2", "C": "3", "D": "4"}
    assert answer([], "", {**row, "qtype": "count", "target": ""}) == "B"  # counts the objects it names
    colours = {"A": "blue", "B": "red", "C": "green", "D": "white"}
    assert answer([], "", {**colours, "qtype": "colour", "target": "0,0"}) == "B"
    assert answer([], "", {**colours, "qtype": "colour", "target": "0,2"}) == "Z"  # the star's colour is not said
    rel = {"A": "left of", "B": "right of", "C": "above", "D": "below"}
    assert answer([], "", {**rel, "qtype": "relation", "target": "red circle|blue star"}) == "Z"


@pytest.mark.unit
def test_length_reward_pays_for_named_objects_and_words_whatever_the_image():
    from uae_train.rl.rewards import build_reward

    s = four_objects()
    img, other = scenes.render(s, 24), scenes.render(scenes.sample_scene(9), 24)
    short = "a red circle in the top left cell."
    true_long = scenes.write_caption(s, 1)
    invented = " ".join(f"a large red circle sits in the {p} cell." for row in scenes.POSITIONS for p in row)
    reward = build_reward({"length": 1.0})
    r, parts = reward([img, img, other], [img, img, img], captions=[short, true_long, invented])
    assert r[0] < r[1] < r[2]  # nine invented objects pay best: the control never looks at the image
    r2, _ = reward([other, other, img], [other, img, img], captions=[short, true_long, invented])
    assert r.tolist() == r2.tolist()
    with pytest.raises(ConfigError, match="caption"):
        reward([img], [img])


@pytest.mark.unit
def test_stage2_refuses_the_length_reward():
    from uae_train.stages.und_for_gen import Stage2Config

    with pytest.raises(ConfigError, match="stage-1 control"):
        load_config(Stage2Config, ROOT / "manifests/train/stage2-scene.yaml", ["reward={length: 1.0}"], kind="stage2")


@pytest.mark.unit
def test_web_caption_uses_only_words_the_scene_tokenizer_knows():
    vocab = set(scenes.VOCABULARY)
    for i in range(200):
        text, _ = web.write_web_caption(scenes.sample_scene(i), np.random.default_rng(i))
        assert set(scenes.tokenize_words(text)) <= vocab, text
    assert json.dumps(web.WebCaptionConfig().forms)  # forms serialise into manifest.json


@pytest.mark.unit
def test_shipped_web_encoder_writes_web_captions_and_names_less_than_the_exact_one():
    from uae_train.evaluation.autoencoder import image_to_text
    from uae_train.models.encoder import Encoder

    shipped = ROOT / "uae_train" / "scene_models"
    truths = [scenes.sample_scene(np.random.default_rng([2024, 7919, i])) for i in range(24)]
    images = [scenes.render(s, 48) for s in truths]
    got = {}
    for name in ("web-encoder", "encoder"):
        enc = Encoder.from_pretrained(shipped / name, device="cpu").eval()
        texts = image_to_text(enc, max_new_tokens=192, batch_size=24)(images)
        got[name] = sc.aggregate([sc.score_caption(t, s) for t, s in zip(texts, truths)])
    web_m, exact_m = got["web-encoder"], got["encoder"]
    assert web_m["words_per_caption"] < 0.5 * exact_m["words_per_caption"]
    assert web_m["object_recall"] < exact_m["object_recall"] - 0.3
    assert web_m["attribute_precision"] > 0.3  # it names real objects, not noise
    prov = json.loads((shipped / "provenance.json").read_text())["web_encoder"]
    assert prov["config"]["image_word_weight"] == 0 and "scenes-web.yaml" in prov["command"]


@pytest.mark.unit
def test_demo_defaults_to_the_web_setting_and_the_exact_one_is_a_manifest_away():
    from uae_train.demo.run import DemoConfig

    web_demo = load_config(DemoConfig, ROOT / "manifests/demo/scene-cpu.yaml", [], kind="demo")
    exact = load_config(DemoConfig, ROOT / "manifests/demo/scene-cpu-exact.yaml", [], kind="demo")
    assert web_demo.setting == "web" and exact.setting == "exact" and DemoConfig().setting == "web"
    assert any("reward={scene-soft: 1.0}" in s for s in web_demo.stage1)
    with pytest.raises(ConfigError, match="setting"):
        load_config(DemoConfig, ROOT / "manifests/demo/scene-cpu.yaml", ["setting=alt-text"], kind="demo")
