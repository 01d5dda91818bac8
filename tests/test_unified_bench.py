"""Unified-Bench (issue #18): four backbone metrics of the real classes, the unified-bench recon preset with a
real VLM class as encoder and SD3 / FLUX / SANA pipelines as decoders, controls, report and offline errors.
Every model is tiny, built from config and saved locally; the photos are skimage's."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from tests.test_report import chromium, screenshot
from tests.tiny_backbones import tiny_backbones, tiny_longclip_file, tiny_longclip_hf
from tests.tiny_pipelines import CALL_OPTIONS, tiny_flux, tiny_sana, tiny_sd3
from uae_data.core.config import load_config
from uae_data.core.errors import ModelLoadError
from uae_eval.metrics import build_metric
from uae_eval.recon import ReconConfig, run

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "eval" / "unified-bench.yaml"
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "colorwheel", "coins", "moon", "horse", "retina",
          "immunohistochemistry", "hubble_deep_field"]
BACKBONES = ("clip-hf", "longclip", "dino", "dinov3")  # the preset's


@pytest.fixture(scope="module")
def ub(tmp_path_factory):
    """Photos (12 skimage images, 64×48), the four backbones, a tiny Qwen2.5-VL encoder and three pipelines."""
    from uae_train.models.encoder import Encoder

    root = tmp_path_factory.mktemp("ub")
    (root / "photos").mkdir()
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((64, 48)).save(root / "photos" / f"{name}.png")
    paths = tiny_backbones(root / "bb")
    Encoder.tiny(image_size=64).save_pretrained(root / "vlm")
    for name, build in (("sd3", tiny_sd3), ("flux", tiny_flux), ("sana", tiny_sana)):
        build(root / name)
    overrides = [f"metric_options.{m}.model={p}" for m, p in paths.items()]
    return {"root": root, "backbones": paths, "overrides": overrides}


def _photos(ub, n: int = 4) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((ub["root"] / "photos").glob("*.png"))[:n]]


def _cfg(ub, *extra: str) -> ReconConfig:
    return load_config(ReconConfig, MANIFEST, [f"data={ub['root'] / 'photos'}", *ub["overrides"], "bootstrap=200", *extra],
                       kind="recon")


# ---------------------------------------------------------------- backbones

@pytest.mark.unit
@pytest.mark.parametrize("name", (*BACKBONES, "clip"))
def test_each_backbone_loads_from_a_local_path_scores_identity_one_and_records_its_preprocessing(ub, name):
    m = build_metric(name, model=ub["backbones"][name], device="cpu")
    ims = _photos(ub)
    same = m(ims, ims)
    assert np.allclose(same, 1.0, atol=1e-5)
    other = m(ims, ims[1:] + ims[:1])
    assert max(other) < 1 - 1e-3
    alone = [m([a], [b])[0] for a, b in zip(ims, ims[1:] + ims[:1])]
    assert np.allclose(alone, other, atol=1e-5)  # batching does not change a value
    prov = m.provenance()
    assert prov["metric"] == name and prov["dtype"] == "float32"
    pre = prov["preprocess"]
    assert ("mean" in pre or "image_mean" in pre) and ("size" in pre)


@pytest.mark.unit
@pytest.mark.parametrize("name", (*BACKBONES, "clip"))
def test_each_backbone_runs_in_bfloat16_close_to_float32(ub, name):
    ims = _photos(ub)
    pairs = (ims, ims[1:] + ims[:1])
    full = build_metric(name, model=ub["backbones"][name], device="cpu")(*pairs)
    half = build_metric(name, model=ub["backbones"][name], device="cpu", dtype="bfloat16")
    model = half.model if hasattr(half, "model") else half.impl.model
    conv = getattr(getattr(model, "visual", None), "conv1", None)  # longclip: OpenAI's mixed recipe, norms in fp32
    assert (conv.weight if conv is not None else next(model.parameters())).dtype == torch.bfloat16
    assert np.allclose(half(*pairs), full, atol=0.05)


@pytest.mark.unit
def test_longclip_checkpoint_folds_its_two_position_tables_exactly(tmp_path):
    """LongCLIP adds positional_embedding on positions < 20 and positional_embedding_res on the rest; the folded
    table must equal that sum for every position, and the text tower must see it."""
    from uae_eval.metrics.longclip import fold_positions, read_state_dict

    path = tiny_longclip_file(tmp_path / "longclip-L.pt", seed=3)
    raw = torch.load(path, weights_only=True)
    mask1 = torch.zeros(248, 1)
    mask1[:20] = 1
    expected = raw["positional_embedding"] * mask1 + raw["positional_embedding_res"] * (1 - mask1)
    folded = fold_positions(read_state_dict(path))
    assert "positional_embedding_res" not in folded
    assert torch.equal(folded["positional_embedding"], expected)
    m = build_metric("longclip", model=str(path), device="cpu")
    text_pos = m.impl.model.positional_embedding.detach()
    assert torch.equal(text_pos, expected) and m.provenance()["text_positions"] == 248


@pytest.mark.unit
def test_longclip_also_loads_a_transformers_clipmodel_folder(tmp_path):
    from transformers import CLIPImageProcessor, CLIPModel

    path = tiny_longclip_hf(tmp_path / "lc")
    m = build_metric("longclip", model=str(path), device="cpu")
    ims = [Image.fromarray(getattr(skimage.data, n)()).convert("RGB") for n in ("astronaut", "coffee")]
    ref_model, proc = CLIPModel.from_pretrained(path).eval(), CLIPImageProcessor.from_pretrained(path)
    with torch.no_grad():
        f = ref_model.get_image_features(**proc(images=ims, return_tensors="pt"))
    f = getattr(f, "pooler_output", f)  # transformers 5 may return an output object
    ref = torch.nn.functional.normalize(f, dim=-1)
    assert np.allclose(m(ims[:1], ims[1:]), [(ref[0] @ ref[1]).item()], atol=1e-5)
    assert m.provenance()["form"] == "transformers CLIPModel"


@pytest.mark.unit
def test_a_backbone_of_the_wrong_kind_is_refused_with_one_line(ub, tmp_path):
    with pytest.raises(ModelLoadError, match="77 text positions; LongCLIP has 248"):
        build_metric("longclip", model=str(tiny_longclip_file(tmp_path / "clip.pt", positions=77)), device="cpu")
    with pytest.raises(ModelLoadError, match="'dinov2' model, not dinov3_vit"):
        build_metric("dinov3", model=ub["backbones"]["dino"], device="cpu")
    with pytest.raises(ModelLoadError, match="not a CLIP checkpoint"):
        torch.save({"weight": torch.zeros(2)}, tmp_path / "x.pt")
        build_metric("longclip", model=str(tmp_path / "x.pt"), device="cpu")
    with pytest.raises(ValueError, match="dtype must be one of"):
        build_metric("dino", model=ub["backbones"]["dino"], device="cpu", dtype="int8")


@pytest.mark.unit
@pytest.mark.parametrize("name,option", [("clip", "metric_options.clip.pretrained=FILE"),
                                         ("clip-hf", "metric_options.clip-hf.model=PATH"),
                                         ("longclip", "metric_options.longclip.model=PATH"),
                                         ("dino", "metric_options.dino.model=PATH"),
                                         ("dinov3", "metric_options.dinov3.model=PATH")])
def test_offline_hub_defaults_fail_naming_the_local_path_option(monkeypatch, name, option):
    from uae_data.model_refs import hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")  # an empty cache
    hub_reachable.cache_clear()
    try:
        cfg = load_config(ReconConfig, MANIFEST, [], kind="recon")
        with pytest.raises(ModelLoadError, match=re.escape(option)) as err:
            build_metric(name, **cfg.metric_options[name])
        assert "\n" not in str(err.value)
    finally:
        hub_reachable.cache_clear()


# ---------------------------------------------------------------- the preset, with controls

def _identity(ub, n: int):
    """caption = the image's index; generate paints that image back exactly (a perfect auto-encoder)."""
    originals = _photos(ub, n)

    def caption(images):
        return [str(i) for i in range(len(images))]

    def generate(prompts, seeds):
        return [originals[int(p)] for p in prompts]

    return caption, generate


@pytest.mark.unit
def test_identical_reconstructions_score_one_per_backbone_and_shuffled_pairs_score_clearly_lower(ub, tmp_path):
    caption, generate = _identity(ub, 12)
    same = run(_cfg(ub), tmp_path / "same", caption=caption, generate=generate)
    shuffled = run(_cfg(ub, "shuffle_captions=true"), tmp_path / "shuffled", caption=caption, generate=generate)
    assert same.primary_metric == "unified_bench" and same.n_items == 12
    for name in ("unified_bench", *BACKBONES):
        assert same.metrics[name] == pytest.approx(1.0, abs=1e-5)
        # clearly lower: the whole 95% CI of the shuffled control sits below the identical run
        assert shuffled.metrics[f"{name}_ci_high"] < same.metrics[f"{name}_ci_low"] - 1e-3, name
    rows = [json.loads(line) for line in (tmp_path / "shuffled" / "samples.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["caption_of"] != r["key"]
        assert r["metrics"]["unified_bench"] == pytest.approx(np.mean([r["metrics"][b] for b in BACKBONES]))
    assert shuffled.metrics["unified_bench"] == pytest.approx(np.mean([shuffled.metrics[b] for b in BACKBONES]))


def _check_run(out: Path, pipeline_class: str) -> dict:
    res = json.loads((out / "results.json").read_text())
    assert res["primary_metric"] == "unified_bench" and res["higher_is_better"] is True
    m = res["metrics"]
    for name in ("unified_bench", *BACKBONES):
        assert -1 <= m[f"{name}_ci_low"] <= m[name] <= m[f"{name}_ci_high"] <= 1
    assert m["unified_bench"] == pytest.approx(np.mean([m[b] for b in BACKBONES]))
    assert res["model"]["config"]["pipeline_class"] == pipeline_class
    assert res["model"]["config"]["decoder_kind"] == "diffusers pipeline"
    assert res["extra"]["mean_of"] == {"unified_bench": list(BACKBONES)}
    assert set(res["extra"]["metrics"]) == set(BACKBONES)
    assert all("preprocess" in p for p in res["extra"]["metrics"].values())
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == res["n_items"]
    for r in rows:
        assert isinstance(r["caption"], str) and r["caption_words"] == len(r["caption"].split())
        assert set(r["metrics"]) == {"unified_bench", *BACKBONES}
        with Image.open(out / r["reconstructions"][0]) as im:
            assert im.size == (32, 32)
    primary = [r["metrics"]["unified_bench"] for r in rows]
    assert primary == sorted(primary)  # worst first
    return res


@pytest.mark.integration
def test_unified_bench_cli_with_a_vlm_encoder_and_a_flux_pipeline(ub, tmp_path, uae):
    root = ub["root"]
    p = uae("eval", "recon", str(MANIFEST), "--data", str(root / "photos"), "--encoder", str(root / "vlm"),
            "--decoder", str(root / "flux"), "--out", str(tmp_path / "run"), *ub["overrides"], "image_size=32",
            "steps=2", "max_new_tokens=10", "batch_size=5", "limit=6", "bootstrap=200",
            "pipeline_options.max_sequence_length=32")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "unified_bench=" in p.stdout
    res = _check_run(tmp_path / "run", "FluxPipeline")
    assert res["model"]["config"]["max_new_tokens"] == 10 and res["n_items"] == 6


@pytest.mark.integration
@pytest.mark.parametrize("pipeline,cls", [("sd3", "StableDiffusion3Pipeline"), ("sana", "SanaPipeline")])
def test_unified_bench_with_sd3_and_sana_pipelines_is_deterministic(ub, tmp_path, pipeline, cls):
    from uae_train.evaluation.loading import load_recon_models

    root = ub["root"]
    opts = [f"pipeline_options.{k}={json.dumps(v)}" for k, v in CALL_OPTIONS[pipeline].items()]
    cfg = _cfg(ub, "image_size=32", "steps=2", "max_new_tokens=8", "batch_size=3", "limit=4", *opts)
    scores = []
    for attempt in range(2):
        caption, generate, model = load_recon_models(str(root / "vlm"), str(root / pipeline), cfg)
        run(cfg, tmp_path / f"run{attempt}", caption=caption, generate=generate, model=model)
        scores.append(_check_run(tmp_path / f"run{attempt}", cls)["metrics"])
    assert scores[0] == scores[1]


@pytest.mark.integration
def test_unified_bench_offline_defaults_exit_2_with_one_line(ub, tmp_path, uae):
    p = uae("eval", "recon", str(MANIFEST), "--data", str(ub["root"] / "photos"), "--out", str(tmp_path / "o"),
            env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "metric_options.clip" in p.stderr and not (tmp_path / "o" / "results.json").exists()
    p = uae("eval", "recon", str(MANIFEST), "--data", str(ub["root"] / "photos"), "--out", str(tmp_path / "o"),
            "--decoder", "stabilityai/stable-diffusion-3.5-medium", *ub["overrides"],
            env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert p.returncode == 2 and "--decoder PATH" in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------- report

@pytest.fixture(scope="module")
def ub_run(ub, tmp_path_factory):
    from uae_eval.recon import run as recon_run

    out = tmp_path_factory.mktemp("ubrun") / "run"
    caption, generate = _identity(ub, 12)
    shifted = lambda prompts, seeds: generate([str((int(p) + 1) % 12) if int(p) % 3 else p for p in prompts], seeds)  # noqa: E731
    recon_run(_cfg(ub), out, caption=caption, generate=shifted, model={"name": "identity-ish", "path": None, "config": {}})
    return out


@pytest.mark.unit
def test_report_shows_the_four_backbones_and_their_mean_with_cis_and_the_worst_ten(ub_run, tmp_path):
    from uae_eval.report import build_report

    html = build_report([ub_run], tmp_path / "r.html").read_text()
    table = html[html.index("Unified-Bench: mean of four backbone cosines"):]
    table = table[:table.index("</table>")]
    res = json.loads((ub_run / "results.json").read_text())["metrics"]
    for name in ("unified_bench", *BACKBONES):
        assert re.search(rf"<td>{name}</td><td[^>]*>{res[name]:.4f} \[{res[name + '_ci_low']:.4f}, "
                         rf"{res[name + '_ci_high']:.4f}\]", table), name
    rows = re.findall(r'<tr class="triple">(.*?)</tr>', html)
    assert len(rows) == 12  # the 10 worst, then the 2 best
    worst = [json.loads(line) for line in (ub_run / "samples.jsonl").read_text().splitlines()]
    for row, sample in zip(rows[:10], worst[:10]):
        assert f"#{sample['rank_worst_first']} {sample['key']}" in row and f"unified_bench {sample['metrics']['unified_bench']:.4f}" in row


@pytest.mark.integration
@pytest.mark.skipif(chromium() is None, reason="no headless chromium on this machine")
def test_unified_bench_report_renders_in_headless_chromium(ub_run, tmp_path):
    from uae_eval.report import build_report

    shot = screenshot(build_report([ub_run], tmp_path / "report.html"), tmp_path, 3000)
    with Image.open(shot) as im:
        rgb = np.asarray(im.convert("RGB"))
    assert rgb.shape == (3000, 1200, 3)
    colourful = (rgb.max(axis=2).astype(int) - rgb.min(axis=2)) > 60  # photos, not text on white
    assert colourful[1000:].mean() > 0.02, "no photo rows rendered below the tables"
