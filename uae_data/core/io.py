"""File writes that never leave half a file, and the JSON-lines logs runs keep.

Why one helper: a crash mid-write must not leave a truncated config, shard index or results file that a
rerun then trusts. Every writer in uae goes through `atomic_write` (temp file in the same folder, fsync,
os.replace, temp removed on any failure).
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import IO, Callable, Iterable


def atomic_write(path: str | os.PathLike, fill: Callable[[IO], object], binary: bool = False) -> Path:
    """fill(f) writes the content to a temp file beside `path`, which then replaces it in one step."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"  # open() keeps the umask
    try:
        with (open(tmp, "xb") if binary else open(tmp, "x", encoding="utf-8")) as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSON-lines file ([] when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    return atomic_write(path, lambda f: f.writelines(json.dumps(r) + "\n" for r in rows))


def truncate_jsonl(path: str | os.PathLike, step: int, **match: object) -> None:
    """Drop rows logged after `step` (the last checkpoint): a resumed run logs them again. With `match`
    (e.g. phase="decoder") only rows whose fields equal it are dropped."""
    if Path(path).exists():
        rows = read_jsonl(path)
        write_jsonl(path, [r for r in rows if not (r.get("step", 0) > step
                                                   and all(r.get(k) == v for k, v in match.items()))])
