"""A training run's folder: its config (a rerun with another config is refused), logs, restore and results.

Rerunning the same command continues the run in the folder (as the demo and build-corpus do); `--resume`
says so explicitly. Logs cut back to the last checkpoint on resume, so a resumed run's logs equal an
uninterrupted one's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from uae_data import distributed
from uae_data.core.config import dump_yaml, to_dict
from uae_data.core.errors import ConfigError, InputError
from uae_data.core.io import atomic_write_text, truncate_jsonl
from uae_train.training.checkpoint import load_checkpoint


def prepare_run(out: Path, cfg: Any, kind: str, resume: bool, main: bool = True) -> bool:
    """Whether this is a resumed run; writes config.yaml for a new one (rank 0 of a multi-process run; the
    others wait for it and read the same answer)."""
    dist = distributed.current()
    if dist.active:
        answer = None
        if main:
            try:
                answer = ("ok", _prepare_run(out, cfg, kind, resume))
            except Exception as err:  # every rank must leave, with the same one-line error
                answer = ("error", err)
        answer = dist.gather(answer)[0]
        if answer[0] == "error":
            raise answer[1]
        return answer[1]
    return _prepare_run(out, cfg, kind, resume)


def _prepare_run(out: Path, cfg: Any, kind: str, resume: bool) -> bool:
    saved = out / "config.yaml"
    if saved.exists():
        import yaml

        try:
            old = yaml.safe_load(saved.read_text()) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{saved}: unreadable (corrupt YAML); cannot resume this run: choose another --out") from None
        old = old if isinstance(old, dict) else {}
        old.pop("kind", None)
        new = to_dict(cfg)
        if old != new:
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(f"{out}: holds a run with another config ({', '.join(changed[:5])} differ from its "
                              "config.yaml); rerun it with the same manifest and overrides, or choose another --out")
        return True
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, dump_yaml(cfg, kind=kind))
    return resume


def check_init(init: str) -> Path:
    """An RL stage's --init: a run folder holding encoder/ and decoder/ (pretrain or an earlier stage)."""
    root = Path(init) if init else None
    if root is None:
        raise ConfigError("init: give --init RUN (a `uae train pretrain` or stage run folder with encoder/ and decoder/)")
    for part in ("encoder", "decoder"):
        if not (root / part / "config.json").exists() and not (root / part / "transformer").exists():
            raise InputError(f"{root}: no {part}/ model folder in it (run `uae train pretrain` first)")
    return root


def main_only(dist, fn, *args, **kwargs):
    """fn(...) on rank 0 (evaluations, result files) while the others wait; its value on rank 0, else None."""
    value = None
    if dist.main:
        with distributed.alone():
            value = fn(*args, **kwargs)
    dist.barrier()
    return value


def restore(out: Path, ckpt: Path, module, optimizer, scheduler, resume: bool) -> tuple[int, int]:
    """(step, samples seen) to continue from: the last checkpoint on --resume (logs cut back to it), else (0, 0).
    Every rank of a multi-process run loads the checkpoint; rank 0 cuts the logs."""
    dist = distributed.current()
    step, seen = 0, 0
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, module, optimizer, scheduler)
        step, seen = state["step"], state["samples_seen"]
    if resume and dist.main:
        truncate_jsonl(out / "metrics.jsonl", step)
        truncate_jsonl(out / "eval.jsonl", step)
    dist.barrier()
    return step, seen


class RunLog:
    """A run's records: metrics.jsonl, eval.jsonl (+ `eval_rows` in memory) and the `log_with` trackers,
    written by rank 0 only; `evaluate` runs the held-out evaluation on rank 0 while others wait."""

    def __init__(self, out: Path, cfg: Any, stage: str, dist, eval_rows: list[dict]) -> None:
        from uae_train.tracking import Trackers

        self.dist, self.eval_rows = dist, eval_rows
        self.trackers = Trackers(cfg.log_with, out, stage, to_dict(cfg), main=dist.main)
        self.files = ((out / "metrics.jsonl").open("a"), (out / "eval.jsonl").open("a")) if dist.main else None

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        if self.files:
            for f in self.files:
                f.close()
        self.trackers.close()

    def _write(self, which: int, row: dict, prefix: str) -> None:
        self.files[which].write(json.dumps(row) + "\n")
        self.files[which].flush()
        self.trackers.log(row, row.get("step", 0), prefix=prefix)

    def train(self, row: dict) -> None:
        if self.dist.main:
            self._write(0, row, "train/")

    def evaluate(self, fn, at: int) -> None:
        row = main_only(self.dist, fn, at)
        if self.dist.main:
            self.eval_rows.append(row)
            self._write(1, row, "eval/")


def write_stage_results(out: Path, stage: str, cfg: Any, eval_rows: list[dict], model: dict) -> None:
    """results/ in the one schema: start and end of every eval metric, curves over steps for the report."""
    from uae_eval.results import Results, write_results

    if not eval_rows:
        return
    first, last = eval_rows[0], eval_rows[-1]
    keys = [k for k in last if k != "step" and isinstance(last[k], (int, float))]
    metrics: dict[str, float] = {}
    for k in keys:
        if k in first:
            metrics[f"{k}/start"] = float(first[k])
        metrics[f"{k}/end"] = float(last[k])
        if k in first:
            metrics[f"{k}/delta"] = float(last[k]) - float(first[k])
    curves = {k: {"x": [r["step"] for r in eval_rows if k in r], "y": [r[k] for r in eval_rows if k in r],
                  "xlabel": "step", "ylabel": k} for k in keys}
    results = Results(benchmark=f"unified-grpo-{stage}",
                      benchmark_version="scene-heldout" if not getattr(cfg, "eval_corpus", "") else "heldout",
                      model=model, metrics=metrics, primary_metric="heldout_reward/end", higher_is_better=True,
                      n_items=len(eval_rows), config=to_dict(cfg), extra={"curves": curves})
    write_results(out / "results", results, eval_rows)


def finish(out: Path, stage: str, cfg: Any, encoder, decoder, eval_rows: list[dict], steps: int, init: Path,
           policy_part: str) -> dict:
    """Save encoder/ and decoder/ (the next stage's --init), results/ and summary.json; return the summary."""
    encoder.save_pretrained(out / "encoder")
    decoder.save_pretrained(out / "decoder")
    model = {"name": f"{stage}:{out.name}", "path": str(out / policy_part), "config": {"init": str(init)}}
    write_stage_results(out, stage, cfg, eval_rows, model)
    summary = {"first_eval": eval_rows[0], "last_eval": eval_rows[-1], "steps": steps}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
