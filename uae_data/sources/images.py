"""Decode, check and resize raw image bytes for the local sources (folder, parquet, shards).

Why img2dataset's Resizer and not our own PIL code: the `urls` source downloads through
img2dataset, so local sources resizing the same way (same resize modes, interpolation, encoder,
min-size/aspect options, same error messages) give one corpus whatever the input was.
"""
from __future__ import annotations

import io
from typing import Any

from uae_data.sources.base import SourceContext, SourceItem
from uae_data.sources.options import RESIZE_DEFAULTS, check_resize_options


def make_resizer(ctx: SourceContext, options: dict[str, Any], where: str = "source.options") -> Any:
    """img2dataset Resizer for (image_size, image_format) with the pass-through options."""
    from img2dataset.resizer import Resizer

    check_resize_options(options, where)
    kw = {**RESIZE_DEFAULTS, **options}
    if ctx.image_format == "png" and "encode_quality" not in kw:
        kw["encode_quality"] = 1  # png: quality is the zlib level; lossless whatever it is, 1 is fast
    return Resizer(image_size=ctx.image_size, encode_format=ctx.image_format, **kw)


def load_bytes(item: SourceItem, raw: bytes | None, resizer: Any, ext: str) -> SourceItem:
    """Fill `item` from raw bytes: ok with resized image bytes, or failed with the decoder's reason."""
    if raw is None:
        item.fail("failed", item.reason or "no image")
        return item
    if not raw:
        item.fail("failed", "empty file")
        return item
    data, width, height, ow, oh, error = resizer(io.BytesIO(raw))
    if error is not None:
        item.fail("failed", str(error))
        return item
    item.image_bytes, item.image_ext = data, ext
    if ow is not None:
        item.original_size = (int(ow), int(oh))
    return item
