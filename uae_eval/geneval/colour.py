"""GenEval colour classifiers (registry): `scene` (exact palette lookup) and `clip` (the official open_clip zero-shot).

A classifier is built by `build_colourer(name, **options)` and called as `colourer(image, detections)`:
it fills `det.color` in place (one of COLOR_CLASSES) for the detections the rules could colour-check,
and leaves the others as they are. `colourer.provenance()` names the backend and weights and says
whether it is the official GenEval colour classifier (`official_compatible`).

The official procedure (evaluation/evaluate_images.py `ImageCrops`, `color_classification`, with
clip_benchmark 1.4.0 zero-shot; facts §5): the image EXIF-rotated and RGB, pixels outside the mask set
to #999 grey, PIL-cropped to the box; open_clip ViT-L-14 `openai` with its eval transform; three
templates per colour, text embeddings normalised, averaged, normalised again; prediction = argmax of
100 x cosine, under fp16 autocast on CUDA. One text classifier per class name, cached.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from uae_data import scene_detect, scenes
from uae_data.detection import Detection
from uae_data.core.registry import Registry
from uae_data.core.device import default_device
from uae_eval.geneval.detect import build_from_registry, upright_rgb

COLOR_CLASSES: list[str] = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
TEMPLATES: tuple[str, ...] = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")
OFFICIAL_CLIP = ("ViT-L-14", "openai")
OFFICIAL_BGCOLOR = "#999"


class Colourer(Protocol):
    def __call__(self, image: Image.Image, detections: list[Detection]) -> None: ...

    def provenance(self) -> dict: ...


COLOURERS: Registry = Registry("colour classifier")


def build_colourer(name: str, **options: Any) -> Colourer:
    """A colour classifier by registry name (`scene` | `clip`) with backend options (see each class)."""
    return build_from_registry(COLOURERS, name, options)


def colour_candidates(detections: list[Detection], min_score: float | None = 0.3, max_per_class: int | None = 16) -> list[int]:
    """Indices of the detections the GenEval rules can colour-check: per class, score > min_score, the best
    max_per_class in the rules' order (numpy argsort reversed). None lifts a limit.

    The rules keep score > 0.3 (0.9 on counting prompts, which have no colours) and the top 16 per class
    before NMS, so with the defaults every detection a colour check can reach is classified, and no other.
    """
    by_class: dict[str, list[int]] = {}
    for i, d in enumerate(detections):
        by_class.setdefault(d.label, []).append(i)
    chosen = []
    for idx in by_class.values():
        scores = np.array([detections[i].score for i in idx], dtype=float)
        order = np.argsort(scores)[::-1]
        if min_score is not None:
            order = order[scores[order] > min_score]
        chosen += [idx[j] for j in order[:max_per_class]]
    return chosen


def crop_object(image: Image.Image, det: Detection, bgcolor: str = OFFICIAL_BGCOLOR, crop: bool = True) -> Image.Image:
    """The crop the official `ImageCrops` hands to CLIP for one detection.

    image is used as given (callers apply EXIF rotation first) and converted to RGB. Pixels outside
    det.mask become `bgcolor` (official option bgcolor, default "#999"; "original" keeps the image); no
    mask keeps the whole image. Then PIL crops to det.box, rounding each coordinate (Python round: halves
    to even), unless crop is False (official option crop=0).
    """
    rgb = image.convert("RGB")
    if det.mask is not None:
        if tuple(det.mask.shape) != rgb.size[::-1]:
            raise ValueError(f"mask shape {tuple(det.mask.shape)} does not match the image (H, W) {rgb.size[::-1]}")
        blank = rgb.copy() if bgcolor == "original" else Image.new("RGB", rgb.size, color=bgcolor)
        rgb = Image.composite(rgb, blank, Image.fromarray(np.asarray(det.mask, dtype=bool)))
    return rgb.crop(tuple(det.box)) if crop else rgb


@COLOURERS.register("scene")
class SceneColourer:
    """Exact colours for scene-world images: scene detections already carry theirs (palette lookup).

    A detection without a colour (e.g. from another detector), or every one when recompute is True, takes
    the palette colour most of its mask's pixels map to (scene_detect.classify_pixels), or, when none map,
    the palette colour nearest the mask's mean RGB. No mask: the box is the region.
    """

    def __init__(self, recompute: bool = False) -> None:
        self.recompute = recompute

    def __call__(self, image: Image.Image, detections: list[Detection]) -> None:
        todo = [d for d in detections if self.recompute or d.color is None]
        if not todo:
            return
        rgb = np.asarray(upright_rgb(image))
        index = scene_detect.classify_pixels(rgb)  # (H, W), index into scenes.COLORS or -1
        palette = np.array(list(scenes.COLORS.values()), np.float32)
        for d in todo:
            region = d.mask if d.mask is not None else _box_region(d.box, index.shape)
            if region.shape != index.shape or not region.any():
                continue
            votes = index[region]
            votes = votes[votes >= 0]
            if len(votes):
                d.color = COLOR_CLASSES[int(np.bincount(votes, minlength=len(COLOR_CLASSES)).argmax())]
            else:
                mean = rgb[region].astype(np.float32).mean(0)
                d.color = COLOR_CLASSES[int(((palette - mean) ** 2).sum(1).argmin())]

    def provenance(self) -> dict:
        return {"backend": "scene", "checkpoint": None, "official_compatible": False, "recompute": self.recompute}


def _box_region(box: tuple[float, ...], shape: tuple[int, int]) -> np.ndarray:
    region = np.zeros(shape, bool)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    region[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = True
    return region


def is_self_contained(model: str) -> bool:
    """True for open_clip names that bring their own weights (hf-hub:, local-dir:, a local folder)."""
    return model.startswith(("local-dir:", "hf-hub:")) or Path(model).is_dir()


def load_open_clip(model: str, pretrained: str | None, device: str, quick_gelu: bool, model_config: str | None = None,
                   option: str = "colour_options.model / colour_options.pretrained"):
    """(model, eval transform, tokenizer) from open_clip, by built-in name + pretrained tag or file, a
    `hf-hub:` / `local-dir:` name, or a plain local folder (open_clip_config.json + weights, as open_clip's
    save_for_hf writes). model_config: a model config JSON registered under its file stem first."""
    import open_clip

    if model_config:
        if not Path(model_config).is_file():
            raise ValueError(f"clip: model_config {model_config!r} is not a file (a JSON model config)")
        open_clip.add_model_config(model_config)
    from uae_data.model_refs import require_open_clip

    require_open_clip(str(model), pretrained, option)
    name = str(model)
    if Path(name).is_dir():
        name = f"local-dir:{name}"
    try:
        clip, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None if is_self_contained(name) else (pretrained or None), device=device,
            force_quick_gelu=quick_gelu)
    except (RuntimeError, FileNotFoundError, ValueError) as e:
        raise ValueError(f"clip: cannot load model {model!r} with pretrained {pretrained!r}: {e}") from None
    return clip.eval(), preprocess, open_clip.get_tokenizer(name)


@COLOURERS.register("clip")
class ClipColourer:
    """open_clip zero-shot colour classification, exactly as GenEval's (module docstring).

    model          open_clip name ("ViT-L-14"), "hf-hub:org/repo", "local-dir:PATH" or a local folder
    pretrained     tag ("openai") or checkpoint file, for built-in names; ignored for folders and hf-hub
    model_config   optional model config JSON, registered with open_clip under its file stem (then model = stem)
    quick_gelu     force QuickGELU; default True for pretrained "openai": open_clip 2.20 (GenEval's pin) built
                   OpenAI weights with QuickGELU, open_clip >= 2.2x needs it forced or it silently uses GELU
    device         default cuda when available; amp = fp16 autocast on CUDA (official), ignored on CPU
    bgcolor, crop  official options: background outside the mask ("#999" | "original" | any PIL colour), crop to box
    min_score, max_per_class  which detections get a colour (colour_candidates); None = all
    batch_size     crops per forward pass (official 16)
    """

    def __init__(
        self,
        model: str = OFFICIAL_CLIP[0],
        pretrained: str | None = OFFICIAL_CLIP[1],
        model_config: str | None = None,
        quick_gelu: bool | None = None,
        device: str | None = None,
        amp: bool = True,
        bgcolor: str = OFFICIAL_BGCOLOR,
        crop: bool = True,
        min_score: float | None = 0.3,
        max_per_class: int | None = 16,
        batch_size: int = 16,
    ) -> None:
        self.model_name, self.model_config = str(model), model_config
        self.pretrained = None if is_self_contained(self.model_name) else pretrained  # folders carry their weights
        self.quick_gelu = self.pretrained == "openai" if quick_gelu is None else bool(quick_gelu)
        self.device = device or default_device()
        self.amp = amp and self.device.startswith("cuda")
        self.bgcolor, self.crop = bgcolor, crop
        self.min_score, self.max_per_class, self.batch_size = min_score, max_per_class, batch_size
        self.model, self.preprocess, self.tokenizer = load_open_clip(
            self.model_name, self.pretrained, self.device, self.quick_gelu, model_config)
        self._text_cache: dict[str, torch.Tensor] = {}

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()

    @torch.no_grad()
    def text_classifier(self, class_name: str) -> torch.Tensor:
        """(D, 10) colour text embeddings for one class name (clip_benchmark `zero_shot_classifier`), cached."""
        if class_name not in self._text_cache:
            with self._autocast():
                weights = []
                for c in COLOR_CLASSES:
                    tokens = self.tokenizer([t.format(c=c, cls=class_name) for t in TEMPLATES]).to(self.device)
                    emb = F.normalize(self.model.encode_text(tokens), dim=-1).mean(dim=0)  # (D,)
                    weights.append(emb / emb.norm())
                self._text_cache[class_name] = torch.stack(weights, dim=1)
        return self._text_cache[class_name]

    @torch.no_grad()
    def classify(self, crops: list[Image.Image], class_name: str) -> list[str]:
        """A colour for each crop of an object of class class_name (clip_benchmark `run_classification`)."""
        classifier = self.text_classifier(class_name)
        colours = []
        for start in range(0, len(crops), self.batch_size):
            pixels = torch.stack([self.preprocess(c) for c in crops[start:start + self.batch_size]]).to(self.device)
            with self._autocast():
                features = F.normalize(self.model.encode_image(pixels), dim=-1)  # (B, D)
                logits = 100.0 * features @ classifier  # (B, 10)
            colours += [COLOR_CLASSES[i] for i in logits.float().argmax(1).tolist()]
        return colours

    def __call__(self, image: Image.Image, detections: list[Detection]) -> None:
        """Fill .color of the colour candidates, class by class. A box that crops to nothing (an empty
        mask's (0, 0, 0, 0), which never passes the rules' bar) leaves .color as it was."""
        chosen = colour_candidates(detections, self.min_score, self.max_per_class)
        if not chosen:
            return
        image = upright_rgb(image)
        by_class: dict[str, list[tuple[int, Image.Image]]] = {}
        for i in chosen:
            crop = crop_object(image, detections[i], self.bgcolor, self.crop)
            if crop.width > 0 and crop.height > 0:
                by_class.setdefault(detections[i].label, []).append((i, crop))
        for label, items in by_class.items():
            for (i, _), colour in zip(items, self.classify([c for _, c in items], label)):
                detections[i].color = colour

    def provenance(self) -> dict:
        import open_clip

        official = ((self.model_name, self.pretrained) in (OFFICIAL_CLIP, ("ViT-L-14-quickgelu", "openai"))
                    and self.quick_gelu and self.model_config is None and self.bgcolor == OFFICIAL_BGCOLOR
                    and self.crop and self.amp)
        return {
            "backend": "clip",
            "checkpoint": self.model_name,
            "pretrained": self.pretrained,
            "official_compatible": bool(official),  # GenEval: ViT-L-14 openai, #999 background, fp16 autocast on CUDA
            "quick_gelu": self.quick_gelu,
            "device": self.device,
            "amp": self.amp,
            "bgcolor": self.bgcolor,
            "crop": self.crop,
            "min_score": self.min_score,
            "max_per_class": self.max_per_class,
            "open_clip": open_clip.__version__,
        }
