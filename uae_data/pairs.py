"""Image-caption pairs read from the head of a corpus folder, resized, for measurements that need a fixed set.

UniFork's alignment (`uae eval alignment`, the demo) and the Y-fork trainer read the same rows this way.
"""
from __future__ import annotations

from pathlib import Path

from uae_data.core.errors import CorpusError
from uae_data.shards import iter_samples


def load_pairs(corpus: Path, limit: int, image_size: int, skip: int = 0) -> list[dict]:
    """The first `limit` samples after `skip` as {image (resized), caption, short_caption}."""
    out = []
    for i, s in enumerate(iter_samples(Path(corpus))):
        if i < skip:
            continue
        if len(out) >= limit:
            break
        out.append({"image": s["image"].resize((image_size, image_size)), "caption": s["caption"],
                    "short_caption": s["meta"].get("short_caption")})
    if not out:
        raise CorpusError(f"{corpus}: no samples (after skipping {skip})")
    return out
