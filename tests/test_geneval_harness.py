"""GenEval harness end to end: generator, official-layout folder and precomputed-detections inputs."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from uae_data.core.config import load_config
from uae_eval.geneval.harness import GenEvalConfig, run
from uae_eval.geneval.prompts import official_metadata_path
from uae_eval.results import read_results, read_samples

from conftest import ROOT

SCENE = ROOT / "manifests/eval/geneval-scene.yaml"


def cfg(*over: str) -> GenEvalConfig:
    return load_config(GenEvalConfig, SCENE, ["images_per_prompt=1", *over], kind="geneval")


@pytest.mark.unit
def test_oracle_scores_at_least_098_and_random_far_lower(tmp_path):
    oracle = run(cfg(), tmp_path / "o")
    random = run(cfg("generator=random"), tmp_path / "r")
    assert oracle.metrics["overall"] >= 0.98 and oracle.n_items == 553
    assert random.metrics["overall"] < 0.3
    assert set(oracle.metrics) >= {"single_object", "two_object", "counting", "colors", "position", "color_attr", "overall"}
    tags = [oracle.metrics[t] for t in ("single_object", "two_object", "counting", "colors", "position", "color_attr")]
    assert oracle.metrics["overall"] == pytest.approx(sum(tags) / 6)
    assert oracle.extra["official_compatible"] is False and oracle.extra["detector"]["backend"] == "scene"


@pytest.mark.unit
def test_official_results_jsonl_has_official_fields_and_images_in_official_layout(tmp_path):
    run(cfg("limit=5", "images_per_prompt=2"), tmp_path / "o")
    rows = pd.read_json(tmp_path / "o/results.jsonl", lines=True)
    assert list(rows.columns) == ["filename", "tag", "prompt", "correct", "reason", "metadata", "details"]
    assert len(rows) == 10 and rows.filename[1] == "00000/samples/0001.png"
    assert json.loads(rows.metadata[0])["prompt"] == rows.prompt[0]
    assert (tmp_path / "o/images/00004/samples/0001.png").exists()
    assert json.loads((tmp_path / "o/images/00004/metadata.jsonl").read_text())["tag"] == "single_object"


@pytest.mark.unit
def test_scoring_a_saved_folder_reproduces_generator_scores(tmp_path):
    gen = run(cfg("generator=random", "limit=60"), tmp_path / "g")
    again = run(cfg("limit=60"), tmp_path / "f", images=tmp_path / "g/images")
    assert again.metrics == gen.metrics and again.config["mode"] == "folder"
    # every image of the 60 prompts is there; limit= itself makes the result a subset, marked partial
    assert again.extra["partial"] is True and again.extra["limited_to"] == 60
    assert again.extra["n_missing_images"] == 553 - 60


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    """The full 553-prompt scene GenEval, 2 images each, generated once for the partial-input tests."""
    out = tmp_path_factory.mktemp("full")
    run(cfg("generator=random", "images_per_prompt=2"), out)
    return out / "images"


@pytest.mark.unit
def test_folder_missing_prompts_or_images_is_refused_unless_allow_partial(tmp_path, saved_folder):
    import shutil

    part = tmp_path / "part"
    shutil.copytree(saved_folder, part)
    for i in range(2, 553):  # keep 2 of 553 prompt folders
        shutil.rmtree(part / f"{i:05d}")
    with pytest.raises(ValueError, match=r"551 of 553 prompts have no image .*\(e\.g\. prompt 00002.*--allow-partial"):
        run(cfg("images_per_prompt=2"), tmp_path / "o", images=part)
    assert not (tmp_path / "o").exists()  # nothing written
    res = run(cfg("images_per_prompt=2", "allow_partial=true"), tmp_path / "o", images=part)
    assert res.n_items == 4 and res.extra["partial"] is True
    assert res.extra["n_missing_prompts"] == 551 and res.extra["n_missing_images"] == 1102
    # a prompt folder that lacks one of its images is also partial
    shutil.copytree(saved_folder, tmp_path / "short")
    (tmp_path / "short/00007/samples/0000.png").unlink()
    with pytest.raises(ValueError, match=r"0 of 553 prompts have no image and 1 of 1106 images .*prompt 00007\)"):
        run(cfg("images_per_prompt=2"), tmp_path / "o2", images=tmp_path / "short")
    whole = run(cfg("images_per_prompt=2"), tmp_path / "o3", images=saved_folder)
    assert whole.n_items == 1106 and whole.extra["partial"] is False


@pytest.mark.unit
def test_folder_is_scored_against_the_metadata_given(tmp_path, saved_folder):
    # scene folder against the official prompts: folder 00000 holds another prompt -> refused, naming the file
    with pytest.raises(ValueError, match=r"00000/metadata.jsonl: holds prompt 'a photo of .*' but prompt 0 .* 'a photo of a bench'"):
        run(cfg("images_per_prompt=2"), tmp_path / "o", images=saved_folder, metadata=official_metadata_path())
    assert not (tmp_path / "o").exists()


@pytest.mark.unit
def test_truncated_png_in_folder_is_named(tmp_path, saved_folder):
    import shutil

    shutil.copytree(saved_folder, tmp_path / "f")
    png = tmp_path / "f/00003/samples/0000.png"
    png.write_bytes(png.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"00003/samples/0000.png: cannot read this image"):
        run(cfg("images_per_prompt=2"), tmp_path / "o", images=tmp_path / "f")


def write_dets(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.unit
def test_precomputed_detections_follow_official_rules_and_carry_indices(tmp_path):
    # official prompts: line 0 "a photo of a bench" (single_object); line 80 is the first two_object prompt.
    metas = [json.loads(l) for l in official_metadata_path().read_text().splitlines()]
    two = metas[80]
    a, b = two["include"][0]["class"], two["include"][1]["class"]
    dets = write_dets(tmp_path / "d.jsonl", [
        {"prompt_index": 0, "image_index": 0, "width": 512, "height": 512,
         "detections": [{"label": "bench", "score": 0.93, "box": [0, 0, 10, 10]}]},
        {"prompt_index": 0, "image_index": 1, "width": 512, "height": 512,
         "detections": [{"label": "bench", "score": 0.3, "box": [0, 0, 10, 10]}]},  # at threshold: dropped
        {"prompt_index": 80, "image_index": 0, "width": 512, "height": 512,
         "detections": [{"label": a, "score": 0.8, "box": [0, 0, 5, 5]}, {"label": b, "score": 0.5, "box": [9, 9, 20, 20]}]},
    ])
    with pytest.raises(ValueError, match=r"551 of 553 prompts have no image"):
        run(cfg("images_per_prompt=2"), tmp_path / "o", detections=dets, metadata=official_metadata_path())
    res = run(cfg("allow_partial=true", "images_per_prompt=2"), tmp_path / "o", detections=dets,
              metadata=official_metadata_path())
    assert res.extra["partial"] is True and res.extra["n_missing_prompts"] == 551
    assert res.metrics["single_object"] == 0.5 and res.metrics["two_object"] == 1.0
    assert res.metrics["overall"] == 0.75 and res.n_items == 3
    rows = pd.read_json(tmp_path / "o/results.jsonl", lines=True)
    assert list(rows.prompt_index) == [0, 0, 80] and list(rows.image_index) == [0, 1, 0]
    assert rows.reason[1] == "expected bench>=1, found 0"
    samples = list(read_samples(tmp_path / "o"))
    assert [s["prompt_index"] for s in samples] == [0, 0, 80] and samples[1]["correct"] is False
    assert read_results(tmp_path / "o").extra["detector"]["backend"] == "precomputed"


@pytest.mark.unit
@pytest.mark.parametrize("line, message", [
    ('{"prompt_index": 0, "image_index": 0}', "line 1: missing field 'detections'"),
    ('{"prompt_index": 999, "image_index": 0, "detections": []}', "line 1: prompt_index 999 outside"),
    ('{"prompt_index": 0, "image_index": 0, "detections": [{"label": "x", "score": 1, "box": [1, 2]}]}', "line 1: box must have 4"),
    ("not json", "line 1: invalid JSON"),
    ('{"prompt_index": 0, "image_index": 1, "detections": []}', r"line 1: image_index 1 outside 0..0"),
    ('{"prompt_index": 0, "image_index": -1, "detections": []}', r"line 1: image_index -1 outside"),
    ('{"prompt_index": 0, "image_index": 0, "detections": [{"label": "x", "score": NaN, "box": [1, 2, 3, 4]}]}',
     "line 1: score and box must be finite"),
    ('{"prompt_index": 0, "image_index": 0, "detections": [{"label": "x", "score": 0.9, "box": [1, 2, Infinity, 4]}]}',
     "line 1: score and box must be finite"),
    ('{"prompt_index": 0, "image_index": 0, "detections": []}\n{"prompt_index": 0, "image_index": 0, "detections": []}',
     "line 2: prompt_index 0, image_index 0 already given on line 1"),
])
def test_bad_detections_file_names_the_line(tmp_path, line, message):
    (tmp_path / "d.jsonl").write_text(line + "\n")
    with pytest.raises(ValueError, match=message):
        run(cfg(), tmp_path / "o", detections=tmp_path / "d.jsonl", metadata=official_metadata_path())
    assert not (tmp_path / "o/results.json").exists()


@pytest.mark.integration
def test_cli_geneval_then_check_flags_a_lowered_result(tmp_path, uae):
    out = tmp_path / "g"
    r = uae("eval", "geneval", str(SCENE), "images_per_prompt=1", "--generator", "oracle", "--out", str(out))
    assert r.returncode == 0, r.stderr
    # one image a prompt is another scored set than the shipped baseline's four: refused, not compared
    other = uae("check", str(out), "--baseline", "manifests/baselines/geneval-scene-oracle.json")
    assert other.returncode == 2 and "scored different items" in other.stderr
    base = tmp_path / "base.json"
    assert uae("check", str(out), "--write-baseline", str(base)).returncode == 0
    assert uae("check", str(out), "--baseline", str(base)).returncode == 0
    data = json.loads((out / "results.json").read_text())
    data["metrics"]["counting"] -= 0.05
    (out / "results.json").write_text(json.dumps(data))
    low = uae("check", str(out), "--baseline", str(base))
    assert low.returncode == 1 and "counting" in low.stdout
    r = uae("report", str(out), "--out", str(tmp_path / "r.html"))
    assert r.returncode == 0 and (tmp_path / "r.html").stat().st_size > 1000


@pytest.mark.unit
def test_scene_detector_or_oracle_with_official_prompts_is_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"evaluation_metadata.jsonl: line 1: class 'bench' is not a scene shape"):
        run(cfg(), tmp_path / "o", metadata=official_metadata_path())
    with pytest.raises(ValueError, match=r"the scene oracle knows only scene shapes"):
        run(cfg("detector=mask2former"), tmp_path / "o", metadata=official_metadata_path())
    assert not (tmp_path / "o").exists()


@pytest.mark.unit
def test_more_images_per_prompt_than_declared_are_refused(tmp_path):
    run(cfg("generator=random", "limit=3", "images_per_prompt=3"), tmp_path / "g")
    with pytest.raises(ValueError, match=r"prompt 00000 has 3 images but images_per_prompt is 1"):
        run(cfg("limit=3"), tmp_path / "f", images=tmp_path / "g/images")
    assert not (tmp_path / "f/results.json").exists()
    again = run(cfg("limit=3", "images_per_prompt=3"), tmp_path / "f2", images=tmp_path / "g/images")
    assert again.n_items == 9


@pytest.mark.unit
def test_limit_scores_a_subset_marked_partial_and_the_report_says_so(tmp_path):
    from uae_eval.report import _partial

    res = run(cfg("limit=5"), tmp_path / "o")
    assert res.extra["partial"] is True and res.extra["limited_to"] == 5
    assert res.extra["n_missing_prompts"] == 548 and res.extra["n_missing_images"] == 548
    full = run(cfg(), tmp_path / "full")
    assert full.extra["partial"] is False and "limited_to" not in full.extra
    from uae_eval.geneval.benchmark import geneval_summary

    assert "PARTIAL: 548 prompts" in geneval_summary(res, tmp_path / "o")
    assert _partial(res) == " (PARTIAL: 548 missing)"
