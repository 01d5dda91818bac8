"""GenEval detectors and colour classifiers: registries, the mmdet-style Mask2Former post-processing,
the official colour crop, and tiny random-weight models loaded by local path through the real backends."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.tiny_geneval_models import TINY_CLIP_CONFIG, tiny_clip, tiny_mask2former
from uae_data import scene_detect
from uae_data.detection import Detection
from uae_data.scenes import COLORS, Scene, SceneObject, render, sample_scene
from uae_eval.geneval import colour as colour_mod
from uae_eval.geneval import rules
from uae_eval.geneval.colour import (
    COLOR_CLASSES, COLOURERS, build_colourer, colour_candidates, crop_object,
)
from uae_eval.geneval.detect import DETECTORS, label_namer, mask_box, mask_instances
from uae_eval.geneval.detectors import build_detector
from uae_eval.geneval.prompts import load_class_names, official_class_names_path

GENEVAL_NAMES = load_class_names(official_class_names_path())


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; on a busy 2-core machine more threads thrash (50x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _noise_image(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


# ---- registries --------------------------------------------------------------------------------------

@pytest.mark.unit
def test_registries_name_the_backends_and_colour_classes_are_the_official_order():
    assert {"scene", "mask2former"} <= set(DETECTORS.names())
    assert {"scene", "clip"} <= set(COLOURERS.names())
    assert COLOR_CLASSES == list(rules.COLORS) == list(COLORS)


@pytest.mark.unit
def test_unknown_backend_option_is_a_one_line_error_naming_it():
    with pytest.raises(ValueError, match="unknown option 'colour' for detector 'scene'"):
        build_detector("scene", colour=True)
    with pytest.raises(KeyError, match="unknown detector 'yolo'"):
        build_detector("yolo")


# ---- scene backends ----------------------------------------------------------------------------------

@pytest.mark.unit
def test_scene_detector_wraps_scene_detect_batched():
    images = [render(sample_scene(s), 64) for s in (1, 2)]
    found = build_detector("scene")(images)
    for image, dets in zip(images, found):
        expected = scene_detect.detect(image)
        assert [(d.label, d.color, d.box, d.score) for d in dets] == [(d.label, d.color, d.box, d.score) for d in expected]
    assert build_detector("scene").provenance()["official_compatible"] is False


@pytest.mark.unit
def test_scene_colourer_keeps_scene_colours_and_fills_missing_ones_from_the_mask():
    scene = Scene((SceneObject("circle", "purple", "large", 0, 0), SceneObject("square", "orange", "large", 2, 2)))
    image = render(scene, 64)
    dets = build_detector("scene")([image])[0]
    truth = [d.color for d in dets]
    assert sorted(truth) == ["orange", "purple"]
    colourer = build_colourer("scene")
    colourer(image, dets)
    assert [d.color for d in dets] == truth
    blank = [Detection(d.label, d.score, d.box, d.mask) for d in dets]  # as from another detector: no colour
    blank.append(Detection("box-only", 0.9, dets[0].box))  # no mask: the box is the region
    colourer(image, blank)
    assert [d.color for d in blank] == truth + [truth[0]]
    recomputed = [Detection(d.label, d.score, d.box, d.mask, color="red") for d in dets]
    build_colourer("scene", recompute=True)(image, recomputed)
    assert [d.color for d in recomputed] == truth


# ---- Mask2Former post-processing (pure) --------------------------------------------------------------

@pytest.mark.unit
def test_mask_box_is_the_tight_box_with_exclusive_max_and_zero_when_empty():
    mask = np.zeros((6, 8), bool)
    mask[2:4, 3:7] = True
    assert mask_box(mask) == (3.0, 2.0, 7.0, 4.0)
    assert mask_box(np.zeros((6, 8), bool)) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.unit
def test_mask_instances_scores_are_class_prob_times_mean_sigmoid_inside_the_mask():
    class_logits = torch.tensor([[2.0, 0.0, 1.0], [0.0, 0.0, 5.0]])  # (Q=2, K+1=3)
    mask_logits = torch.full((2, 4, 4), -3.0)
    mask_logits[0, 1:3, 0:2] = torch.tensor([[1.0, 2.0], [3.0, 4.0]])  # query 1's mask stays empty
    dets = mask_instances(class_logits, mask_logits, (4, 4), (4, 4), (4, 4), {0: "cat", 1: "dog"}.get)
    probs = class_logits.softmax(-1)[:, :2]
    inside = torch.sigmoid(torch.tensor([1.0, 2.0, 3.0, 4.0])).mean()
    assert len(dets) == 4  # top 100 (query, class) pairs of 2 x 2; no threshold, no NMS
    best = dets[0]
    assert (best.label, best.box) == ("cat", (0.0, 1.0, 2.0, 3.0))
    assert best.score == pytest.approx(float(probs[0, 0] * inside), rel=1e-5)
    assert dets[1].label == "dog" and dets[1].score == pytest.approx(float(probs[0, 1] * inside), rel=1e-5)
    assert best.mask.dtype == bool and best.mask.sum() == 4
    empty = dets[2:]  # query 1: empty mask -> score 0, box (0, 0, 0, 0), as mmdet
    assert all(d.score == 0 and d.box == (0.0, 0.0, 0.0, 0.0) and not d.mask.any() for d in empty)
    assert len(mask_instances(class_logits, mask_logits, (4, 4), (4, 4), (4, 4), str, min_score=0.01)) == 2
    assert len(mask_instances(class_logits, mask_logits, (4, 4), (4, 4), (4, 4), str, max_detections=1)) == 1


@pytest.mark.unit
def test_mask_instances_drops_padding_before_resizing_to_the_image():
    class_logits = torch.tensor([[3.0, 0.0]])  # one query, one class
    mask_logits = torch.full((1, 8, 8), -5.0)
    mask_logits[0, 0:2, 2:4] = 5.0  # the image is the top-left 4 x 8 of an 8 x 8 padded input
    mask_logits[0, 6:8, :] = 5.0  # in the padding: must not appear
    dets = mask_instances(class_logits, mask_logits, (8, 8), (4, 8), (4, 8), str)
    assert dets[0].mask.shape == (4, 8)
    assert dets[0].box == (2.0, 0.0, 4.0, 2.0)


@pytest.mark.unit
def test_label_names_map_coco_spellings_to_geneval_and_label_map_wins():
    name = label_namer({0: "mouse", 1: "remote", 2: "keyboard", 3: "tv", 4: "person"}, {"person": "human"})
    assert [name(i) for i in range(5)] == ["computer mouse", "tv remote", "computer keyboard", "tv", "human"]


# ---- tiny Mask2Former through the real backend --------------------------------------------------------

@pytest.fixture(scope="module")
def m2f_dir(tmp_path_factory):
    return tiny_mask2former(tmp_path_factory.mktemp("mask2former"))


@pytest.fixture(scope="module")
def m2f(m2f_dir):
    return build_detector("mask2former", model=str(m2f_dir), device="cpu")


def _assert_valid(dets: list[Detection], width: int, height: int) -> None:
    assert dets and all(isinstance(d, Detection) for d in dets)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    for d in dets:
        assert d.label in GENEVAL_NAMES and 0.0 <= d.score <= 1.0 and d.color is None
        assert d.mask.dtype == bool and d.mask.shape == (height, width)
        assert d.box == mask_box(d.mask)
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height


@pytest.mark.integration
def test_tiny_mask2former_loads_by_local_path_and_returns_mmdet_style_detections(m2f):
    found = m2f([_noise_image(80, 48, 0)])
    assert len(found) == 1 and len(found[0]) == 100  # top 100 of 12 queries x 80 classes, nothing filtered
    _assert_valid(found[0], 80, 48)
    assert any(d.mask.any() for d in found[0])


@pytest.mark.integration
def test_tiny_mask2former_is_deterministic_and_batch_independent_across_image_sizes(m2f, m2f_dir):
    a, b = _noise_image(80, 48, 1), _noise_image(40, 56, 2)
    batch = m2f([a, b])
    _assert_valid(batch[0], 80, 48)
    _assert_valid(batch[1], 40, 56)
    again = build_detector("mask2former", model=str(m2f_dir), device="cpu")
    for image, dets in zip((a, b), batch):
        single = again([image])[0]
        assert [(d.label, d.score, d.box) for d in single] == [(d.label, d.score, d.box) for d in dets]
        assert all(np.array_equal(s.mask, d.mask) for s, d in zip(single, dets))


@pytest.mark.integration
def test_mask2former_provenance_is_never_official_and_names_the_checkpoint(m2f, m2f_dir):
    p = m2f.provenance()
    assert p["backend"] == "mask2former" and p["checkpoint"] == str(m2f_dir)
    assert p["official_compatible"] is False
    assert p["classes_not_in_geneval"] == [] and p["device"] == "cpu"
    json.dumps(p)


@pytest.mark.integration
def test_mask2former_aliases_coco_names_from_the_checkpoint_config(tmp_path):
    coco = dict(enumerate(GENEVAL_NAMES))
    coco.update({64: "mouse", 65: "remote", 66: "keyboard"})  # Detectron2 / mmdet spellings
    det = build_detector("mask2former", model=str(tiny_mask2former(tmp_path, num_queries=2, id2label=coco)), device="cpu")
    assert det.class_names() == GENEVAL_NAMES


@pytest.mark.unit
def test_missing_mask2former_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere: Mask2Former detector folder not found; .*detector_options.model=PATH"):
        build_detector("mask2former", model=str(tmp_path / "nowhere"), device="cpu")
    (tmp_path / "empty").mkdir()  # a folder that holds no model: transformers' own error, still one line
    with pytest.raises(ValueError, match="mask2former: cannot load"):
        build_detector("mask2former", model=str(tmp_path / "empty"), device="cpu")


# ---- official colour crop ----------------------------------------------------------------------------

def _grid_image() -> Image.Image:
    """6 wide x 4 high, pixel (x, y) = (10x, 10y, 7)."""
    arr = np.zeros((4, 6, 3), np.uint8)
    for y in range(4):
        for x in range(6):
            arr[y, x] = (10 * x, 10 * y, 7)
    return Image.fromarray(arr)


@pytest.mark.unit
def test_crop_object_greys_out_the_background_and_crops_with_pil_rounding():
    mask = np.zeros((4, 6), bool)
    mask[1, 2] = mask[2, 3] = True
    det = Detection("cat", 0.9, (1.5, 0.6, 4.5, 2.5), mask)  # PIL rounds halves to even: (2, 1, 4, 2)
    got = np.asarray(crop_object(_grid_image(), det))
    grey = (153, 153, 153)  # "#999"
    assert got.shape == (1, 2, 3)
    assert got.tolist() == [[[20, 10, 7], list(grey)]]
    det.box = (1.0, 0.0, 5.0, 3.0)
    got = np.asarray(crop_object(_grid_image(), det))
    expected = np.array([[grey] * 4, [grey, (20, 10, 7), grey, grey], [grey, grey, (30, 20, 7), grey]])
    assert np.array_equal(got, expected)


@pytest.mark.unit
def test_crop_object_original_background_no_mask_and_no_crop_options():
    image = _grid_image()
    mask = np.zeros((4, 6), bool)
    mask[0, 0] = True
    det = Detection("cat", 0.9, (1.0, 1.0, 3.0, 3.0), mask)
    assert np.array_equal(np.asarray(crop_object(image, det, bgcolor="original")), np.asarray(image)[1:3, 1:3])
    det.mask = None
    assert np.array_equal(np.asarray(crop_object(image, det)), np.asarray(image)[1:3, 1:3])
    det.mask = mask
    whole = np.asarray(crop_object(image, det, crop=False))
    assert whole.shape == (4, 6, 3) and whole[0, 0].tolist() == [0, 0, 7] and whole[3, 5].tolist() == [153, 153, 153]
    det.mask = np.zeros((3, 3), bool)
    with pytest.raises(ValueError, match="mask shape"):
        crop_object(image, det)


@pytest.mark.unit
def test_colour_candidates_cover_every_detection_the_rules_can_colour_check():
    rng = np.random.default_rng(0)
    dets = [Detection(str(rng.choice(["cat", "dog"])), float(rng.random()), (0.0, 0.0, 1.0, 1.0)) for _ in range(60)]
    chosen = colour_candidates(dets)
    kept = rules.filter_detections({"tag": "colors"}, dets)
    assert {id(d) for v in kept.values() for d in v} == {id(dets[i]) for i in chosen}
    assert all(dets[i].score > 0.3 for i in chosen)
    assert len(colour_candidates(dets, min_score=None, max_per_class=None)) == 60


# ---- tiny CLIP through the real backend --------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tiny_clip(tmp_path_factory.mktemp("clip"))


def _scene_with_detections(seed: int) -> tuple[Image.Image, list[Detection]]:
    image = render(sample_scene(seed, min_objects=3), 64)
    dets = [Detection(d.label, d.score, d.box, d.mask) for d in scene_detect.detect(image)]  # colours stripped
    return image, dets


@pytest.mark.integration
def test_tiny_clip_colours_every_candidate_with_one_of_the_ten_colours_deterministically(clip_dir):
    colourer = build_colourer("clip", model=str(clip_dir), device="cpu")
    image, dets = _scene_with_detections(3)
    dets.append(Detection("circle", 0.2, dets[0].box, dets[0].mask))  # below the rules' bar: left alone
    colourer(image, dets)
    assert all(d.color in COLOR_CLASSES for d in dets[:-1]) and dets[-1].color is None
    again = build_colourer("clip", model=f"local-dir:{clip_dir}", device="cpu")
    _, dets2 = _scene_with_detections(3)
    again(image, dets2)
    assert [d.color for d in dets2] == [d.color for d in dets[:-1]]
    p = colourer.provenance()
    assert p["backend"] == "clip" and p["official_compatible"] is False and p["pretrained"] is None
    json.dumps(p)


@pytest.mark.integration
def test_tiny_clip_caches_text_embeddings_per_class_name(clip_dir):
    colourer = build_colourer("clip", model=str(clip_dir), device="cpu")
    calls = []
    encode_text = colourer.model.encode_text
    colourer.model.encode_text = lambda tokens, **kw: calls.append(tokens.shape) or encode_text(tokens, **kw)
    image, dets = _scene_with_detections(4)
    colourer(image, dets)
    classes = {d.label for d in dets if d.score > 0.3}
    assert len(calls) == 10 * len(classes) and all(shape[0] == 3 for shape in calls)  # 3 templates per colour
    colourer(image, dets)
    assert len(calls) == 10 * len(classes)
    w = colourer.text_classifier(next(iter(classes)))
    assert w.shape == (TINY_CLIP_CONFIG["embed_dim"], 10)
    assert torch.allclose(w.norm(dim=0), torch.ones(10), atol=1e-5)


@pytest.mark.integration
def test_clip_predicts_argmax_of_100_cosine_on_the_official_crop(clip_dir):
    colourer = build_colourer("clip", model=str(clip_dir), device="cpu")
    image, dets = _scene_with_detections(5)
    colourer(image, dets)
    d = dets[0]
    with torch.no_grad():
        pixels = colourer.preprocess(crop_object(image, d)).unsqueeze(0)
        feats = torch.nn.functional.normalize(colourer.model.encode_image(pixels), dim=-1)
        logits = 100.0 * feats @ colourer.text_classifier(d.label)
    assert d.color == COLOR_CLASSES[int(logits.argmax())]


@pytest.mark.integration
def test_clip_loads_from_a_model_config_json_and_a_checkpoint_file_alike(clip_dir, tmp_path):
    config = tmp_path / "uae-tiny-clip-test.json"
    config.write_text(json.dumps(TINY_CLIP_CONFIG))
    by_file = build_colourer("clip", model="uae-tiny-clip-test", model_config=str(config),
                             pretrained=str(clip_dir / "open_clip_model.safetensors"), device="cpu")
    by_dir = build_colourer("clip", model=str(clip_dir), device="cpu")
    image, dets = _scene_with_detections(6)
    _, dets2 = _scene_with_detections(6)
    by_file(image, dets)
    by_dir(image, dets2)
    assert [d.color for d in dets] == [d.color for d in dets2]
    assert torch.allclose(by_file.text_classifier("circle"), by_dir.text_classifier("circle"))


@pytest.mark.unit
def test_clip_is_official_only_for_vit_l_14_openai_with_quickgelu_grey_background_and_cuda_fp16(monkeypatch):
    seen = {}

    def fake_load(model, pretrained, device, quick_gelu, model_config=None):
        seen.update(model=model, pretrained=pretrained, quick_gelu=quick_gelu)
        return torch.nn.Identity(), None, None

    monkeypatch.setattr(colour_mod, "load_open_clip", fake_load)
    assert build_colourer("clip", device="cuda").provenance()["official_compatible"] is True
    assert seen == {"model": "ViT-L-14", "pretrained": "openai", "quick_gelu": True}
    assert build_colourer("clip", device="cpu").provenance()["official_compatible"] is False
    assert build_colourer("clip", device="cuda", bgcolor="original").provenance()["official_compatible"] is False
    assert build_colourer("clip", device="cuda", pretrained="laion2b_s32b_b82k").provenance()["official_compatible"] is False
    assert seen["quick_gelu"] is False


@pytest.mark.gpu
def test_detector_and_clip_run_on_cuda_with_fp16_autocast(m2f_dir, clip_dir):
    det = build_detector("mask2former", model=str(m2f_dir))
    assert det.device == "cuda"
    found = det([_noise_image(80, 48, 0), _noise_image(64, 64, 1)])
    _assert_valid(found[0], 80, 48)
    _assert_valid(found[1], 64, 64)
    colourer = build_colourer("clip", model=str(clip_dir))
    assert colourer.amp
    image, dets = _scene_with_detections(3)
    colourer(image, dets)
    assert all(d.color in COLOR_CLASSES for d in dets if d.score > 0.3)
