"""Photos served on 127.0.0.1 for the url-source tests: the bad inputs of a real url list (404, HTML as .jpg,
truncated JPEG, 1x1 image, 20:1 strip, a duplicate, an unreachable host), one row each, and the checks that a
build accounted for every row. The `www` fixture (conftest.py) serves them on 127.0.0.1 (benchmarks/corpus_urls.serve); no other host is ever contacted."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import skimage.data
import webdataset as wds
from PIL import Image

from uae_data.core.config import load_config
from uae_data.corpus_config import CorpusConfig

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def photo(name: str, side: int = 80) -> Image.Image:
    """A real photo from scikit-image's bundled data, shrunk so tests stay fast."""
    im = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    im.thumbnail((side, side))
    return im


def jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_www(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        (folder / f"{name}.jpg").write_bytes(jpeg(photo(name)))
    (folder / "copy.jpg").write_bytes((folder / "astronaut.jpg").read_bytes())
    whole = jpeg(photo("chelsea", 200))
    (folder / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    (folder / "page.jpg").write_text("<!doctype html><html><body>not an image</body></html>")
    Image.new("RGB", (1, 1), (9, 9, 9)).save(folder / "pixel.png")
    Image.new("RGB", (400, 20), (200, 30, 30)).save(folder / "strip.png")


# (path, caption, expected status, expected reason fragment); row order is the csv's order
CASES = [
    ("astronaut.jpg", "an astronaut", "ok", ""),
    ("chelsea.jpg", "a cat", "ok", ""),
    ("missing.jpg", "gone", "failed", "404"),
    ("coffee.jpg", "a cup of coffee", "ok", ""),
    ("page.jpg", "html", "failed", "decod"),
    ("truncated.jpg", "half a cat", "failed", "decod"),
    ("pixel.png", "one pixel", "dropped", "min side 1 < 16"),
    ("strip.png", "a strip", "dropped", "aspect 20 > 5"),
    ("copy.jpg", "the astronaut again", "dropped", "near-duplicate of 000000000"),
    ("rocket.jpg", "a rocket", "ok", ""),
    ("UNREACHABLE", "nobody home", "failed", "refused"),
]
TEST_OPTS = ["shard_size=4", "image_size=48", "filters.min_side=16", "filters.max_aspect=5", "filters.dedup_threshold=4",
             "source.options.thread_count=4", "source.options.timeout=5"]


def write_url_list(path: Path, base: str, fmt: str = "csv") -> Path:
    urls = ["http://127.0.0.1:1/nothing.jpg" if p == "UNREACHABLE" else f"{base}/{p}" for p, *_ in CASES]
    df = pd.DataFrame({"url": urls, "caption": [c for _, c, *_ in CASES]})
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)
    return path


def urls_cfg(input_path: Path, *extra: str) -> CorpusConfig:
    over = ["source.name=urls", f"source.input={input_path}", "captioner.name=keep", *TEST_OPTS, *extra]
    return load_config(CorpusConfig, ROOT / "manifests/corpus/urls-example.yaml", over, kind="corpus")


def read_corpus(out: Path) -> list[dict]:
    urls = [str(p) for p in sorted((out / "shards").glob("*.tar"))]
    return list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))


def check_accounting(out: Path, base: str) -> pd.DataFrame:
    stats = pd.read_parquet(out / "stats.parquet")
    assert len(stats) == len(CASES)
    for (path, _, status, reason), row in zip(CASES, stats.itertuples()):
        assert row.status == status, (path, row.status, row.reason)
        assert reason in row.reason, (path, row.reason)
        assert row.key == f"{row.Index:09d}"
    assert not list(out.rglob("*.tmp"))
    return stats
