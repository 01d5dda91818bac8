"""The scene world's object detector: colour regions plus shape templates, from pixels alone.

It returns the same `Detection` type as the Mask2Former backend, so GenEval's rules run unchanged on
scene images, and `read_scene` turns its answer back into a `Scene` to score reconstructions.
Works on any image size and tolerates noise and soft edges (see `classify_pixels`).
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import measure

from uae_data.detection import Detection, box_iou
from uae_data.scenes import (
    BACKGROUND, COLORS, GRID, SHAPES, SIZES, Scene, SceneObject, object_box, object_patch, render_array, sample_scene,
    shape_mask,
)

_COLOR_NAMES = list(COLORS)
_PALETTE = np.array([*COLORS.values(), BACKGROUND], np.float32)  # (11, 3); index 10 is the background
_BACKGROUND_INDEX = len(COLORS)
MAX_COLOR_DISTANCE = 90.0  # RGB distance beyond which a pixel belongs to no palette colour
_NOISY_DISTANCE = 12.0  # a pixel this far from every palette colour is not an exact render
_NEAR_DISTANCE = 48.0  # in inexact images, a pixel this close to a palette colour takes it (half the closest pair)
_NOISY_FRACTION = 0.02  # denoise when more than this share of pixels is inexact
_PINHOLE_FRACTION = 0.0005  # holes up to this share of the image are noise (a small ring's hole is ~4x larger)
MIN_AREA_FRACTION = 0.003  # components smaller than this share of the image are specks
_SIZE_NAMES = list(SIZES)
_SIZE_FRACTIONS = np.array(list(SIZES.values()))


def _as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image or an array (uint8, or float in [0, 1] or [0, 255]; gray or RGBA)."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB, got an array of shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float32)
        if arr.max(initial=0) <= 1.0:
            arr = arr * 255
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def _nearest_color(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index into the palette, distance to it), both (H, W)."""
    d2 = ((arr[:, :, None, :].astype(np.float32) - _PALETTE) ** 2).sum(-1)  # (H, W, 11)
    index = d2.argmin(-1)
    return index, np.sqrt(np.take_along_axis(d2, index[:, :, None], -1)[:, :, 0])


def _blend_color(arr: np.ndarray) -> np.ndarray:
    """(H, W) palette index for pixels read as a blend alpha * colour + (1 - alpha) * background.

    Soft (anti-aliased, blurred, generated) edges are such blends; nearest-colour would call a
    black-grey edge brown. A pixel takes the colour whose blend line passes closest, if alpha >= 0.5.
    """
    offset = arr.astype(np.float32) - _PALETTE[_BACKGROUND_INDEX]  # (H, W, 3)
    lines = _PALETTE[:_BACKGROUND_INDEX] - _PALETTE[_BACKGROUND_INDEX]  # (10, 3)
    alpha = np.clip(offset @ lines.T / (lines**2).sum(1), 0, 1)  # (H, W, 10)
    residual = ((offset[:, :, None, :] - alpha[..., None] * lines) ** 2).sum(-1)  # (H, W, 10)
    index = residual.argmin(-1)
    best_alpha = np.take_along_axis(alpha, index[:, :, None], -1)[:, :, 0]
    best_residual = np.sqrt(np.take_along_axis(residual, index[:, :, None], -1)[:, :, 0])
    index[(best_alpha < 0.5) | (best_residual > MAX_COLOR_DISTANCE)] = _BACKGROUND_INDEX
    return index


def classify_pixels(image: Image.Image | np.ndarray) -> np.ndarray:
    """(H, W) int map: index into COLORS for object pixels, -1 for background or unrecognised colour.

    Exact renders map pixel for pixel. In inexact images (noise, soft edges) a pixel near a palette
    colour takes it, a pixel far from all of them is read as a colour-background blend, and pinholes
    inside regions are filled.
    """
    arr = _as_rgb_array(image)
    index, dist = _nearest_color(arr)
    if (dist > _NOISY_DISTANCE).mean() > _NOISY_FRACTION:
        far = dist > _NEAR_DISTANCE
        index[far] = _blend_color(arr[far][None])[0]
        index[index == _BACKGROUND_INDEX] = -1
        _fill_pinholes(index, max(1, round(_PINHOLE_FRACTION * index.size)))
    else:
        index[(index == _BACKGROUND_INDEX) | (dist > MAX_COLOR_DISTANCE)] = -1
    return index


def _fill_pinholes(index: np.ndarray, max_area: int) -> None:
    """In place: give each hole of at most max_area pixels inside a colour region that colour (rings keep theirs)."""
    for color in np.unique(index[index >= 0]):
        region = index == color
        holes, n = ndimage.label(ndimage.binary_fill_holes(region) & ~region)
        if n:
            small = np.flatnonzero(np.bincount(holes.ravel())[1:] <= max_area) + 1
            index[np.isin(holes, small)] = color


def classify_shape(mask: np.ndarray) -> tuple[str, float]:
    """(shape, IoU) of the shape template that best fits a cropped bool mask stretched to its box."""
    h, w = mask.shape
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        template = shape_mask(shape, h, w)
        iou = float((template & mask).sum() / max(1, (template | mask).sum()))
        if iou > best_iou:
            best, best_iou = shape, iou
    return best, best_iou


def _grid_cell(box: tuple[float, float, float, float], height: int, width: int) -> tuple[int, int]:
    """(row, col) of the grid cell holding the box centre."""
    x1, y1, x2, y2 = box
    row = int((y1 + y2) / 2 // (height / GRID))
    col = int((x1 + x2) / 2 // (width / GRID))
    return min(GRID - 1, max(0, row)), min(GRID - 1, max(0, col))


def _match_grid_glyph(crop: np.ndarray, y1: int, x1: int, size: int) -> tuple[str, float]:
    """(shape, IoU) of the best grid-placed render (any shape and size, in the crop's cell) of a region.

    At 32 px small objects are 4-6 px wide and box-fitted templates blur together; comparing with the
    renderer's own pixels in place tells them apart. Off-grid (e.g. generated) objects simply fit worse.
    """
    h, w = crop.shape
    row, col = _grid_cell((x1, y1, x1 + w, y1 + h), size, size)
    area = int(crop.sum())
    best, best_iou = SHAPES[0], -1.0
    for shape in SHAPES:
        for size_name in SIZES:
            gy, gx, patch = object_patch(SceneObject(shape, "red", size_name, row, col), size)
            top, left = max(y1, gy), max(x1, gx)
            bottom, right = min(y1 + h, gy + patch.shape[0]), min(x1 + w, gx + patch.shape[1])
            inter = 0
            if bottom > top and right > left:
                ours = crop[top - y1:bottom - y1, left - x1:right - x1]
                inter = int((ours & patch[top - gy:bottom - gy, left - gx:right - gx]).sum())
            iou = inter / (area + int(patch.sum()) - inter)
            if iou > best_iou:
                best, best_iou = shape, iou
    return best, best_iou


# ---------------------------------------------------------------- honesty: what counts as an object
# A component of palette-coloured pixels is only an object when it looks like a render of one: a glyph
# of glyph size in a grid cell, a near-uniform palette colour, sharp edges, scene grey around it. Each
# rule is loose enough for renders under noise (sigma 20), JPEG (q 75), slight blur (sigma <= 0.7 px) and
# anti-aliasing, and each rejects some family of object-free images (benchmarks/detector_honesty.py).
MIN_EXTENT, MAX_EXTENT = 0.35, 1.0  # box side / cell side (glyphs 0.55-0.86, less a pixel or two at the tips)
MIN_EXTENT_SMALL = 0.3  # the same below 48 px, where a lost tip pixel is a tenth of a cell
MAX_ASPECT = 1.35  # glyph boxes are square; stripes, ramps and merged speckle are not
MAX_OFFSET = 0.25  # box centre to cell centre, per axis, in cells (renders: < 0.05)
MIN_SHAPE_IOU = 0.6  # best template / in-place glyph IoU (renders ~0.8-1.0; ragged speckle clusters lower)
MIN_CORE_ALPHA = 0.7  # interior's mean colour fraction on the grey-colour line (renders ~1, JPEG'd small ones 0.75)
MAX_CORE_RESIDUAL = 40.0  # interior's mean RGB distance off that line (sigma-20 noise ~25, JPEG q75 < 38)
MAX_COLOR_STD = 40.0  # mean per-channel std inside the region (sigma-20 noise gives ~20)
MIN_EDGE_STEP = 0.2  # colour fraction lost across the boundary, inner edge pixels vs the next pixels out
MIN_EDGE_STEP_SMALL = 0.35  # the same below 48 px, where glyphs are < 10 px and soft edges are blobs
MIN_BAND = 0.68  # interior's colour fraction minus that 2-3 px outside (blur sigma 1 ~0.8, blurry blobs < 0.66)
MIN_RING_FREE = 0.65  # share of that ring not taken by other colour regions (renders > 0.9)
MIN_RING_BACKGROUND = 0.6  # share of the pixels around the object that are scene grey (or grey-colour blends)
MAX_RING_RESIDUAL = 60.0  # a ring pixel this far from the grey-colour blend line is not background


def _disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return x * x + y * y <= radius * radius + radius  # a rounded square: 3x3 at radius 1


def object_evidence(arr: np.ndarray, index: np.ndarray, components: np.ndarray, label: int,
                    box: tuple[int, int, int, int], color: int) -> dict[str, float]:
    """Measurements of one component (pixels `components == label`, palette colour `color`) for `is_object`.

    extent/aspect/offset: its box against its grid cell; color_error/color_std: its interior (mask eroded
    once, or the mask when that is empty) against the palette colour; edge_step: mean colour fraction
    alpha (projection on the grey-colour line, clipped to [0, 1]) of its boundary pixels minus that of the
    pixels just outside (1.0 for a hard edge, ~0.5 at blur sigma 0.7, < 0.25 at sigma >= 1.5);
    ring_background: share of the pixels 1-2 px outside (other objects' pixels aside) on the grey-colour
    blend line with alpha < 0.6, and ring_free the share of the ring not taken by other colour regions.
    """
    h, w = index.shape
    y1, x1, y2, x2 = box
    pad = 3
    ty, tx, by, bx = max(0, y1 - pad), max(0, x1 - pad), min(h, y2 + pad), min(w, x2 + pad)
    sub = components[ty:by, tx:bx]
    mask = sub == label
    other = (sub != label) & (sub > 0)
    pix = arr[ty:by, tx:bx].astype(np.float32)
    grey = _PALETTE[_BACKGROUND_INDEX]
    target = _PALETTE[color]
    line = target - grey
    alpha_raw = (pix - grey) @ line / float(line @ line)
    residual = np.linalg.norm(pix - grey - alpha_raw[..., None] * line, axis=-1)
    alpha = np.clip(alpha_raw, 0, 1)

    cell_h, cell_w = h / GRID, w / GRID
    if h != w:
        cell_h = cell_w = min(cell_h, cell_w)
    bh, bw = (y2 - y1) / cell_h, (x2 - x1) / cell_w
    row, col = _grid_cell((x1, y1, x2, y2), h, w)
    offset = 0.0
    if h == w:
        offset = max(abs((y1 + y2) / 2 - (row + 0.5) * cell_h) / cell_h, abs((x1 + x2) / 2 - (col + 0.5) * cell_w) / cell_w)

    interior = ndimage.binary_erosion(mask)
    inside = pix[interior] if interior.sum() >= 3 else pix[mask]
    mean = inside.mean(0)
    boundary = mask & ~interior
    outside1 = ndimage.binary_dilation(mask, _disk(1)) & ~mask & ~other
    ring = ndimage.binary_dilation(mask, _disk(1)) & ~mask  # renders keep >= 1 px of grey between objects
    free = ring & ~other
    far = ndimage.binary_dilation(mask, _disk(3)) & ~ndimage.binary_dilation(mask, _disk(1)) & ~other
    core = alpha_raw[interior] if interior.sum() >= 3 else alpha_raw[mask]
    mres = residual[interior].mean() if interior.sum() >= 3 else residual[mask].mean()
    ok = (residual < MAX_RING_RESIDUAL) & (alpha_raw < 0.75)
    edge = float(alpha[boundary].mean() - alpha[outside1].mean()) if outside1.any() and boundary.any() else 0.0
    return {
        "extent_min": min(bh, bw), "extent_max": max(bh, bw), "aspect": max(bh, bw) / max(1e-6, min(bh, bw)),
        "offset": offset, "image_side": float(min(h, w)),
        "color_error": float(np.linalg.norm(mean - target)), "color_std": float(inside.std(0).mean()),
        "edge_step": edge,
        "band": float(np.clip(core, 0, 1).mean() - alpha[far].mean()) if far.any() else 0.0,
        "core_alpha": float(core.mean()), "core_residual": float(mres),
        "ring_free": float(free.sum() / max(1, ring.sum())),
        "ring_background": float(ok[free].mean()) if free.any() else 0.0,
    }


def _fits_cell(box: tuple[int, int, int, int], h: int, w: int) -> bool:
    """Cheap first gate (box size, aspect and placement only; see `object_evidence`)."""
    y1, x1, y2, x2 = box
    cell_h, cell_w = h / GRID, w / GRID
    if h != w:
        cell_h = cell_w = min(cell_h, cell_w)
    bh, bw = (y2 - y1) / cell_h, (x2 - x1) / cell_w
    if not ((MIN_EXTENT if min(h, w) >= 48 else MIN_EXTENT_SMALL) <= min(bh, bw) and max(bh, bw) <= MAX_EXTENT and max(bh, bw) <= MAX_ASPECT * min(bh, bw)):
        return False
    if h == w:
        row, col = _grid_cell((x1, y1, x2, y2), h, w)
        if max(abs((y1 + y2) / 2 - (row + 0.5) * cell_h) / cell_h,
               abs((x1 + x2) / 2 - (col + 0.5) * cell_w) / cell_w) > MAX_OFFSET:
            return False
    return True


def is_object(evidence: dict[str, float], shape_iou: float) -> bool:
    """The honesty rules: every measurement of `object_evidence` (and the shape fit) within its bound."""
    small = evidence["image_side"] < 48
    return ((MIN_EXTENT_SMALL if small else MIN_EXTENT) <= evidence["extent_min"] and evidence["extent_max"] <= MAX_EXTENT
            and evidence["aspect"] <= MAX_ASPECT and evidence["offset"] <= MAX_OFFSET
            and shape_iou >= MIN_SHAPE_IOU
            and evidence["core_alpha"] >= MIN_CORE_ALPHA and evidence["core_residual"] <= MAX_CORE_RESIDUAL
            and evidence["color_std"] <= MAX_COLOR_STD
            and evidence["edge_step"] >= (MIN_EDGE_STEP_SMALL if small else MIN_EDGE_STEP) and evidence["band"] >= MIN_BAND
            and evidence["ring_free"] >= MIN_RING_FREE and evidence["ring_background"] >= MIN_RING_BACKGROUND)


def detect(image: Image.Image | np.ndarray, min_area_fraction: float = MIN_AREA_FRACTION) -> list[Detection]:
    """Objects in a scene-world image, highest score first.

    label is the shape, color the colour name, box the tight xyxy box (x2/y2 = max + 1, as `object_box`),
    mask a bool (H, W) array, score the IoU of the region with its best shape template (about 0.8-1.0
    on clean renders). Only components that pass `is_object` are objects: noise, colour fields, blurry
    blobs, stripes and the like give none.
    """
    arr = _as_rgb_array(image)
    index = classify_pixels(arr)
    h, w = index.shape
    components = measure.label(index, background=-1, connectivity=2)
    min_area = max(2.0, min_area_fraction * h * w)
    detections = []
    for region in measure.regionprops(components):
        if region.area < min_area or not _fits_cell(region.bbox, h, w):
            continue
        y1, x1, y2, x2 = region.bbox
        crop = region.image
        shape, iou = classify_shape(crop)
        if h == w:
            grid_shape, grid_iou = _match_grid_glyph(crop, y1, x1, h)
            if grid_iou >= iou:  # ties go to the in-place render: it is exact on clean renders
                shape, iou = grid_shape, grid_iou
        if iou < MIN_SHAPE_IOU:
            continue
        y, x = region.coords[0]
        color = int(index[y, x])
        if not is_object(object_evidence(arr, index, components, region.label, region.bbox, color), iou):
            continue
        mask = np.zeros((h, w), bool)
        mask[y1:y2, x1:x2] = crop
        detections.append(Detection(label=shape, score=max(iou, 1e-3), box=(float(x1), float(y1), float(x2), float(y2)),
                                    mask=mask, color=_COLOR_NAMES[color]))
    return sorted(detections, key=lambda d: -d.score)


def _size_of(d: Detection, row: int, col: int, height: int, width: int) -> str:
    """The size whose render box is closest to the detected box (pointed shapes lose ~1 px at their tips).

    Non-square images fall back to the box extent as a fraction of a cell.
    """
    x1, y1, x2, y2 = d.box
    if height != width:
        extent = max((x2 - x1) * GRID / width, (y2 - y1) * GRID / height)
        return _SIZE_NAMES[int(np.abs(_SIZE_FRACTIONS - extent).argmin())]
    gaps = [sum(abs(a - b) for a, b in zip(d.box, object_box(SceneObject(d.label, "red", z, row, col), height)))
            for z in _SIZE_NAMES]
    return _SIZE_NAMES[int(np.argmin(gaps))]


def read_scene(image: Image.Image | np.ndarray, detections: list[Detection] | None = None) -> Scene:
    """The scene an image shows: each detection's cell from its box centre, its size from its box extent.

    When several detections fall in one cell the highest-scoring one is kept.
    """
    if detections is None:
        detections = detect(image)
    h, w = _as_rgb_array(image).shape[:2]
    found: dict[tuple[int, int], SceneObject] = {}
    for d in sorted(detections, key=lambda d: -d.score):
        if d.color is None or d.label not in SHAPES:
            continue
        row, col = _grid_cell(d.box, h, w)
        found.setdefault((row, col), SceneObject(d.label, d.color, _size_of(d, row, col, h, w), row, col))
    return Scene(tuple(found.values()))


def scene_recovered(scene: Scene, detections: list[Detection], size: int, min_iou: float = 0.8) -> bool:
    """True when detections match the scene's objects one to one (shape, colour, box IoU >= min_iou), no extras."""
    if len(detections) != len(scene.objects):
        return False
    unused = list(detections)
    for obj in scene.objects:
        box = object_box(obj, size)
        match = next((d for d in unused
                      if (d.label, d.color) == (obj.shape, obj.color) and box_iou(d.box, box) >= min_iou), None)
        if match is None:
            return False
        unused.remove(match)
    return True


def recovery_rate(n: int, size: int = 64, seed: int = 0) -> float:
    """Share of n seeded scenes (1-6 objects) rendered at size x size whose every object `detect` recovers."""
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n):
        scene = sample_scene(rng)
        hits += scene_recovered(scene, detect(render_array(scene, size)), size)
    return hits / n
