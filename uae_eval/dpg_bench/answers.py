"""Precomputed answers (`--answers FILE`): one JSON line per (image, tile, question), scored without a judge.

Format (what every judged run also writes to OUT/answers.jsonl, so a run can be rescored):
    {"item_id": "partiprompts10", "tile": 0, "proposition_id": 3, "answer": "yes"}
Other fields are ignored. `answer` is scored as the official script scores the judge's text: 1 iff it is
exactly "yes". A line that is not such an object, names an item or question the CSV does not ask, a tile
outside 0..tiles-1, or repeats a row is refused in one line naming the line; so is a missing row, unless
`allow_partial` (then images with any missing row are left out and counted).
"""
from __future__ import annotations

import json
from pathlib import Path

from uae_data.core.errors import InputError
from uae_eval.dpg_bench.data import Item

FIELDS = ("item_id", "tile", "proposition_id", "answer")


def _row(line: str, where: str) -> tuple[str, int, int, str]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: invalid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: must be a JSON object with {', '.join(FIELDS)}")
    for key in FIELDS:
        if key not in row:
            raise InputError(f"{where}: missing field {key!r}")
    item_id, tile, qid, answer = (row[k] for k in FIELDS)
    if not isinstance(item_id, str):
        raise InputError(f"{where}: item_id must be text, got {item_id!r}")
    for name, value in (("tile", tile), ("proposition_id", qid)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: {name} must be an integer, got {value!r}")
    if not isinstance(answer, str):
        raise InputError(f"{where}: answer must be text, got {answer!r}")
    return item_id, tile, qid, answer


def read_answers(path: str | Path, items: list[Item], tiles: int, csv_ids: set[str],
                 skipped_question: dict | None = None,
                 allow_partial: bool = False) -> tuple[dict[str, list[dict[int, str]]], list[str]]:
    """({item_id: [answers of tile 0, tile 1, ...]} for every fully answered item, [item_ids left out]).

    `items`: the items scored; `csv_ids`: every item of the CSV (rows of items a `limit` cut are ignored,
    rows of items the CSV does not have are refused)."""
    path = Path(path)
    asked = {it.item_id: it.question_ids() for it in items}
    got: dict[str, list[dict[int, str]]] = {}
    seen: dict[tuple[str, int, int], int] = {}
    rows = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}: line {n}"
            item_id, tile, qid, answer = _row(line, where)
            rows += 1
            if item_id not in csv_ids:
                raise InputError(f"{where}: item {item_id!r} is not in the CSV")
            if item_id not in asked:
                continue  # past `limit`
            if not 0 <= tile < tiles:
                raise InputError(f"{where}: tile {tile} outside 0..{tiles - 1} (tiles is {tiles}; set tiles= to the "
                                 "layout the answers were made for)")
            if qid not in asked[item_id]:
                if skipped_question == {"item_id": item_id, "proposition_id": qid}:
                    raise InputError(f"{where}: item {item_id!r} question {qid} is the CSV's first row, which the "
                                     "official scorer never asks; remove these rows, or set ask_first_question=true "
                                     "(not comparable with published numbers)")
                raise InputError(f"{where}: item {item_id!r} has no question {qid} in the CSV")
            key = (item_id, tile, qid)
            if key in seen:
                raise InputError(f"{where}: item {item_id!r} tile {tile} question {qid} already given on line "
                                 f"{seen[key]}")
            seen[key] = n
            got.setdefault(item_id, [{} for _ in range(tiles)])[tile][qid] = answer
    if not rows:
        raise InputError(f"{path}: no answers (empty file)")
    return _complete(path, items, got, tiles, allow_partial)


def _complete(path: Path, items: list[Item], got: dict, tiles: int,
              allow_partial: bool) -> tuple[dict[str, list[dict[int, str]]], list[str]]:
    complete, left_out = {}, []
    for it in items:
        answers = got.get(it.item_id)
        hole = None
        if answers is None:
            hole = f"item {it.item_id!r} has no answers"
        else:
            for t in range(tiles):
                miss = sorted(it.question_ids() - set(answers[t]))
                if miss:
                    hole = f"item {it.item_id!r} tile {t} question {miss[0]} has no answer"
                    break
        if hole is None:
            complete[it.item_id] = answers
            continue
        if not allow_partial:
            missing = sum(1 for i in items if i.item_id not in got)
            raise InputError(f"{path}: {hole} ({missing} of {len(items)} items have none); every asked question of "
                             f"every tile needs a row: complete it, or pass --allow-partial to score the complete "
                             "images, marked partial")
        left_out.append(it.item_id)
    return complete, left_out
