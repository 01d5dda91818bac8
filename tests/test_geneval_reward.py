"""GenEval as an in-process reward (issue #21): prompts in GenEval's templates read back to their metadata,
the reward is GenEval's own decision (strict) plus the share of passing items (partial), and stage 2 can
paint from each image's short prompt and be rewarded by it (Flow-GRPO's GenEval task), with no server."""
from __future__ import annotations

import json

import pytest

from uae_data import scenes
from uae_data.core.errors import ConfigError
from uae_data.short_captions import short_caption
from uae_eval.geneval.generators import build_generator
from uae_eval.geneval.prompts import (load_class_names, load_metadata, official_class_names_path,
                                      official_metadata_path, prompt_metadata, scene_class_names_path,
                                      scene_metadata_path)
from uae_eval.geneval.reward import GenEvalReward
from uae_train.rl.rewards import build_reward


@pytest.mark.parametrize("metadata,names", [(official_metadata_path, official_class_names_path),
                                            (scene_metadata_path, scene_class_names_path)])
def test_every_prompt_reads_back_to_its_metadata(metadata, names):
    classes = load_class_names(names())
    for meta in load_metadata(metadata()):
        assert prompt_metadata(meta["prompt"], classes) == meta
    assert prompt_metadata("a large red cross sits in the top left cell.", classes) is None
    assert prompt_metadata("a photo of a red cross and a ring", classes) is None  # colour on one side only


def test_short_captions_of_the_corpus_are_geneval_prompts():
    for seed in range(200):
        scene = scenes.sample_scene(seed)
        meta = prompt_metadata(short_caption(scene, seed), scenes.SHAPES)
        assert meta is not None and meta["tag"] in {"single_object", "two_object", "counting", "colors", "position", "color_attr"}


def test_reward_is_the_geneval_decision_and_the_share_of_items():
    metas = load_metadata(scene_metadata_path())[::50]
    oracle = build_generator("oracle", image_size=64)(metas, list(range(len(metas))))
    noise = build_generator("noise", image_size=64)(metas, list(range(len(metas))))
    reward = GenEvalReward()  # scene detector + exact colours
    assert reward(oracle, metas).tolist() == [1.0] * len(metas)
    assert reward.parts["partial"] == [1.0] * len(metas)
    assert reward(noise, metas).sum() == 0
    counting = [m for m in metas if m["tag"] == "counting"][0]
    # an object-free image fails the include item but respects the exclude item: partial 1/2
    reward(noise[:1], [counting])
    assert reward.parts["partial"] == [0.5] and reward.parts["strict"] == [0.0]
    with pytest.raises(ValueError, match="one metadata row per image"):
        reward(oracle, metas[:-1])


def test_reward_terms_read_the_prompts():
    metas = load_metadata(scene_metadata_path())[::100]
    images = build_generator("oracle", image_size=64)(metas, list(range(len(metas))))
    reward = build_reward({"geneval": 1.0, "geneval-partial": 0.5})
    r, parts = reward(images, images, None, [m["prompt"] for m in metas])
    assert r.tolist() == [1.5] * len(metas) and set(parts) == {"geneval", "geneval-partial"}
    wrong, _ = reward(images, images, None, [metas[(i + 1) % len(metas)]["prompt"] for i in range(len(metas))])
    assert wrong.mean() < r.mean()
    with pytest.raises(ConfigError, match="needs the prompt of every painting"):
        reward(images, images)
    with pytest.raises(ConfigError, match="is not a GenEval-template prompt"):
        reward(images[:1], images[:1], None, ["a large red cross sits in the top left cell."])
