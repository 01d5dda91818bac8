"""Experiment trackers beside metrics.jsonl, through accelerate's tracker classes: TensorBoard event files,
Weights & Biases in offline mode, or MLflow in a local folder, all under RUN/trackers/. Rank 0 only.

metrics.jsonl stays the record the report and resume read; a tracker is a view for people who already use
one. Names come from the manifest's `log_with` (e.g. [tensorboard]).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from uae_data.core.errors import ConfigError

TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # name -> package it needs


def check_trackers(names: list[str]) -> None:
    """Unknown names and missing packages fail before training starts, in one line."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"log_with: unknown tracker {name!r} (known: {', '.join(TRACKERS)})")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ConfigError(f"log_with: {name} needs the {TRACKERS[name]} package: pip install {TRACKERS[name]}")


def flat_config(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"a.b": scalar} (lists and None as text): hparams views take scalars only."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


class Trackers:
    """Open trackers for one run; `log(row, step, prefix)` sends the row's numbers; `close()` flushes."""

    def __init__(self, names: list[str], out: Path, run_name: str, config: dict, main: bool = True) -> None:
        self.trackers: list = []
        if not names or not main:
            return
        check_trackers(names)
        from accelerate import PartialState
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

        PartialState()  # accelerate's trackers log through its state (one process: a plain local state)

        root = Path(out) / "trackers"
        root.mkdir(parents=True, exist_ok=True)
        for name in names:
            if name == "tensorboard":
                tracker = TensorBoardTracker(run_name, root / "tensorboard")
            elif name == "wandb":
                os.environ.setdefault("WANDB_MODE", "offline")  # no account, no network: sync later if wanted
                os.environ.setdefault("WANDB_DIR", str(root))
                tracker = WandBTracker(run_name, dir=str(root))
            else:
                os.environ.setdefault("MLFLOW_TRACKING_URI", (root / "mlruns").resolve().as_uri())
                tracker = MLflowTracker(run_name, str(root / "mlruns"))
            tracker.start()
            tracker.store_init_configuration(flat_config(config))
            self.trackers.append(tracker)

    def log(self, row: dict, step: int, prefix: str = "") -> None:
        values = {f"{prefix}{k}": float(v) for k, v in row.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        for t in self.trackers:
            t.log(values, step=step)

    def close(self) -> None:
        for t in self.trackers:
            t.finish()
        self.trackers = []
