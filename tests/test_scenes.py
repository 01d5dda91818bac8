"""The scene world's spec, renders and captions: determinism, exact inverses, vocabulary coverage."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from uae_data import scenes
from uae_data.scenes import (
    BACKGROUND, COLORS, POSITIONS, SHAPES, SIZES, VOCABULARY, Scene, SceneObject, object_box, object_mask,
    parse_caption, render, render_array, sample_scene, scene_vocabulary, tokenize_words, write_caption,
)

pytestmark = pytest.mark.unit


def _word_count(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def captioned() -> list[tuple[Scene, str]]:
    """2,000 seeded scenes (1-6 objects) with their captions, shared by the caption tests."""
    return [(s, write_caption(s, seed)) for seed in range(2000) for s in [sample_scene(seed)]]


def test_palette_has_genevals_ten_colours_in_order_and_a_distant_background():
    assert list(COLORS) == ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
    palette = np.array([*COLORS.values(), BACKGROUND], float)
    dists = np.linalg.norm(palette[:, None] - palette[None], axis=-1)
    assert dists[~np.eye(len(palette), dtype=bool)].min() >= 100
    assert len(SHAPES) >= 6 and list(SIZES) == ["small", "medium", "large"]


def test_sample_scene_is_deterministic_per_seed_and_differs_across_seeds():
    assert sample_scene(7) == sample_scene(7)
    assert sample_scene(np.random.default_rng(7)) == sample_scene(np.random.default_rng(7))
    assert len({sample_scene(seed) for seed in range(50)}) >= 45


def test_sample_scene_respects_object_count_bounds_and_spans_them():
    counts = {len(sample_scene(seed).objects) for seed in range(300)}
    assert counts == {1, 2, 3, 4, 5, 6}
    rng = np.random.default_rng(0)
    assert all(len(sample_scene(rng, 3, 3).objects) == 3 for _ in range(20))
    with pytest.raises(ValueError, match="max_objects"):
        sample_scene(0, 4, 2)


def test_scene_is_canonical_sorted_hashable_and_order_independent():
    a = SceneObject("circle", "red", "small", 2, 2)
    b = SceneObject("star", "blue", "large", 0, 1)
    assert Scene((a, b)) == Scene((b, a))
    assert Scene((a, b)).objects == (b, a)
    assert len({Scene((a, b)), Scene((b, a))}) == 1


def test_to_dict_from_dict_round_trips_through_json():
    for seed in range(100):
        s = sample_scene(seed)
        assert Scene.from_dict(json.loads(json.dumps(s.to_dict()))) == s


@pytest.mark.parametrize("kwargs, message", [
    (dict(shape="blob", color="red", size="small", row=0, col=0), "unknown shape"),
    (dict(shape="circle", color="teal", size="small", row=0, col=0), "unknown color"),
    (dict(shape="circle", color="red", size="huge", row=0, col=0), "unknown size"),
    (dict(shape="circle", color="red", size="small", row=3, col=0), "row and col must be"),
    (dict(shape="circle", color="red", size="small", row=0, col=-1), "row and col must be"),
    (dict(shape="circle", color="red", size="small", row=0.0, col=0), "row must be"),
])
def test_scene_object_rejects_invalid_fields_with_clear_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SceneObject(**kwargs)


def test_scene_rejects_two_objects_in_one_cell_and_bad_dicts():
    with pytest.raises(ValueError, match="two objects in the center cell"):
        Scene((SceneObject("circle", "red", "small", 1, 1), SceneObject("star", "blue", "large", 1, 1)))
    with pytest.raises(ValueError, match="not a scene dict"):
        Scene.from_dict({"objects": [{"shape": "circle"}]})
    with pytest.raises(ValueError, match="not a scene dict"):
        Scene.from_dict({"things": []})


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_render_is_deterministic_rgb_and_uses_only_palette_colours(size):
    for seed in range(20):
        s = sample_scene(seed)
        img = render(s, size)
        assert img.mode == "RGB" and img.size == (size, size)
        arr = np.asarray(img)
        assert np.array_equal(arr, render_array(s, size))
        colours = {tuple(int(v) for v in c) for c in np.unique(arr.reshape(-1, 3), axis=0)}
        assert colours == {BACKGROUND, *(COLORS[o.color] for o in s.objects)}


@pytest.mark.parametrize("size", [32, 64, 100])
def test_object_box_and_mask_match_the_drawn_pixels(size):
    for shape in SHAPES:
        for obj_size in SIZES:
            for row, col in [(0, 0), (1, 1), (2, 1)]:
                obj = SceneObject(shape, "blue", obj_size, row, col)
                drawn = (render_array(Scene((obj,)), size) == COLORS["blue"]).all(-1)
                assert np.array_equal(drawn, object_mask(obj, size))
                ys, xs = np.nonzero(drawn)
                assert object_box(obj, size) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_render_draws_objects_inside_their_own_cell_without_touching_neighbours():
    for size in (32, 64):
        cell = size / 3
        for row in range(3):
            for col in range(3):
                x1, y1, x2, y2 = object_box(SceneObject("square", "red", "large", row, col), size)
                assert col * cell < x1 and x2 < (col + 1) * cell + 1 and row * cell < y1 and y2 < (row + 1) * cell + 1


def test_write_caption_is_deterministic_per_seed_and_paraphrases_across_seeds():
    s = sample_scene(3)
    assert write_caption(s, 11) == write_caption(s, 11)
    assert write_caption(s, np.random.default_rng(5)) == write_caption(s, np.random.default_rng(5))
    assert len({write_caption(s, seed) for seed in range(30)}) >= 20


def test_captions_are_40_to_150_lower_case_words_for_1_to_6_objects(captioned):
    for s, text in captioned:
        assert 40 <= _word_count(text) <= 150, (len(s.objects), _word_count(text), text)
        assert text == text.lower() and re.fullmatch(r"[a-z ,.:]+", text)
    for n in (1, 6):  # the extremes, many times over
        for seed in range(300):
            s = sample_scene(seed, n, n)
            assert 40 <= _word_count(write_caption(s, seed)) <= 150


def test_parse_caption_inverts_write_caption_on_2000_scenes(captioned):
    for s, text in captioned:
        assert parse_caption(text) == s, text


def test_caption_mentions_every_attribute_counts_and_relations():
    s = Scene((SceneObject("circle", "red", "small", 0, 0), SceneObject("star", "blue", "large", 0, 2),
               SceneObject("circle", "green", "medium", 2, 1)))
    for seed in range(20):
        text = write_caption(s, seed)
        for o in s.objects:
            assert f"{o.size} {o.color} {o.shape}" in text and f"{POSITIONS[o.row][o.col]} cell" in text
        assert "three objects" in text and "two circles and one star" in text
        assert re.search(r"(to the (left|right) of|above|below)", text)


@pytest.mark.parametrize("group", ["_OPENINGS", "_STATEMENTS", "_COUNTS", "_COLOR_COUNTS", "_RELATION_SENTENCES",
                                   "_CLOSINGS", "_FILLERS"])
def test_every_caption_template_is_exercised(captioned, group):
    templates = getattr(scenes, group)
    assert len(templates) >= 3
    corpus = "\n".join(text for _, text in captioned)
    for template in templates:
        pattern = re.escape(template).replace(r"\{", "{").replace(r"\}", "}")
        pattern = re.sub(r"\{\w+\}", r"[a-z ,]+?", pattern)
        assert re.search(pattern, corpus), template


def test_every_caption_token_is_in_the_vocabulary(captioned):
    vocab = set(VOCABULARY)
    assert VOCABULARY == scene_vocabulary() and len(vocab) == len(VOCABULARY)
    seen = set()
    for _, text in captioned:
        seen.update(tokenize_words(text))
    assert seen <= vocab, seen - vocab
    assert {*SHAPES, *COLORS, *SIZES} <= seen


def test_tokenize_words_splits_punctuation_and_lowercases():
    tokens = ["a", "red", "circle", ",", "two", "stars", ":", "done", "."]
    assert tokenize_words("A red circle, two Stars: done.") == tokens


def test_parse_caption_tolerates_duplicates_capitals_hyphens_and_chatter():
    text = ("Sure! Here is the scene. A Small Red Circle sits in the top-left cell. "
            "a small red circle sits in the top left cell. the red circle is above the blue star. "
            "in the bottom right cell there is a large blue star. a medium green ring occupies the top left cell")
    assert parse_caption(text) == Scene((SceneObject("circle", "red", "small", 0, 0),
                                         SceneObject("star", "blue", "large", 2, 2)))


@pytest.mark.parametrize("text", ["", "hello world", "a red circle somewhere",
                                  "the blue square is left of the red circle."])
def test_parse_caption_raises_value_error_on_text_without_statements(text):
    with pytest.raises(ValueError, match="no object statement"):
        parse_caption(text)


def test_write_caption_refuses_an_empty_scene():
    with pytest.raises(ValueError, match="empty scene"):
        write_caption(Scene(()), 0)


def test_captions_disambiguate_identical_looking_objects_in_relations():
    twins = Scene(tuple(SceneObject("square", "red", "small", r, c) for r, c in [(0, 0), (1, 1), (2, 2)]))
    for seed in range(10):
        text = write_caption(twins, seed)
        assert parse_caption(text) == twins
        for sentence in text.split(". "):
            if re.search(r"\b(above|below|left of|right of)\b", sentence):
                assert sentence.count(" cell") == 2, sentence
