"""GenEval rules against hand-worked cases: filtering, every official reason string, positions, aggregation."""
from __future__ import annotations

import pytest

from uae_data.detection import Detection
from uae_eval.geneval.rules import (
    RulesConfig, box_iou_plus_one, evaluate, filter_detections, image_details, relative_position, summarize,
)

CFG = RulesConfig()
SINGLE = {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}
TWO = {"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1}],
       "prompt": "a photo of a cat and a dog"}
COUNT3 = {"tag": "counting", "include": [{"class": "cup", "count": 3}], "exclude": [{"class": "cup", "count": 4}],
          "prompt": "a photo of three cups"}
RED_CAR = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"}
ATTR = {"tag": "color_attr", "include": [{"class": "car", "count": 1, "color": "red"},
                                         {"class": "bus", "count": 1, "color": "blue"}],
        "prompt": "a photo of a red car and a blue bus"}


def pos(rel: str) -> dict:
    """'a photo of a cat <rel> a dog': include[0] is the reference dog, include[1] the cat."""
    return {"tag": "position", "include": [{"class": "dog", "count": 1},
                                           {"class": "cat", "count": 1, "position": [rel, 0]}],
            "prompt": f"a photo of a cat {rel} a dog"}


def det(label: str, score: float = 0.95, box=(0, 0, 10, 10), color: str | None = None) -> Detection:
    return Detection(label, score, tuple(float(v) for v in box), color=color)


def judge(meta: dict, dets: list[Detection], cfg: RulesConfig = CFG) -> tuple[bool, str]:
    return evaluate(meta, filter_detections(meta, dets, cfg), cfg)


# ---------------------------------------------------------------- config and filtering

@pytest.mark.unit
def test_rules_config_defaults_are_the_official_options():
    assert (CFG.threshold, CFG.counting_threshold, CFG.max_objects, CFG.nms_threshold, CFG.position_threshold) == (
        0.3, 0.9, 16, 1.0, 0.1)
    assert CFG.is_official() and not RulesConfig(threshold=0.5).is_official()


@pytest.mark.unit
def test_rules_config_validate_rejects_out_of_range_values():
    for bad in (RulesConfig(threshold=1.5), RulesConfig(max_objects=0), RulesConfig(nms_threshold=0),
                RulesConfig(position_threshold=-0.1)):
        with pytest.raises(ValueError):
            bad.validate()


@pytest.mark.unit
def test_score_exactly_at_threshold_is_dropped_and_just_above_is_kept():
    kept = filter_detections(SINGLE, [det("bench", 0.3), det("bench", 0.3001), det("cat", 0.3)], CFG)
    assert [d.score for d in kept["bench"]] == [0.3001]
    assert "cat" not in kept  # classes left empty are absent, as official deletes them


@pytest.mark.unit
def test_counting_prompts_use_the_09_bar_for_every_class():
    dets = [det("cup", 0.9), det("cup", 0.9001), det("dog", 0.8), det("dog", 0.95)]
    kept = filter_detections(COUNT3, dets, CFG)
    assert [d.score for d in kept["cup"]] == [0.9001]
    assert [d.score for d in kept["dog"]] == [0.95]
    # the same detections on a non-counting prompt pass the 0.3 bar
    assert len(filter_detections(SINGLE, dets, CFG)["dog"]) == 2


@pytest.mark.unit
def test_filter_sorts_by_score_and_keeps_only_the_best_16_per_class():
    scores = [0.31 + 0.03 * i for i in range(20)]
    dets = [det("cup", s) for s in scores] + [det("cat", 0.5)]
    kept = filter_detections(SINGLE, dets, CFG)
    assert [d.score for d in kept["cup"]] == sorted(scores, reverse=True)[:16]
    assert len(kept["cat"]) == 1


@pytest.mark.unit
def test_nms_is_off_at_1_and_uses_the_plus_one_pixel_area_below_1():
    a, b, far = det("cup", 0.9, (0, 0, 9, 9)), det("cup", 0.8, (5, 0, 14, 9)), det("cup", 0.7, (50, 50, 59, 59))
    # official IoU: areas 10x10, intersection 5x10 -> 50/150 = 1/3 (continuous IoU would be 36/126 = 0.286)
    assert box_iou_plus_one(a.box, b.box) == pytest.approx(1 / 3)
    assert len(filter_detections(SINGLE, [a, a, b, far], CFG)["cup"]) == 4  # off: even duplicates survive
    kept = filter_detections(SINGLE, [a, b, far], RulesConfig(nms_threshold=0.3))
    assert [d.score for d in kept["cup"]] == [0.9, 0.7]  # 1/3 >= 0.3: b suppressed by a
    kept = filter_detections(SINGLE, [a, b, far], RulesConfig(nms_threshold=0.34))
    assert [d.score for d in kept["cup"]] == [0.9, 0.8, 0.7]


@pytest.mark.unit
def test_image_details_lists_kept_boxes_with_score_per_class():
    kept = filter_detections(SINGLE, [det("cup", 0.5, (1, 2, 3, 4)), det("cup", 0.9, (5, 6, 7, 8)), det("cat", 0.1)], CFG)
    assert image_details(kept) == {"cup": [[5.0, 6.0, 7.0, 8.0, 0.9], [1.0, 2.0, 3.0, 4.0, 0.5]]}


# ---------------------------------------------------------------- presence and counting

@pytest.mark.unit
def test_present_object_is_correct_with_empty_reason_and_extras_are_fine():
    assert judge(SINGLE, [det("bench"), det("cat"), det("bench", 0.5)]) == (True, "")
    assert judge(TWO, [det("dog"), det("cat"), det("car")]) == (True, "")


@pytest.mark.unit
def test_missing_object_reason_counts_what_was_found():
    assert judge(SINGLE, [det("cat")]) == (False, "expected bench>=1, found 0")
    assert judge(SINGLE, [det("bench", 0.2)]) == (False, "expected bench>=1, found 0")
    assert judge(TWO, [det("dog")]) == (False, "expected cat>=1, found 0")
    assert judge(TWO, []) == (False, "expected cat>=1, found 0\nexpected dog>=1, found 0")


@pytest.mark.unit
def test_counting_needs_exactly_n_because_of_the_exclude_clause():
    assert judge(COUNT3, [det("cup", 0.95)] * 3) == (True, "")
    assert judge(COUNT3, [det("cup", 0.95)] * 2) == (False, "expected cup>=3, found 2")
    assert judge(COUNT3, [det("cup", 0.95)] * 4) == (False, "expected cup<4, found 4")
    assert judge(COUNT3, [det("cup", 0.95)] * 5) == (False, "expected cup<4, found 5")
    # a fourth cup below the 0.9 counting bar is not counted
    assert judge(COUNT3, [det("cup", 0.95)] * 3 + [det("cup", 0.9)]) == (True, "")


@pytest.mark.unit
def test_exclude_counts_all_kept_detections_up_to_max_objects():
    assert judge(COUNT3, [det("cup", 0.95)] * 20) == (False, "expected cup<4, found 16")


# ---------------------------------------------------------------- colour

@pytest.mark.unit
def test_colour_right_is_correct():
    assert judge(RED_CAR, [det("car", color="red")]) == (True, "")


@pytest.mark.unit
def test_colour_wrong_reason_lists_found_colours():
    assert judge(RED_CAR, [det("car", color="blue")]) == (False, "expected red car>=1, found 0 red; and 1 blue")


@pytest.mark.unit
def test_colour_none_counts_as_not_the_target_colour():
    assert judge(RED_CAR, [det("car", color=None)]) == (False, "expected red car>=1, found 0 red; and ")


@pytest.mark.unit
def test_colour_is_judged_on_the_top_detection_only():
    assert judge(RED_CAR, [det("car", 0.9, color="red"), det("car", 0.5, color="blue")]) == (True, "")
    assert judge(RED_CAR, [det("car", 0.5, color="red"), det("car", 0.9, color="blue")]) == (
        False, "expected red car>=1, found 0 red; and 1 blue")


@pytest.mark.unit
def test_colour_reason_lists_colours_in_official_order_for_counts_above_one():
    meta = {"tag": "colors", "include": [{"class": "car", "count": 2, "color": "red"}], "prompt": "two red cars"}
    dets = [det("car", 0.9, color="blue"), det("car", 0.8, color="red"), det("car", 0.7, color="red")]
    assert judge(meta, dets) == (False, "expected red car>=2, found 1 red; and 1 red, 1 blue")


@pytest.mark.unit
def test_colour_attribution_reports_each_failing_item():
    assert judge(ATTR, [det("car", color="red"), det("bus", color="blue")]) == (True, "")
    assert judge(ATTR, [det("car", color="blue"), det("bus", color="red")]) == (
        False, "expected red car>=1, found 0 red; and 1 blue\nexpected blue bus>=1, found 0 blue; and 1 red")
    assert judge(ATTR, [det("car", color="red")]) == (False, "expected bus>=1, found 0")


# ---------------------------------------------------------------- relative position

B = (20, 20, 30, 30)  # reference box, centre (25, 25), size 10 x 10


@pytest.mark.unit
@pytest.mark.parametrize("box_a, relation", [
    ((0, 20, 10, 30), "left of"), ((40, 20, 50, 30), "right of"), ((20, 0, 30, 10), "above"), ((20, 40, 30, 50), "below"),
])
def test_relative_position_gives_each_relation_on_its_axis(box_a, relation):
    assert relative_position(box_a, B, 0.1) == {relation}


@pytest.mark.unit
def test_relative_position_diagonal_gives_two_relations_and_steep_diagonal_one():
    assert relative_position((0, 0, 10, 10), B) == {"left of", "above"}
    assert relative_position((40, 40, 50, 50), B) == {"right of", "below"}
    # offset (-10, -40): x shrinks to -8 of |offset| 41.2 -> -0.19, y to -38 -> -0.92
    assert relative_position((10, -20, 20, -10), B) == {"above"}


@pytest.mark.unit
def test_relative_position_offset_within_the_size_margin_gives_no_relation():
    # sizes 10 + 10 -> margin 0.1 * 20 = 2 pixels per axis
    assert relative_position((18.5, 20, 28.5, 30), B) == set()  # offset -1.5: shrinks to 0
    assert relative_position((21, 20, 31, 30), B) == set()  # offset 1
    # offset -4: (4 - 2) / 4 = 0.5 exactly, not < -0.5; offset -4.01 gives it
    assert relative_position((16, 20, 26, 30), B) == set()
    assert relative_position((15.99, 20, 25.99, 30), B) == {"left of"}


@pytest.mark.unit
def test_relative_position_threshold_scales_the_margin():
    assert relative_position((16, 20, 26, 30), B, 0.0) == {"left of"}
    assert relative_position((0, 20, 10, 30), B, 0.4) == {"left of"}  # (20 - 0.4 * 20) / 20 = 0.6
    assert relative_position((0, 20, 10, 30), B, 0.6) == set()  # (20 - 0.6 * 20) / 20 = 0.4
    assert relative_position((10, 20, 20, 30), B, 0.5) == set()  # 10 - 10 = 0


@pytest.mark.unit
@pytest.mark.parametrize("relation, box_cat", [
    ("left of", (0, 20, 10, 30)), ("right of", (40, 20, 50, 30)), ("above", (20, 0, 30, 10)), ("below", (20, 40, 30, 50)),
])
def test_position_prompt_is_correct_when_a_bears_the_relation_to_b(relation, box_cat):
    assert judge(pos(relation), [det("dog", box=B), det("cat", box=box_cat)]) == (True, "")


@pytest.mark.unit
def test_position_passes_when_the_expected_relation_is_one_of_two_diagonal_ones():
    assert judge(pos("above"), [det("dog", box=B), det("cat", box=(0, 0, 10, 10))]) == (True, "")


@pytest.mark.unit
def test_position_wrong_relation_reason_names_what_was_found():
    assert judge(pos("left of"), [det("dog", box=B), det("cat", box=(40, 20, 50, 30))]) == (
        False, "expected cat left of target, found right of target")
    assert judge(pos("below"), [det("dog", box=B), det("cat", box=(0, 0, 10, 10))]) == (
        False, "expected cat below target, found left of and above target")


@pytest.mark.unit
def test_position_within_the_margin_fails_with_an_empty_relation():
    assert judge(pos("left of"), [det("dog", box=B), det("cat", box=(19, 20, 29, 30))]) == (
        False, "expected cat left of target, found  target")


@pytest.mark.unit
def test_position_with_reference_missing_fails_with_no_target():
    assert judge(pos("left of"), [det("cat", box=(0, 20, 10, 30))]) == (
        False, "expected dog>=1, found 0\nno target for cat to be left of")


@pytest.mark.unit
def test_position_with_subject_missing_reports_only_the_missing_object():
    assert judge(pos("left of"), [det("dog", box=B)]) == (False, "expected cat>=1, found 0")


@pytest.mark.unit
def test_position_uses_only_the_top_detection_of_each_class():
    dets = [det("dog", 0.9, B), det("dog", 0.5, (60, 20, 70, 30)), det("cat", 0.9, (0, 20, 10, 30)),
            det("cat", 0.4, (80, 20, 90, 30))]
    assert judge(pos("left of"), dets) == (True, "")


@pytest.mark.unit
def test_position_is_not_checked_when_the_item_already_failed_its_colour():
    meta = pos("left of")
    meta["include"][1]["color"] = "red"
    dets = [det("dog", box=B), det("cat", box=(40, 20, 50, 30), color="green")]
    assert judge(meta, dets) == (False, "expected red cat>=1, found 0 red; and 1 green")


@pytest.mark.unit
def test_position_threshold_option_reaches_the_decision():
    dets = [det("dog", box=B), det("cat", box=(16, 20, 26, 30))]
    assert judge(pos("left of"), dets)[0] is False
    assert judge(pos("left of"), dets, RulesConfig(position_threshold=0.0)) == (True, "")


# ---------------------------------------------------------------- aggregation

def rows(tag: str, prompt: int, *correct: bool) -> list[dict]:
    return [{"tag": tag, "correct": c, "prompt_index": prompt} for c in correct]


@pytest.mark.unit
def test_overall_is_the_unweighted_mean_of_tag_scores_not_of_images():
    r = rows("single_object", 0, True, True, True) + rows("counting", 1, False)
    s = summarize(r)
    assert s["single_object"] == 1.0 and s["counting"] == 0.0
    assert s["overall"] == 0.5
    assert s["images_correct"] == 0.75  # the mean over images differs


@pytest.mark.unit
def test_missing_tag_drops_out_of_the_overall_mean():
    s = summarize(rows("colors", 0, True, False) + rows("position", 1, True, True))
    assert set(s) == {"colors", "position", "overall", "images_correct", "prompts_any_correct"}
    assert s["overall"] == pytest.approx(0.75)


@pytest.mark.unit
def test_prompts_any_correct_counts_prompts_with_at_least_one_correct_image():
    s = summarize(rows("two_object", 0, True, False, False, False) + rows("two_object", 1, False, False))
    assert s["prompts_any_correct"] == 0.5
    assert s["images_correct"] == pytest.approx(1 / 6)


@pytest.mark.unit
def test_summarize_lists_tags_in_official_order():
    s = summarize(rows("color_attr", 0, True) + rows("single_object", 1, False))
    assert list(s)[:2] == ["single_object", "color_attr"]


@pytest.mark.unit
def test_summarize_rejects_empty_runs_and_rows_without_prompt_index():
    with pytest.raises(ValueError, match="0 images"):
        summarize([])
    with pytest.raises(ValueError, match="prompt_index"):
        summarize([{"tag": "colors", "correct": True}])
