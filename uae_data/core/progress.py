"""One rich progress bar for every long loop (corpus builds, scoring, training)."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@contextlib.contextmanager
def progress_bar(description: str, total: int | None = None, enabled: bool | None = None) -> Iterator[Callable[..., None]]:
    """Yields update(done, total=None, **fields); draws only on a terminal unless enabled=True."""
    enabled = sys.stderr.isatty() if enabled is None else enabled
    if not enabled:
        yield lambda done, total=None, **fields: None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=False) as progress:
        task = progress.add_task(description, total=total, info="")

        def update(done: int, total: int | None = None, **fields) -> None:
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            progress.update(task, completed=done, total=total if total is not None else progress.tasks[0].total, info=info)

        yield update
