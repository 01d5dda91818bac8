"""GenEval for any diffusers model (issue #21, generation part): `uae eval geneval --pipeline DIR` paints every
prompt with a diffusers pipeline (tiny SD3 and FLUX built from config), writes the official folder layout,
continues an interrupted run without repainting finished prompts, refuses to mix generation settings, and
scores with the real detector classes (a tiny Mask2Former and a tiny open_clip)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.tiny_geneval_models import tiny_clip, tiny_mask2former
from tests.tiny_pipelines import CALL_OPTIONS, tiny_flux, tiny_sd3

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "eval" / "geneval-hf-mask2former.yaml"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("gp")
    tiny_sd3(root / "sd3")
    tiny_flux(root / "flux")
    return {"root": root, "m2f": tiny_mask2former(root / "m2f"), "clip": tiny_clip(root / "clip")}


def _args(models, pipeline: str, out: Path, *extra: str) -> list[str]:
    opts = [f"pipeline_options.{k}={json.dumps(v)}" for k, v in CALL_OPTIONS[pipeline].items()]
    return ["eval", "geneval", str(MANIFEST), "--pipeline", str(models["root"] / pipeline), "--out", str(out),
            f"detector_options.model={models['m2f']}", f"colour_options.model={models['clip']}", "colour_options.pretrained=null",
            "limit=3", "images_per_prompt=2", "steps=2", "pipeline_image_size=32", "batch_size=4", *opts, *extra]


@pytest.mark.integration
@pytest.mark.parametrize("pipeline,cls", [("sd3", "StableDiffusion3Pipeline"), ("flux", "FluxPipeline")])
def test_pipeline_paints_the_official_layout_and_scores_it(models, tmp_path, uae, pipeline, cls):
    out = tmp_path / "run"
    p = uae(*_args(models, pipeline, out))
    assert p.returncode == 0, p.stderr[-2000:]
    metas = [json.loads(line) for line in (ROOT / "manifests/geneval/evaluation_metadata.jsonl").read_text().splitlines()[:3]]
    for i, meta in enumerate(metas):
        folder = out / "images" / f"{i:05d}"
        assert json.loads((folder / "metadata.jsonl").read_text()) == meta
        assert sorted(f.name for f in (folder / "samples").iterdir()) == ["0000.png", "0001.png"]
    res = json.loads((out / "results.json").read_text())
    assert res["n_items"] == 6 and res["model"]["config"]["pipeline_class"] == cls
    assert res["extra"]["resumed_prompts"] == 0 and res["extra"]["official_compatible"] is False
    # the folder is the official layout: `--images` scores it to the same numbers
    q = uae("eval", "geneval", str(MANIFEST), "--images", str(out / "images"), "--out", str(tmp_path / "again"),
            f"detector_options.model={models['m2f']}", f"colour_options.model={models['clip']}",
            "colour_options.pretrained=null", "limit=3", "images_per_prompt=2", "batch_size=4")
    assert q.returncode == 0, q.stderr[-2000:]
    assert json.loads((tmp_path / "again" / "results.json").read_text())["metrics"] == res["metrics"]


@pytest.mark.integration
def test_an_interrupted_run_continues_without_repainting_finished_prompts(models, tmp_path, uae):
    out = tmp_path / "run"
    assert uae(*_args(models, "sd3", out)).returncode == 0
    first = json.loads((out / "results.json").read_text())
    samples = out / "images"
    kept = {f: f.stat().st_mtime_ns for f in samples.glob("0000[02]/samples/*.png")}
    (samples / "00001" / "samples" / "0001.png").unlink()  # prompt 1 was cut short
    (samples / "00001" / "samples" / ".partial-0001.png").write_bytes(b"half a png")  # as an interrupt leaves it
    p = uae(*_args(models, "sd3", out))
    assert p.returncode == 0, p.stderr[-2000:]
    again = json.loads((out / "results.json").read_text())
    assert again["extra"]["resumed_prompts"] == 2 and again["metrics"] == first["metrics"]
    assert {f: f.stat().st_mtime_ns for f in kept} == kept  # finished prompts were not painted again
    assert (samples / "00001" / "samples" / "0001.png").is_file()
    assert not list(samples.glob("*/samples/.partial-*"))
    # other generation settings into the same folder are refused, not mixed
    p = uae(*_args(models, "sd3", out, "steps=3"))
    assert p.returncode == 2 and "made with another generator or settings (model" in p.stderr


@pytest.mark.unit
def test_pipeline_and_decoder_together_are_refused(tmp_path, uae):
    p = uae("eval", "geneval", "--pipeline", "x", "--decoder", str(tmp_path), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "--decoder or --pipeline, not both" in p.stderr
