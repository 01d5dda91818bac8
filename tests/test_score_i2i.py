"""Unified-Bench scored as UAE's authors score it (Unified-Bench/Score_i2i.py with CLIP.py, LongCLIP.py,
DINO_v2.py, DINO_v3.py): folder mode of `uae eval recon` against an independent re-implementation of their four
per-backbone procedures, written here with plain transformers / torch / torchvision / PIL calls as their scripts
make them, on the same tiny weights (built from config, saved to tmp). Plus their pairing rules, the refusals,
--allow-partial and the JSON shape. Photos are skimage's.

Their scripts ran on transformers 4.x (DINOv3 arrived in 4.56), where CLIPProcessor and AutoImageProcessor
loaded the PIL ("slow") processors saved with CLIP and DINOv2; transformers 5 calls those classes *Pil. DINOv3
has only the torchvision processor. The references below name those classes directly.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from tests.tiny_backbones import tiny_clip_hf, tiny_dinov2, tiny_dinov3, tiny_longclip_file
from uae_data.core.config import load_config
from uae_eval.recon import ReconConfig, run
from uae_eval.recon_folder import find_reference, image_files, pair_folders

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "manifests" / "eval" / "unified-bench.yaml"
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "horse"]
THEIRS = {"clip-hf": "clip", "longclip": "longclip", "dino": "dinov2", "dinov3": "dinov3"}
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _photo(name: str, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize(size)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """refs/ (skimage photos of several sizes and formats), recons/ (blurred, shifted or swapped copies named the
    ways Score_i2i.py matches: same basename, same stem in another format, recon_ + stem, in a subfolder), and
    the four tiny backbones."""
    root = tmp_path_factory.mktemp("score_i2i")
    refs, recons = root / "refs", root / "recons"
    (refs / "sub").mkdir(parents=True)
    (recons / "nested").mkdir(parents=True)
    sizes = [(64, 48), (40, 56), (50, 50), (72, 40), (48, 64), (45, 45)]
    ref_names = ["astronaut.png", "coffee.jpg", "chelsea.png", "sub/rocket.webp", "camera.bmp", "horse.tiff"]
    for name, photo, size in zip(ref_names, PHOTOS, sizes):
        _photo(photo, size).save(refs / name)
    rec_names = ["astronaut.png", "coffee.png", "recon_chelsea.png", "nested/rocket.jpg", "recon_camera.jpeg",
                 "horse.webp"]
    for i, (name, photo, size) in enumerate(zip(rec_names, PHOTOS, sizes)):
        im = _photo(PHOTOS[(i + 1) % len(PHOTOS)] if i == 4 else photo, (size[0] + 8, size[1] + 4))
        im.filter(ImageFilter.GaussianBlur(1 + i % 3)).save(recons / name)
    bb = root / "bb"
    paths = {"clip-hf": tiny_clip_hf(bb / "clip-hf", seed=3), "longclip": tiny_longclip_file(bb / "longclip-L.pt", seed=4),
             "dino": tiny_dinov2(bb / "dinov2", seed=5), "dinov3": tiny_dinov3(bb / "dinov3", seed=6)}
    overrides = [f"metric_options.{m}.model={p}" for m, p in paths.items()]
    return {"root": root, "refs": refs, "recons": recons, "backbones": paths, "overrides": overrides,
            "pairs": dict(zip(rec_names, ref_names))}


# ---------------------------------------------------------------- their procedures, written out

def _features_clip(folder: Path):
    """CLIP.py: CLIPModel + CLIPProcessor's image processor, get_image_features, F.normalize."""
    from transformers import CLIPImageProcessorPil, CLIPModel

    model, processor = CLIPModel.from_pretrained(folder).eval(), CLIPImageProcessorPil.from_pretrained(folder)

    def encode(image):
        inputs = processor(images=image, return_tensors="pt")
        out = model.get_image_features(**inputs)
        return F.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, p=2, dim=1)
    return encode


def _features_dino(folder: Path, pil: bool):
    """DINO_v2.py / DINO_v3.py: AutoModel + the image processor, last_hidden_state[:, 0, :], F.normalize."""
    from transformers import AutoImageProcessor, AutoModel, BitImageProcessorPil

    model = AutoModel.from_pretrained(folder).eval()
    processor = BitImageProcessorPil.from_pretrained(folder) if pil else AutoImageProcessor.from_pretrained(folder)

    def encode(image):
        outputs = model(**processor(images=image, return_tensors="pt"))
        return F.normalize(outputs.last_hidden_state[:, 0, :], p=2, dim=1)
    return encode


def _features_longclip(path: Path):
    """LongCLIP.py: longclip.load(path) on the CPU (fp32) and its _transform; encode_image written out as OpenAI
    CLIP's VisionTransformer computes it (conv patches, class token, positions, ln_pre, pre-norm blocks with
    QuickGELU, ln_post on the class token, @ proj)."""
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    sd = {k: v.float() for k, v in torch.load(path, map_location="cpu", weights_only=True).items()}
    conv = sd["visual.conv1.weight"]
    width, patch = conv.shape[0], conv.shape[-1]
    n_px = patch * round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    heads = width // 64
    layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
    tform = Compose([Resize(n_px, interpolation=InterpolationMode.BICUBIC), CenterCrop(n_px),
                     lambda im: im.convert("RGB"), ToTensor(), Normalize(CLIP_MEAN, CLIP_STD)])

    def ln(x, name):
        return F.layer_norm(x, (width,), sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)

    def encode(image):
        x = F.conv2d(tform(image)[None], conv, stride=patch).flatten(2).transpose(1, 2)
        x = torch.cat([sd["visual.class_embedding"].expand(1, 1, -1), x], dim=1) + sd["visual.positional_embedding"]
        x = ln(x, "visual.ln_pre")
        for i in range(layers):
            p = f"visual.transformer.resblocks.{i}"
            q, k, v = (ln(x, f"{p}.ln_1") @ sd[f"{p}.attn.in_proj_weight"].T + sd[f"{p}.attn.in_proj_bias"]).chunk(3, -1)
            split = lambda t: t.reshape(1, -1, heads, width // heads).transpose(1, 2)  # noqa: E731
            a = torch.softmax(split(q) @ split(k).transpose(-1, -2) / (width // heads) ** 0.5, -1) @ split(v)
            a = a.transpose(1, 2).reshape(1, -1, width)
            x = x + a @ sd[f"{p}.attn.out_proj.weight"].T + sd[f"{p}.attn.out_proj.bias"]
            h = ln(x, f"{p}.ln_2") @ sd[f"{p}.mlp.c_fc.weight"].T + sd[f"{p}.mlp.c_fc.bias"]
            h = h * torch.sigmoid(1.702 * h)
            x = x + h @ sd[f"{p}.mlp.c_proj.weight"].T + sd[f"{p}.mlp.c_proj.bias"]
        return F.normalize(ln(x[:, 0], "visual.ln_post") @ sd["visual.proj"], p=2, dim=1)
    return encode


def _their_scores(bench) -> dict[str, dict[str, float]]:
    """Score_i2i.py's similarities_by_model: per model, per reconstruction basename, the cosine of
    encode(Image.open(file).convert('RGB')) and the same for its reference."""
    encoders = {"clip": _features_clip(bench["backbones"]["clip-hf"]),
                "longclip": _features_longclip(bench["backbones"]["longclip"]),
                "dinov2": _features_dino(bench["backbones"]["dino"], pil=True),
                "dinov3": _features_dino(bench["backbones"]["dinov3"], pil=False)}
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for model, encode in encoders.items():
            out[model] = {}
            for rec, ref in bench["pairs"].items():
                a = encode(Image.open(bench["recons"] / rec).convert("RGB"))
                b = encode(Image.open(bench["refs"] / ref).convert("RGB"))
                out[model][os.path.basename(rec)] = torch.cosine_similarity(a, b, dim=1).item()
    return out


def _cfg(bench, *extra: str, recons: Path | None = None) -> ReconConfig:
    return load_config(ReconConfig, MANIFEST, [f"data={bench['refs']}", f"reconstructions={recons or bench['recons']}",
                                               *bench["overrides"], "bootstrap=100", *extra], kind="recon")


# ---------------------------------------------------------------- parity

@pytest.mark.integration
def test_score_i2i_folder_mode_per_image_cosines_equal_their_four_procedures(bench, tmp_path, uae_in_process):
    p = uae_in_process("eval", "recon", str(MANIFEST), "--data", str(bench["refs"]), "--reconstructions",
                       str(bench["recons"]), "--out", str(tmp_path / "run"), *bench["overrides"], "bootstrap=100")
    assert p.returncode == 0, p.stderr
    ours = json.loads((tmp_path / "run" / "score_i2i.json").read_text())
    theirs = _their_scores(bench)
    assert set(ours["similarities_by_model"]) == set(theirs)
    for model, scores in theirs.items():
        assert set(ours["similarities_by_model"][model]) == set(scores)
        for name, value in scores.items():
            assert ours["similarities_by_model"][model][name] == pytest.approx(value, abs=1e-5), (model, name)
        assert max(scores.values()) - min(scores.values()) > 1e-3  # images differ far beyond the tolerance
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    overall = np.mean([np.mean(list(s.values())) for s in theirs.values()])
    assert res["metrics"]["unified_bench"] == pytest.approx(overall, abs=1e-5)
    assert ours["summary"]["overall_average"] == pytest.approx(overall, abs=1e-5)
    for metric, model in THEIRS.items():
        assert res["metrics"][metric] == pytest.approx(np.mean(list(theirs[model].values())), abs=1e-5)
    assert res["extra"]["partial"] is False and res["n_items"] == 6
    assert res["extra"]["score_i2i"] == ours  # results.json carries the same object


@pytest.mark.unit
def test_score_i2i_longclip_auto_is_fp32_on_cpu_and_low_precision_keeps_layernorm_in_fp32(bench):
    """longclip.load casts to fp32 on the CPU and keeps OpenAI's fp16 conversion on a GPU (LayerNorm, class and
    position embeddings stay fp32)."""
    from uae_eval.metrics import build_metric

    auto = build_metric("longclip", model=str(bench["backbones"]["longclip"]), device="cpu", dtype="auto")
    assert auto.dtype == "float32" and auto.impl.model.visual.conv1.weight.dtype == torch.float32
    half = build_metric("longclip", model=str(bench["backbones"]["longclip"]), device="cpu", dtype="bfloat16").impl.model
    v = half.visual
    assert v.conv1.weight.dtype == v.proj.dtype == v.transformer.resblocks[0].mlp.c_fc.weight.dtype == torch.bfloat16
    assert v.ln_pre.weight.dtype == v.class_embedding.dtype == v.positional_embedding.dtype == torch.float32
    assert type(v.ln_pre).__name__ == "LayerNormFp32"


# ---------------------------------------------------------------- pairing

@pytest.mark.unit
def test_score_i2i_pairing_rules_basename_then_stem_then_recon_prefix(tmp_path):
    refs = ["/r/a.png", "/r/b.jpg", "/r/sub/c.png", "/r/x.png", "/r/recon_x.png"]
    assert find_reference("a.png", refs) == "/r/a.png"  # basename
    assert find_reference("b.png", refs) == "/r/b.jpg"  # stem
    assert find_reference("recon_c.webp", refs) == "/r/sub/c.png"  # recon_ + reference stem
    assert find_reference("recon_x.png", refs) == "/r/recon_x.png"  # basename beats the prefix rule
    assert find_reference("recon_x.jpg", refs) == "/r/x.png"  # first in sorted order matching stem or prefix
    assert find_reference("d.png", refs) is None and find_reference("a_recon.png", refs) is None
    for name in ("z.PNG", "y.Jpeg", "deep/er/w.tiff", "v.bmp", "u.webp", "t.jpg", "note.txt", "s.gif", ".png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = [os.path.relpath(f, tmp_path) for f in image_files(tmp_path)]
    assert found == sorted(found) == ["deep/er/w.tiff", "t.jpg", "u.webp", "v.bmp", "y.Jpeg", "z.PNG"]


@pytest.mark.unit
def test_score_i2i_pairs_the_fixture_folders_as_named(bench):
    pairs = {os.path.relpath(g, bench["recons"]): r and os.path.relpath(r, bench["refs"])
             for g, r in pair_folders(bench["recons"], bench["refs"])}
    assert pairs == bench["pairs"]


# ---------------------------------------------------------------- refusals and partial runs

def _folder_with(bench, tmp_path: Path, extra: dict[str, bytes | Image.Image]) -> Path:
    recons = tmp_path / "recons"
    shutil.copytree(bench["recons"], recons)
    for name, content in extra.items():
        content.save(recons / name) if isinstance(content, Image.Image) else (recons / name).write_bytes(content)
    return recons


@pytest.mark.integration
def test_score_i2i_unmatched_and_unreadable_images_are_refused_by_name_exit_2(bench, tmp_path, uae_in_process):
    recons = _folder_with(bench, tmp_path, {"stranger.png": _photo("moon", (32, 32))})
    p = uae_in_process("eval", "recon", str(MANIFEST), "--data", str(bench["refs"]), "--reconstructions", str(recons),
                       "--out", str(tmp_path / "o"), *bench["overrides"])
    assert p.returncode == 2 and "stranger.png" in p.stderr and "--allow-partial" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and not (tmp_path / "o" / "results.json").exists()
    (recons / "stranger.png").unlink()
    (recons / "astronaut.png").write_bytes(b"not an image")
    with pytest.raises(Exception, match="astronaut.png: unreadable image"):
        run(_cfg(bench, recons=recons), tmp_path / "o2")
    assert not (tmp_path / "o2" / "results.json").exists()


@pytest.mark.integration
def test_score_i2i_encoder_or_decoder_with_reconstructions_is_refused_in_one_line(bench, tmp_path, uae_in_process):
    p = uae_in_process("eval", "recon", str(MANIFEST), "--data", str(bench["refs"]), "--reconstructions",
                       str(bench["recons"]), "--decoder", "some/pipeline", "--out", str(tmp_path / "o"), *bench["overrides"])
    assert p.returncode == 2 and "--reconstructions with --decoder" in p.stderr and len(p.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_score_i2i_allow_partial_records_what_was_dropped_and_their_json_shape(bench, tmp_path):
    recons = _folder_with(bench, tmp_path, {"stranger.png": _photo("moon", (32, 32)), "broken.png": b"\x89PNG junk"})
    refs = tmp_path / "refs"  # broken.png has a reference: it is dropped as unreadable, stranger.png as unmatched
    shutil.copytree(bench["refs"], refs)
    _photo("coins", (30, 30)).save(refs / "broken.png")
    cfg = load_config(ReconConfig, MANIFEST, [f"data={refs}", f"reconstructions={recons}", *bench["overrides"],
                                              "bootstrap=100", "allow_partial=true", "save_images=false"], kind="recon")
    res = run(cfg, tmp_path / "o")
    assert res.extra["partial"] is True and res.extra["n_dropped"] == 2 and res.n_items == 6
    assert {d["key"] for d in res.extra["dropped"]} == {"stranger.png", "broken.png"}
    doc = json.loads((tmp_path / "o" / "score_i2i.json").read_text())
    assert doc["model_types"] == ["clip", "longclip", "dinov2", "dinov3"]
    assert set(doc) == {"model_types", "similarities_by_model", "statistics_by_model", "summary"}
    for model in doc["model_types"]:
        sims = doc["similarities_by_model"][model]
        assert list(sims) == [os.path.basename(f) for f in image_files(recons)]  # their file order, all of them
        assert sims["stranger.png"] is None and sims["broken.png"] is None
        stats = doc["statistics_by_model"][model]
        assert set(stats) == {"total_images", "valid_pairs", "average_similarity", "min_similarity", "max_similarity"}
        valid = [v for v in sims.values() if v is not None]
        assert stats["total_images"] == 8 and stats["valid_pairs"] == 6
        assert stats["average_similarity"] == pytest.approx(np.mean(valid))
        assert (stats["min_similarity"], stats["max_similarity"]) == (min(valid), max(valid))
        metric = {v: k for k, v in THEIRS.items()}[model]
        assert res.metrics[metric] == pytest.approx(stats["average_similarity"])
    s = doc["summary"]
    assert s["overall_average"] == pytest.approx(np.mean(list(s["average_scores_by_model"].values())))
    assert s["overall_average"] == pytest.approx(res.metrics["unified_bench"])
    assert s["best_model"][1] == max(s["average_scores_by_model"].values())
    rows = [json.loads(line) for line in (tmp_path / "o" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {r["key"] for r in rows} == {os.path.basename(k) for k in bench["pairs"]}
