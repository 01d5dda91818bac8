"""DPG-Bench's image layout: one `<item_id>.png` per prompt, a 2x2 grid of tiles of R px.

The official scorer crops tile k at (0,0), (R,0), (0,R), (R,R) (k = 0 top left, 1 top right, 2 bottom left,
3 bottom right) and judges the first `pic-num` tiles (4 in published numbers). PIL's crop pads a box that
runs off the image with black, so an image too small for its tiles would be judged on padding: uae refuses
it instead (`ImageFailure`). Painting writes the same layout, resumably: an item whose PNG is already there
and readable is read back, not painted again; a PNG is written under a temporary name and renamed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

from PIL import Image

TILE_ORIGINS = ((0, 0), (1, 0), (0, 1), (1, 1))  # (x, y) in tiles: top left, top right, bottom left, bottom right


class ImageFailure(Exception):
    """An image the official scorer would fail on (unreadable, wrong size): refused, or left out with --allow-partial."""


def tile_boxes(resolution: int, tiles: int) -> list[tuple[int, int, int, int]]:
    """The official crop boxes (left, top, right, bottom) of the first `tiles` tiles."""
    r = resolution
    return [(x * r, y * r, (x + 1) * r, (y + 1) * r) for x, y in TILE_ORIGINS[:tiles]]


def tile_side(image: Image.Image, tiles: int, resolution: int | None) -> int:
    """R: the configured resolution, or half the grid's width (the whole width for a single tile)."""
    if resolution:
        return resolution
    return image.width if tiles == 1 else image.width // 2


def crop_tiles(image: Image.Image, tiles: int, resolution: int | None, name: str) -> list[Image.Image]:
    """The tiles the official scorer judges; an image smaller than their boxes is an ImageFailure."""
    r = tile_side(image, tiles, resolution)
    boxes = tile_boxes(r, tiles)
    need_w, need_h = max(b[2] for b in boxes), max(b[3] for b in boxes)
    if r < 1 or image.width < need_w or image.height < need_h:
        raise ImageFailure(f"{name}: {image.width}x{image.height} px cannot hold {tiles} tile(s) of {r} px "
                           f"(needs {need_w}x{need_h}); set resolution= to the tile side it was painted at")
    return [image.crop(b) for b in boxes]


def open_image(path: Path) -> Image.Image:
    """Decode one image fully now, as stored (no EXIF rotation: the official script crops the file as it is), in
    RGB; a broken file is named here rather than failing mid-scoring."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:  # PIL: truncated / not an image / bad header
        raise ImageFailure(f"{path}: cannot read this image ({e})") from None


def compose(tiles: Sequence[Image.Image]) -> Image.Image:
    """The official grid of painted tiles (one tile: the tile itself); tiles must share one size."""
    sizes = {t.size for t in tiles}
    if len(sizes) != 1:
        raise ValueError(f"tiles of different sizes {sorted(sizes)}; a grid needs one tile size")
    if len(tiles) == 1:
        return tiles[0].convert("RGB")
    w, h = tiles[0].size
    grid = Image.new("RGB", (2 * w, 2 * h))
    for tile, (x, y) in zip(tiles, TILE_ORIGINS):
        grid.paste(tile.convert("RGB"), (x * w, y * h))
    return grid


def tile_seed(seed: int, index: int, tiles: int, k: int) -> int:
    """Tile k of item number `index` (CSV order) is painted from seed·100003 + index·tiles + k."""
    return seed * 100003 + index * tiles + k


def paint_items(prompts: Sequence[tuple[int, str, str]], generate: Callable, tiles: int, seed: int,
                batch_size: int, out: Path | None, resumed: list[str] | None = None) -> Iterator[tuple[str, Image.Image | None, str | None]]:
    """(item_id, grid image, path relative to out) for each (index, item_id, prompt), painted `tiles` per item.

    `generate(prompts, seeds) -> images`, one image per (prompt, seed). With `out`, an item whose PNG exists
    and reads back is not painted again (its id goes into `resumed`), so a rerun continues an interrupted run.
    """
    todo = []
    for index, item_id, prompt in prompts:
        f = out / f"{item_id}.png" if out is not None else None
        if f is not None and f.is_file():
            try:
                image = open_image(f)
            except ImageFailure:
                image = None  # a torn file from an interrupted run: paint it again
            if image is not None:
                if resumed is not None:
                    resumed.append(item_id)
                yield item_id, image, f.name
                continue
        todo.append((index, item_id, prompt))
    per_batch = max(1, batch_size // tiles)
    for start in range(0, len(todo), per_batch):
        chunk = todo[start:start + per_batch]
        texts = [p for _, _, p in chunk for _ in range(tiles)]
        seeds = [tile_seed(seed, i, tiles, k) for i, _, _ in chunk for k in range(tiles)]
        painted = generate(texts, seeds)
        for n, (_, item_id, _) in enumerate(chunk):
            grid = compose(painted[n * tiles:(n + 1) * tiles])
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                tmp = out / f".partial-{item_id}.png"
                grid.save(tmp, format="PNG")
                os.replace(tmp, out / f"{item_id}.png")
            yield item_id, grid, f"{item_id}.png" if out is not None else None
