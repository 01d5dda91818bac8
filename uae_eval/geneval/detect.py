"""GenEval object detectors (registry): `scene` for the scene world, `mask2former` for real images.

A detector is built by `build_detector(name, **options)` and called on a batch of PIL images:
`detector(images) -> list[list[Detection]]`, one list per image, best score first. Every detection
carries label (a class name), score in [0, 1], box (x1, y1, x2, y2) in pixels and a bool (H, W) mask.
`detector.provenance()` says which backend and weights made the detections and whether they are the
official GenEval detector's (`official_compatible`); results record it so numbers stay traceable.

GenEval (facts §3) uses mmdetection's Swin-S Mask2Former: score = class probability x mean mask
sigmoid inside the mask, the top 100 (query, class) pairs, box = tight box around the mask, no NMS.
The `mask2former` backend reproduces that post-processing on any transformers Mask2Former checkpoint
(`mask_instances`), and leaves all filtering (score > 0.3 / 0.9, top 16 per class) to the rules.
The transformers checkpoints are a different training run from GenEval's mmdet weights (facts §8), so
its scores are never official-compatible; only the post-processing is the same.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from uae_data import scene_detect
from uae_data.core.device import default_device
from uae_data.detection import Detection
from uae_data.core.registry import Registry

DEFAULT_MASK2FORMER = "facebook/mask2former-swin-small-coco-instance"

# COCO class names as Detectron2 / mmdet / transformers configs spell them -> GenEval's object_names.txt.
# GenEval keeps COCO's 80-class order but renames three classes; older VOC-style spellings are here too
# so a checkpoint whose id2label uses them still lands on GenEval's names.
COCO_TO_GENEVAL: dict[str, str] = {
    "mouse": "computer mouse",
    "remote": "tv remote",
    "keyboard": "computer keyboard",
    "tvmonitor": "tv",
    "tv monitor": "tv",
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "sofa": "couch",
    "pottedplant": "potted plant",
    "diningtable": "dining table",
    "hair dryer": "hair drier",
}


class Detector(Protocol):
    def __call__(self, images: list[Image.Image]) -> list[list[Detection]]: ...

    def provenance(self) -> dict: ...


DETECTORS: Registry = Registry("detector")


def build_from_registry(registry: Registry, name: str, options: dict[str, Any]) -> Any:
    """registry.get(name)(**options), with a one-line error naming any option the backend does not take."""
    factory = registry.get(name)
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        known = [k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r} for {registry.what} {name!r} (known: {', '.join(known)})")
    return factory(**options)


def upright_rgb(image: Image.Image) -> Image.Image:
    """EXIF rotation applied, RGB: the image GenEval's detector and colour crops both see."""
    return ImageOps.exif_transpose(image).convert("RGB")


@DETECTORS.register("scene")
class SceneDetector:
    """The scene world's classical detector (uae_data.scene_detect): shape labels, exact colours filled."""

    def __init__(self, min_area_fraction: float = scene_detect.MIN_AREA_FRACTION) -> None:
        self.min_area_fraction = min_area_fraction

    def __call__(self, images: list[Image.Image]) -> list[list[Detection]]:
        return [scene_detect.detect(upright_rgb(im), min_area_fraction=self.min_area_fraction) for im in images]

    def provenance(self) -> dict:
        return {"backend": "scene", "checkpoint": None, "official_compatible": False,
                "min_area_fraction": self.min_area_fraction}


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight xyxy box of a bool (H, W) mask, x2/y2 = max + 1 (mmdet `mask2bbox`); (0, 0, 0, 0) when empty."""
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    if not len(cols) or not len(rows):
        return (0.0, 0.0, 0.0, 0.0)
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def mask_instances(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    input_size: tuple[int, int],
    valid_size: tuple[int, int],
    image_size: tuple[int, int],
    label_name: Callable[[int], str],
    max_detections: int = 100,
    min_score: float = 0.0,
) -> list[Detection]:
    """One image's Mask2Former outputs -> detections, as mmdet's MaskFormerFusionHead.instance_postprocess.

    class_logits (Q, K+1) (last = no object); mask_logits (Q, h, w) at the model's mask stride.
    input_size (H_in, W_in) is the network input, valid_size the part of it holding the image (the rest is
    padding), image_size (H, W) the original image. Mask logits are upsampled bilinearly to the input, cropped
    to the valid part, resized bilinearly to the image, then thresholded at 0. The top `max_detections`
    (query, class) pairs by class probability are kept; score = probability x mean sigmoid inside the mask.
    Detections with score < min_score are dropped; the rest come best first. An empty mask gives box
    (0, 0, 0, 0) and score 0, as mmdet.
    """
    probs = class_logits.float().softmax(-1)[:, :-1]  # (Q, K)
    n_classes = probs.shape[1]
    top_probs, flat = probs.flatten().topk(min(max_detections, probs.numel()))
    queries, labels = flat // n_classes, flat % n_classes
    unique, inverse = torch.unique(queries, return_inverse=True)
    logits = F.interpolate(mask_logits[unique].float()[None], size=input_size, mode="bilinear", align_corners=False)[0]
    logits = logits[:, : valid_size[0], : valid_size[1]]
    logits = F.interpolate(logits[None], size=image_size, mode="bilinear", align_corners=False)[0]  # (U, H, W)
    binary = logits > 0
    mask_scores = (logits.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)  # (U,)
    scores = (top_probs * mask_scores[inverse]).tolist()
    masks = binary.cpu().numpy()
    inverse, labels = inverse.tolist(), labels.tolist()
    detections = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        if scores[i] < min_score:
            continue
        mask = masks[inverse[i]].copy()
        detections.append(Detection(label=label_name(labels[i]), score=float(scores[i]), box=mask_box(mask), mask=mask))
    return detections


def label_namer(id2label: dict, label_map: dict[str, str] | None = None) -> Callable[[int], str]:
    """Class id -> GenEval class name: the config's name, then `label_map`, else the COCO_TO_GENEVAL alias."""
    label_map = label_map or {}
    names = {int(k): str(v) for k, v in id2label.items()}

    def name(i: int) -> str:
        raw = names.get(i, f"LABEL_{i}")
        return label_map.get(raw, COCO_TO_GENEVAL.get(raw, raw))

    return name


def _valid_size(pixel_mask: torch.Tensor | None, input_size: tuple[int, int]) -> tuple[int, int]:
    """(rows, cols) of the network input that hold the image (pixel_mask 1), padding excluded."""
    if pixel_mask is None:
        return input_size
    rows, cols = pixel_mask.bool().any(1), pixel_mask.bool().any(0)
    return int(rows.sum()), int(cols.sum())


@DETECTORS.register("mask2former")
class Mask2FormerDetector:
    """transformers Mask2FormerForUniversalSegmentation (COCO instance) by hub name or local path.

    model           hub name or local folder (config.json + weights + preprocessor_config.json)
    device          "cuda" | "cpu" | ...; default cuda when available
    dtype           "float32" (default) | "bfloat16" | "float16" for the forward pass; post-processing is float32
    max_detections  top (query, class) pairs kept per image (mmdet/GenEval: 100)
    min_score       drop detections scoring below this (default 0: keep all; the GenEval rules filter)
    label_map       {config label name: GenEval class name}, applied before the built-in COCO_TO_GENEVAL aliases
    image_size      processor `size` override, e.g. {"shortest_edge": 800, "longest_edge": 1333} (mmdet's 1333x800)

    Images are batched by size: the transformers model ignores pixel_mask, so padding would change the
    result of a smaller image in a mixed batch; grouping keeps each image's detections batch-independent.
    """

    def __init__(
        self,
        model: str = DEFAULT_MASK2FORMER,
        device: str | None = None,
        dtype: str = "float32",
        max_detections: int = 100,
        min_score: float = 0.0,
        label_map: dict[str, str] | None = None,
        image_size: dict | None = None,
    ) -> None:
        from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"mask2former: dtype must be float32, bfloat16 or float16, got {dtype!r}")
        self.model_name = str(model)
        self.device = device or default_device()
        self.dtype = getattr(torch, dtype)
        self.max_detections, self.min_score = max_detections, min_score
        self.label_map = dict(label_map or {})
        self.image_size = image_size
        from uae_data.model_refs import require_model

        require_model(self.model_name, "detector_options.model=PATH (a local folder)", "Mask2Former detector")
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.model_name)
            self.model = Mask2FormerForUniversalSegmentation.from_pretrained(self.model_name)
        except OSError as e:
            raise ValueError(f"mask2former: cannot load {self.model_name!r} (a hub name or a local folder with "
                             f"config.json, weights and preprocessor_config.json): {e}") from None
        self.model.to(self.device, self.dtype).eval()
        self.label_name = label_namer(self.model.config.id2label, self.label_map)

    @torch.inference_mode()
    def __call__(self, images: list[Image.Image]) -> list[list[Detection]]:
        images = [upright_rgb(im) for im in images]
        out: list[list[Detection] | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.size, []).append(i)
        kwargs = {"size": self.image_size} if self.image_size else {}
        for (width, height), idx in groups.items():
            inputs = self.processor(images=[images[i] for i in idx], return_tensors="pt", **kwargs)
            pixel_values = inputs["pixel_values"].to(self.device, self.dtype)  # (B, 3, H_in, W_in)
            pixel_mask = inputs.get("pixel_mask")
            outputs = self.model(pixel_values=pixel_values)
            input_size = tuple(pixel_values.shape[-2:])
            for b, i in enumerate(idx):
                out[i] = mask_instances(
                    outputs.class_queries_logits[b], outputs.masks_queries_logits[b], input_size,
                    _valid_size(None if pixel_mask is None else pixel_mask[b], input_size), (height, width),
                    self.label_name, self.max_detections, self.min_score)
        return out  # type: ignore[return-value]

    def class_names(self) -> list[str]:
        """The model's classes as GenEval names (after label_map and aliases), in class-id order."""
        return [self.label_name(i) for i in sorted(int(k) for k in self.model.config.id2label)]

    def provenance(self) -> dict:
        from uae_eval.geneval.prompts import load_class_names, official_class_names_path

        geneval = set(load_class_names(official_class_names_path()))
        return {
            "backend": "mask2former",
            "checkpoint": self.model_name,
            "official_compatible": False,  # transformers checkpoints are not GenEval's mmdet weights (facts §8)
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_detections": self.max_detections,
            "min_score": self.min_score,
            "image_size": self.image_size or dict(getattr(self.processor, "size", None) or {}),
            "label_map": self.label_map,
            "classes_not_in_geneval": [n for n in self.class_names() if n not in geneval],
        }
