"""GenEval prompt metadata: the official jsonl format, read and validated line by line.

One line per prompt: {"tag", "prompt", "include": [item, ...], "exclude"?: [item, ...]}, where an item is
{"class": name, "count": minimum, "color"?: colour, "position"?: [relation, include index]}.
Errors are one line naming the file, the 1-based line and the field.
"""
from __future__ import annotations

import json
from pathlib import Path

GENEVAL_TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
from uae_data.core.paths import manifests_dir

MANIFEST_DIR = manifests_dir() / "geneval"


def official_metadata_path() -> Path:
    """The shipped official prompt file (553 prompts, byte-identical to the repo's)."""
    return MANIFEST_DIR / "evaluation_metadata.jsonl"


def official_class_names_path() -> Path:
    """The shipped official class names (80 COCO classes; line i = detector class i)."""
    return MANIFEST_DIR / "object_names.txt"


def scene_metadata_path() -> Path:
    """The shipped scene GenEval prompt file (made by tools/make_scene_geneval.py --seed 0)."""
    return MANIFEST_DIR / "scene_metadata.jsonl"


def scene_class_names_path() -> Path:
    return MANIFEST_DIR / "scene_object_names.txt"


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_item(item: object, where: str, index: int, n_include: int | None) -> None:
    """Check one include/exclude item; `n_include` is None for exclude items (no colour/position there)."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: must be an object with 'class' and 'count', got {item!r}")
    if not isinstance(item.get("class"), str) or not item["class"]:
        raise ValueError(f"{where}.class: must be a non-empty class name, got {item.get('class')!r}")
    if not _is_int(item.get("count")) or item["count"] < 1:
        raise ValueError(f"{where}.count: must be an integer >= 1, got {item.get('count')!r}")
    if "color" in item and not (isinstance(item["color"], str) and item["color"]):
        raise ValueError(f"{where}.color: must be a colour name, got {item['color']!r}")
    if "position" in item:
        pos = item["position"]
        if not (isinstance(pos, list) and len(pos) == 2 and pos[0] in RELATIONS and _is_int(pos[1])):
            raise ValueError(f"{where}.position: must be [relation, include index] with relation one of "
                             f"{', '.join(RELATIONS)}, got {pos!r}")
        if n_include is None or not 0 <= pos[1] < index:
            raise ValueError(f"{where}.position: index {pos[1]} must name an earlier include item (0..{index - 1})")
    unknown = sorted(set(item) - {"class", "count", "color", "position"})
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r} (known: class, count, color, position)")


def validate_metadata(meta: object, where: str) -> dict:
    """Check one metadata record; raise ValueError('{where}: field: problem') on bad input."""
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: must be a JSON object, got {type(meta).__name__}")
    if meta.get("tag") not in GENEVAL_TAGS:
        raise ValueError(f"{where}: tag: must be one of {', '.join(GENEVAL_TAGS)}, got {meta.get('tag')!r}")
    if not isinstance(meta.get("prompt"), str) or not meta["prompt"].strip():
        raise ValueError(f"{where}: prompt: must be non-empty text, got {meta.get('prompt')!r}")
    include = meta.get("include")
    if not isinstance(include, list) or not include:
        raise ValueError(f"{where}: include: must be a non-empty list of items, got {include!r}")
    for i, item in enumerate(include):
        _check_item(item, f"{where}: include[{i}]", i, len(include))
    exclude = meta.get("exclude", [])
    if not isinstance(exclude, list):
        raise ValueError(f"{where}: exclude: must be a list of items, got {exclude!r}")
    for i, item in enumerate(exclude):
        _check_item(item, f"{where}: exclude[{i}]", i, None)
        if "color" in item or "position" in item:
            raise ValueError(f"{where}: exclude[{i}]: colour and position are not checked on exclude items")
    return meta


def load_metadata(path: str | Path) -> list[dict]:
    """All records of a metadata jsonl, in file order (line i = prompt index i, folder NNNNN = i).

    Blank lines are not allowed (they would shift prompt indices against the official folders).
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"{path}: metadata file not found") from None
    metas = []
    for line_no, line in enumerate(lines, 1):
        where = f"{path}: line {line_no}"
        if not line.strip():
            raise ValueError(f"{where}: blank line (one JSON object per line; prompt index = line index)")
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
        metas.append(validate_metadata(meta, where))
    if not metas:
        raise ValueError(f"{path}: no prompts (empty file)")
    return metas


def load_class_names(path: str | Path) -> list[str]:
    """Class names, one a line (line i = detector class i); surrounding spaces are stripped as official."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except FileNotFoundError:
        raise ValueError(f"{path}: class names file not found") from None
    for i, name in enumerate(names, 1):
        if not name:
            raise ValueError(f"{path}: line {i}: empty class name")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{path}: class {dup!r} appears twice")
    if not names:
        raise ValueError(f"{path}: no class names (empty file)")
    return names


_NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10}
_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")


def make_plural(name: str) -> str:
    """Official `make_plural`: "es" after a final s, else "s" (cross -> crosses)."""
    return f"{name}es" if name[-1] in "s" else f"{name}s"


def prompt_metadata(prompt: str, classes: list[str] | tuple[str, ...]) -> dict | None:
    """The GenEval metadata of a prompt written in GenEval's six templates, or None for any other text.

    Why: a GenEval reward needs each training prompt's metadata; corpora carry short prompts written in these
    templates (the scene world's `short_caption`), so reading the template back gives exactly the metadata
    create_prompts.py would have written (counting excludes N+1; position includes [B, A]).
    """
    import re

    text = " ".join(prompt.strip().lower().rstrip(".").split())
    if not text.startswith("a photo of "):
        return None
    rest = text[len("a photo of "):]
    names = sorted(classes, key=len, reverse=True)
    cls = "|".join(map(re.escape, names))
    col = "|".join(_COLOURS)

    def obj(i: int) -> str:
        return rf"an? (?:(?P<c{i}>{col}) )?(?P<o{i}>{cls})"

    plural = {make_plural(n): n for n in names}
    m = re.fullmatch(rf"(?P<n>{'|'.join(_NUMBER_WORDS)}) (?P<p>{'|'.join(map(re.escape, plural))})", rest)
    if m:
        n, name = _NUMBER_WORDS[m["n"]], plural[m["p"]]
        return {"tag": "counting", "include": [{"class": name, "count": n}],
                "exclude": [{"class": name, "count": n + 1}], "prompt": prompt}
    m = re.fullmatch(rf"{obj(1)} (?P<rel>{'|'.join(RELATIONS)}) {obj(2)}", rest)
    if m and not m["c1"] and not m["c2"]:
        return {"tag": "position", "include": [{"class": m["o2"], "count": 1},
                                               {"class": m["o1"], "count": 1, "position": [m["rel"], 0]}],
                "prompt": prompt}
    m = re.fullmatch(rf"{obj(1)} and {obj(2)}", rest)
    if m and bool(m["c1"]) == bool(m["c2"]):
        items = [{"class": m[f"o{i}"], "count": 1, **({"color": m[f"c{i}"]} if m[f"c{i}"] else {})} for i in (1, 2)]
        return {"tag": "color_attr" if m["c1"] else "two_object", "include": items, "prompt": prompt}
    m = re.fullmatch(obj(1), rest)
    if m:
        item = {"class": m["o1"], "count": 1, **({"color": m["c1"]} if m["c1"] else {})}
        return {"tag": "colors" if m["c1"] else "single_object", "include": [item], "prompt": prompt}
    return None
