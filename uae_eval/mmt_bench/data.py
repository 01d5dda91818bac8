"""Load an official MMT-Bench TSV (facts §1-2): options, image references, base64 images.

Bad rows fail up front (before any model runs) with an InputError naming file and row index.
"""
from __future__ import annotations

import ast
import base64
import io
from pathlib import Path

from uae_data.core.errors import InputError

REQUIRED = ("index", "image", "question", "answer", "category", "l2-category")


def load_tsv(path: str | Path):
    """DataFrame of the TSV with NaN-image rows dropped and image references resolved to base64 text."""
    import pandas as pd

    from uae_data.core.paths import shipped

    path = shipped(path)
    try:
        df = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read as TSV ({e})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing columns {', '.join(missing)}; expected the official MMT-Bench layout")
    if "split" not in df.columns:
        df["split"] = "none"
    df = df[~df["image"].isna()].copy()
    df["index"] = df["index"].astype(str)
    # VLMEvalKit (ImageBaseDataset.__init__) resolves references in one pass in file order, updating its map
    # as it goes: a reference to an earlier row that was itself a reference resolves (already replaced);
    # one to a later reference, to itself or to a missing row is refused. Same pass, same outcome here.
    image_map = dict(zip(df["index"], df["image"].astype(str)))
    for idx in image_map:
        img = image_map[idx]
        if len(img) <= 64:
            target = image_map.get(img)
            if target is None or len(target) <= 64:
                raise InputError(f"{path}: row index {idx}: image refers to row {img!r}, which has no image"
                                 + (" yet (a reference to a later reference; VLMEvalKit refuses it too)"
                                    if target is not None else ""))
            image_map[idx] = target
    resolved = [image_map[idx] for idx in df["index"]]
    df["image"] = resolved
    check_rows(df, path)
    return df


def check_rows(df, path) -> None:
    """Refuse a TSV that cannot be scored as MMT-Bench: no rows, an index given twice (predictions and results
    are keyed by it), or an answer that is not the letter of one of its row's non-blank options (such a row
    could never be a hit, and would silently lower the score)."""
    from .prompt import row_options

    if df.empty:
        raise InputError(f"{path}: no question rows (only a header, or no row has an image)")
    repeated = df["index"][df["index"].duplicated()]
    if len(repeated):
        raise InputError(f"{path}: row index {repeated.iloc[0]} appears more than once; every index must be unique")
    for row in df.to_dict("records"):
        options = row_options(row)
        answer = str(row["answer"]).strip()
        if answer not in options:
            blank = len(answer) == 1 and answer.isupper() and answer in row  # its column is there, its cell empty
            raise InputError(f"{path}: row index {row['index']}: answer {row['answer']!r} is "
                             + (f"option {answer}, which is blank" if blank else "not an option letter")
                             + f" (options: {', '.join(options) or 'none'})")


def decode_images(field: str, where: str = "") -> list:
    """PIL RGB images of one image field: a base64 string or a "[...]" list of them (MI variants)."""
    from PIL import Image

    items = ast.literal_eval(field) if field.startswith("[") else [field]
    out = []
    for s in items:
        try:
            out.append(Image.open(io.BytesIO(base64.b64decode(s))).convert("RGB"))
        except Exception as e:  # noqa: BLE001 - any decoding failure is bad input
            raise InputError(f"{where}: image is not valid base64 image data ({type(e).__name__})") from None
    return out


def check_images(df, path) -> None:
    """Open (without decoding pixels) every image up front, so a bad row fails before the model runs."""
    from PIL import Image

    for idx, field in zip(df["index"], df["image"]):
        where = f"{path}: row index {idx}"
        try:
            items = ast.literal_eval(field) if field.startswith("[") else [field]
            for s in items:
                Image.open(io.BytesIO(base64.b64decode(s)))
        except Exception as e:  # noqa: BLE001 - any failure here is bad input
            raise InputError(f"{where}: image is not valid base64 image data ({type(e).__name__})") from None
