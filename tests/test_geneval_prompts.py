"""GenEval prompt files: the official set loads intact, bad lines are named, the scene set is reproducible
and every scene prompt is satisfiable by the oracle under the official rules."""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from uae_data.scenes import COLORS, SHAPES, SIZES, SceneObject, object_box
from uae_eval.geneval.prompts import (
    GENEVAL_TAGS, load_class_names, load_metadata, official_class_names_path, official_metadata_path,
    scene_class_names_path, scene_metadata_path,
)
from uae_eval.geneval.rules import RulesConfig, evaluate, filter_detections, relative_position
from uae_eval.geneval.scene_prompts import (
    OFFICIAL_COUNTS, make_plural, make_scene_metadata, metadata_jsonl, position_cell_pairs, scene_for_prompt,
    spec_detections, with_article,
)

ROOT = Path(__file__).resolve().parents[1]
COUNTS = [80, 99, 80, 94, 100, 100]


def _tag_counts(metas: list[dict]) -> list[int]:
    c = Counter(m["tag"] for m in metas)
    return [c[t] for t in GENEVAL_TAGS]


# ---------------------------------------------------------------- official files

@pytest.mark.unit
def test_geneval_tags_are_the_six_official_tags_in_order():
    assert GENEVAL_TAGS == ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@pytest.mark.unit
def test_official_metadata_loads_553_prompts_with_official_tag_counts():
    metas = load_metadata(official_metadata_path())
    assert len(metas) == 553 and _tag_counts(metas) == COUNTS
    assert [m["tag"] for m in metas] == [t for t, n in zip(GENEVAL_TAGS, COUNTS) for _ in range(n)]
    assert metas[0] == {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
    rels = Counter(m["include"][1]["position"][0] for m in metas if m["tag"] == "position")
    assert rels == {"left of": 19, "right of": 27, "above": 26, "below": 28}


@pytest.mark.unit
def test_shipped_official_files_are_the_checked_copies():
    import hashlib

    data = official_metadata_path().read_bytes()
    assert hashlib.md5(data).hexdigest() == "9a0ed515640279a48ed3380d90aec0ed"
    assert hashlib.md5(official_class_names_path().read_bytes()).hexdigest() == "7ea7783eb92bc46a58d6316e9196247b"


@pytest.mark.unit
def test_official_class_names_are_80_and_cover_every_official_prompt_class():
    names = load_class_names(official_class_names_path())
    assert len(names) == 80 and names[0] == "person"
    used = {item["class"] for m in load_metadata(official_metadata_path()) for item in m["include"]}
    assert used <= set(names)


def _write(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "bad.jsonl"
    p.write_text("".join(line + "\n" for line in lines))
    return p


GOOD = json.dumps({"tag": "single_object", "include": [{"class": "cat", "count": 1}], "prompt": "a photo of a cat"})


@pytest.mark.unit
@pytest.mark.parametrize("bad, field", [
    ('{"tag": "singles", "include": [{"class": "cat", "count": 1}], "prompt": "x"}', "tag"),
    ('{"tag": "counting", "include": [{"class": "cat", "count": "two"}], "prompt": "x"}', r"include\[0\]\.count"),
    ('{"tag": "counting", "include": [{"class": "cat", "count": 0}], "prompt": "x"}', r"include\[0\]\.count"),
    ('{"tag": "colors", "include": [{"count": 1}], "prompt": "x"}', r"include\[0\]\.class"),
    ('{"tag": "colors", "include": [{"class": "cat", "count": 1, "color": 3}], "prompt": "x"}', r"include\[0\]\.color"),
    ('{"tag": "position", "include": [{"class": "a", "count": 1}, {"class": "b", "count": 1, "position": ["near", 0]}], '
     '"prompt": "x"}', r"include\[1\]\.position"),
    ('{"tag": "position", "include": [{"class": "a", "count": 1}, {"class": "b", "count": 1, "position": ["above", 1]}], '
     '"prompt": "x"}', r"include\[1\]\.position"),
    ('{"tag": "colors", "include": [], "prompt": "x"}', "include"),
    ('{"tag": "colors", "include": [{"class": "cat", "count": 1}]}', "prompt"),
    ('{"tag": "counting", "include": [{"class": "cat", "count": 2}], "exclude": {"class": "cat"}, "prompt": "x"}', "exclude"),
    ('{"tag": "colors", "include": [{"class": "cat", "count": 1, "colour": "red"}], "prompt": "x"}', "colour"),
    ('{"tag": "colors", "include": [', "invalid JSON"),
    ("", "blank line"),
])
def test_bad_metadata_line_raises_value_error_naming_file_line_and_field(tmp_path, bad, field):
    path = _write(tmp_path, GOOD, GOOD, bad)
    with pytest.raises(ValueError, match=rf"bad\.jsonl: line 3: .*{field}"):
        load_metadata(path)


@pytest.mark.unit
def test_missing_metadata_or_names_file_is_a_one_line_value_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_metadata(tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="not found"):
        load_class_names(tmp_path / "nope.txt")


@pytest.mark.unit
def test_class_names_reject_duplicates_and_blank_lines(tmp_path):
    (tmp_path / "dup.txt").write_text("cat\ndog\ncat\n")
    with pytest.raises(ValueError, match="'cat' appears twice"):
        load_class_names(tmp_path / "dup.txt")
    (tmp_path / "blank.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ValueError, match="line 2"):
        load_class_names(tmp_path / "blank.txt")


# ---------------------------------------------------------------- scene prompt set

@pytest.mark.unit
def test_scene_metadata_has_553_prompts_with_official_tag_counts_and_scene_vocabulary():
    metas = load_metadata(scene_metadata_path())
    assert len(metas) == 553 and _tag_counts(metas) == COUNTS == list(OFFICIAL_COUNTS.values())
    for m in metas:
        for item in m["include"] + m.get("exclude", []):
            assert item["class"] in SHAPES
            assert item.get("color", "red") in COLORS
    assert load_class_names(scene_class_names_path()) == list(SHAPES)


@pytest.mark.unit
def test_scene_metadata_mirrors_official_templates_per_tag():
    metas = load_metadata(scene_metadata_path())
    for m in metas:
        inc = m["include"]
        if m["tag"] == "single_object":
            assert m["prompt"] == f"a photo of {with_article(inc[0]['class'])}"
        elif m["tag"] == "two_object":
            assert inc[0]["class"] != inc[1]["class"]
            assert m["prompt"] == f"a photo of {with_article(inc[0]['class'])} and {with_article(inc[1]['class'])}"
        elif m["tag"] == "counting":
            n = inc[0]["count"]
            assert n in (2, 3, 4) and m["exclude"] == [{"class": inc[0]["class"], "count": n + 1}]
            assert m["prompt"] == f"a photo of {['two', 'three', 'four'][n - 2]} {make_plural(inc[0]['class'])}"
        elif m["tag"] == "colors":
            assert m["prompt"] == f"a photo of {with_article(inc[0]['color'])} {inc[0]['class']}"
        elif m["tag"] == "position":
            rel, ref = inc[1]["position"]
            assert ref == 0 and inc[0]["class"] != inc[1]["class"]
            assert m["prompt"] == f"a photo of {with_article(inc[1]['class'])} {rel} {with_article(inc[0]['class'])}"
        else:
            assert inc[0]["color"] != inc[1]["color"] and inc[0]["class"] != inc[1]["class"]
            assert m["prompt"] == (f"a photo of {with_article(inc[0]['color'])} {inc[0]['class']} and "
                                   f"{with_article(inc[1]['color'])} {inc[1]['class']}")
    assert {m["include"][1]["position"][0] for m in metas if m["tag"] == "position"} == {"left of", "right of", "above", "below"}


@pytest.mark.unit
def test_articles_and_plurals_follow_official_helpers():
    assert with_article("orange") == "an orange" and with_article("ring") == "a ring"
    assert make_plural("cross") == "crosses" and make_plural("star") == "stars"


@pytest.mark.unit
def test_shipped_scene_metadata_is_byte_identical_to_seed_0_regeneration():
    assert metadata_jsonl(make_scene_metadata(0)) == scene_metadata_path().read_text(encoding="utf-8")
    assert metadata_jsonl(make_scene_metadata(1)) != metadata_jsonl(make_scene_metadata(0))


@pytest.mark.integration
def test_make_scene_geneval_script_regenerates_the_shipped_files_byte_for_byte(tmp_path):
    out = tmp_path / "scene_metadata.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "tools/make_scene_geneval.py"), "--seed", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == scene_metadata_path().read_bytes()
    assert (tmp_path / "scene_object_names.txt").read_bytes() == scene_class_names_path().read_bytes()


# ---------------------------------------------------------------- oracle scenes

@pytest.mark.unit
@pytest.mark.parametrize("image_size", [32, 64])
def test_oracle_scene_for_every_scene_prompt_is_correct_under_official_rules(image_size):
    cfg = RulesConfig()
    failures = []
    for i, meta in enumerate(load_metadata(scene_metadata_path())):
        scene = scene_for_prompt(meta, seed=i)
        kept = filter_detections(meta, spec_detections(scene, image_size), cfg)
        ok, reason = evaluate(meta, kept, cfg)
        if not ok:
            failures.append((i, meta["prompt"], reason))
    assert failures == []


@pytest.mark.unit
def test_oracle_counting_scene_has_exactly_n_objects_of_the_class():
    meta = {"tag": "counting", "include": [{"class": "star", "count": 4}], "exclude": [{"class": "star", "count": 5}],
            "prompt": "a photo of four stars"}
    for seed in range(20):
        assert [o.shape for o in scene_for_prompt(meta, seed).objects] == ["star"] * 4


@pytest.mark.unit
def test_oracle_scene_is_reproducible_from_its_seed_and_varies_across_seeds():
    meta = load_metadata(scene_metadata_path())[400]
    assert scene_for_prompt(meta, 7) == scene_for_prompt(meta, 7)
    assert len({scene_for_prompt(meta, s) for s in range(10)}) > 1


@pytest.mark.unit
def test_oracle_rejects_prompts_outside_the_scene_world():
    with pytest.raises(ValueError, match="not a scene shape"):
        scene_for_prompt(load_metadata(official_metadata_path())[0], 0)
    too_many = {"tag": "counting", "include": [{"class": "star", "count": 10}], "prompt": "x"}
    with pytest.raises(ValueError, match="at most 9"):
        scene_for_prompt(too_many, 0)


@pytest.mark.unit
def test_position_cell_pairs_hold_for_every_shape_and_size_at_small_and_default_image_sizes():
    shape_pairs = list(zip(SHAPES, SHAPES[1:] + SHAPES[:1]))
    for image_size, rel in itertools.product((32, 64), ("left of", "right of", "above", "below")):
        for (a, b), (sa, sb), (za, zb) in itertools.product(position_cell_pairs(rel), shape_pairs,
                                                            itertools.product(SIZES, SIZES)):
            box_a = object_box(SceneObject(sa, "red", za, *a), image_size)
            box_b = object_box(SceneObject(sb, "red", zb, *b), image_size)
            assert rel in relative_position(box_a, box_b), (image_size, rel, a, b, sa, sb, za, zb)


@pytest.mark.unit
def test_spec_detections_report_shape_colour_drawn_box_and_full_score():
    meta = {"tag": "colors", "include": [{"class": "ring", "count": 1, "color": "pink"}], "prompt": "a photo of a pink ring"}
    scene = scene_for_prompt(meta, 3)
    (d,) = spec_detections(scene, 64, masks=True)
    (o,) = scene.objects
    assert (d.label, d.color, d.score, d.box) == ("ring", "pink", 1.0, tuple(map(float, object_box(o, 64))))
    assert d.mask.shape == (64, 64) and d.mask.any()
