"""scene-captions: the encoder's captions parsed back and scored cell by cell against the true scene."""
from __future__ import annotations

import json

import pytest

from uae_data import scenes
from uae_eval import scene_captions as sc


def _scene():
    return scenes.Scene((scenes.SceneObject(shape="circle", color="red", size="large", row=0, col=0),
                         scenes.SceneObject(shape="star", color="blue", size="small", row=2, col=2)))


@pytest.mark.unit
def test_exact_caption_scores_one_and_each_wrong_attribute_costs_its_share():
    s = _scene()
    assert sc.aggregate([sc.score_caption(scenes.write_caption(s, 3), s)])["cell_attributes"] == 1.0
    wrong = "a large red square sits in the top left cell. a small green star sits in the bottom right cell."
    m = sc.aggregate([sc.score_caption(wrong, s)])
    assert m["color"] == 0.5 and m["shape"] == 0.5 and m["size"] == 1.0 and m["occupancy"] == 1.0
    assert m["cell_attributes"] == pytest.approx(2 / 3) and m["exact_scene"] == 0.0


@pytest.mark.unit
def test_wrong_cells_and_unparsable_captions_score_nothing_there():
    s = _scene()
    moved = "a large red circle sits in the center cell. a small blue star sits in the bottom right cell."
    m = sc.aggregate([sc.score_caption(moved, s)])
    assert m["color"] == 0.5 and m["occupancy"] == pytest.approx(7 / 9)
    none = sc.aggregate([sc.score_caption("sure, here is a picture", s)])
    assert none["cell_attributes"] == 0.0 and none["parsed"] in (0.0, 1.0)


@pytest.mark.unit
def test_run_writes_results_with_chance_and_samples(tmp_path):
    truths = [scenes.sample_scene(i) for i in range(4)]
    images = [scenes.render(s, 48) for s in truths]
    exact = {id(im): scenes.write_caption(s, 0) for im, s in zip(images, truths)}
    r = sc.run(images, truths, lambda ims: [exact[id(im)] for im in ims], tmp_path / "r", model={"name": "oracle"})
    assert r.metrics["cell_attributes"] == 1.0 and r.primary_metric == "cell_attributes"
    data = json.loads((tmp_path / "r/results.json").read_text())
    assert data["extra"]["chance"]["color"] == pytest.approx(0.1)
    assert len((tmp_path / "r/samples.jsonl").read_text().splitlines()) == 4
    with pytest.raises(ValueError):
        sc.run(images, truths[:2], lambda ims: [], tmp_path / "bad", model={"name": "x"})
