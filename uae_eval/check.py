"""Regression check for CI: compare a results folder against a baseline file, metric by metric.

Exit codes of `run_check` (what `uae check` returns): 0 no drop, 1 some metric dropped beyond tolerance
or is missing from the results, 2 a file is unreadable or the two are not comparable (other benchmark or
benchmark_version, a selected metric the baseline lacks, another set of items scored: `scored_set.py`, or one
partial and the other not). `--write-baseline` never overwrites a file.

A baseline is a results.json-shaped JSON object without samples: benchmark, benchmark_version, metrics,
primary_metric, higher_is_better (+ metric_higher_is_better), and provenance (created, git_hash, source,
model, n_items). `write_baseline` makes one from a results folder; it can also be written by hand.
Tolerance is absolute, in the metric's own units: a higher-is-better metric drops when
value < baseline - tolerance; a lower-is-better one when value > baseline + tolerance.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from uae_data.core.io import atomic_write_text
from uae_eval.results import (SCHEMA_VERSION, Results, ResultsError, load_json, read_results,
                              results_file, results_from_dict, to_json_text, utc_now)


class CheckMismatch(ValueError):
    """Results and baseline cannot be compared (other benchmark/version, unknown metric)."""


@dataclass
class MetricCheck:
    metric: str
    baseline: float
    value: float | None  # None: the results lack this metric
    higher_is_better: bool
    status: str  # "ok" | "improved" | "drop" | "missing"

    @property
    def delta(self) -> float | None:
        """value - baseline (0 when both are the same infinity)."""
        if self.value is None:
            return None
        return 0.0 if self.value == self.baseline else self.value - self.baseline

    @property
    def failed(self) -> bool:
        return self.status in ("drop", "missing")


@dataclass
class CheckOutcome:
    rows: list[MetricCheck]
    tolerance: float
    benchmark: str = ""
    extra_metrics: list[str] = field(default_factory=list)  # in results, not in the baseline (not checked)

    @property
    def drops(self) -> list[MetricCheck]:
        return [r for r in self.rows if r.status == "drop"]

    @property
    def missing(self) -> list[MetricCheck]:
        return [r for r in self.rows if r.status == "missing"]

    @property
    def passed(self) -> bool:
        return not any(r.failed for r in self.rows)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1


def _as_results(b: Results | dict, source: str) -> Results:
    return b if isinstance(b, Results) else results_from_dict(b, source, partial=True)


def judge(value: float, baseline: float, higher_is_better: bool, tolerance: float) -> str:
    """ok / improved / drop for one metric (pure; +-inf allowed)."""
    if value == baseline:
        return "ok"
    worse_by = (baseline - value) if higher_is_better else (value - baseline)
    if worse_by > tolerance:
        return "drop"
    return "improved" if worse_by < 0 else "ok"


def check(results: Results, baseline: Results | dict, tolerance: float = 0.01,
          metrics: Sequence[str] | None = None) -> CheckOutcome:
    """Compare every baseline metric (or only `metrics`) against `results`; directions come from the baseline.

    Raises CheckMismatch for another benchmark or benchmark_version, or a selected metric the baseline lacks.
    """
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance}")
    base = _as_results(baseline, "baseline")
    if results.benchmark != base.benchmark:
        raise CheckMismatch(f"benchmark differs: results are {results.benchmark!r}, baseline is {base.benchmark!r}")
    if results.benchmark_version != base.benchmark_version:
        raise CheckMismatch(f"benchmark_version differs: results are {results.benchmark_version!r}, "
                            f"baseline is {base.benchmark_version!r}")
    from uae_eval.scored_set import mismatch

    why = mismatch(results.extra.get("scored"), base.extra.get("scored"), results.n_items, base.n_items)
    if why:
        raise CheckMismatch(f"not comparable: {why}")
    names = list(metrics) if metrics else list(base.metrics)
    unknown = [m for m in names if m not in base.metrics]
    if unknown:
        raise CheckMismatch(f"metric {', '.join(map(repr, unknown))} not in the baseline "
                            f"(it has {', '.join(base.metrics)})")
    rows = []
    for m in names:
        hib = base.is_higher_better(m)
        value = results.metrics.get(m)
        status = "missing" if value is None else judge(value, base.metrics[m], hib, tolerance)
        rows.append(MetricCheck(m, base.metrics[m], value, hib, status))
    extra = [m for m in results.metrics if m not in base.metrics]
    return CheckOutcome(rows, tolerance, results.benchmark, extra)


def _fmt(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    if math.isinf(v):
        return ("+inf" if signed else "inf") if v > 0 else "-inf"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


STATUS_STYLE = {"ok": "green", "improved": "green", "drop": "bold red", "missing": "bold red"}


def outcome_table(outcome: CheckOutcome, title: str = "") -> Table:
    table = Table(title=title or None, title_justify="left")
    for col, justify in (("metric", "left"), ("baseline", "right"), ("value", "right"), ("delta", "right"),
                         ("better", "center"), ("status", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "metric", overflow="fold")
    for r in outcome.rows:
        style = STATUS_STYLE[r.status]
        table.add_row(r.metric, _fmt(r.baseline), _fmt(r.value), _fmt(r.delta, signed=True),
                      "higher" if r.higher_is_better else "lower", f"[{style}]{r.status}[/{style}]",
                      style="red" if r.failed else None)
    return table


def run_check(results_path: str | os.PathLike, baseline_path: str | os.PathLike, tolerance: float = 0.01,
              metrics: Sequence[str] | None = None, console: Console | None = None) -> int:
    """`uae check RESULTS --baseline FILE`: print the comparison; return 0 ok, 1 drop/missing, 2 bad files."""
    con = console or Console(soft_wrap=True)
    errcon = console or Console(stderr=True, soft_wrap=True)
    try:
        res = read_results(results_path)
        bpath = results_file(baseline_path)
        base = results_from_dict(load_json(bpath, "baseline"), bpath, partial=True)
        outcome = check(res, base, tolerance, metrics)
    except CheckMismatch as e:
        errcon.print(f"[red]error:[/red] {results_file(results_path)} vs baseline {baseline_path}: {e}",
                     highlight=False, soft_wrap=True)
        return 2
    except (ResultsError, ValueError) as e:
        errcon.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        return 2
    con.print(outcome_table(outcome, f"{res.benchmark} vs baseline {baseline_path} (tolerance {tolerance:g})"))
    if outcome.passed:
        con.print(f"[green]ok[/green]: {len(outcome.rows)} metric(s) within tolerance {tolerance:g} of the baseline",
                  highlight=False)
        return 0
    parts = []
    if outcome.drops:
        parts.append(f"{len(outcome.drops)} dropped ({', '.join(r.metric for r in outcome.drops)})")
    if outcome.missing:
        parts.append(f"{len(outcome.missing)} missing ({', '.join(r.metric for r in outcome.missing)})")
    con.print(f"[red]regression[/red]: {'; '.join(parts)} beyond tolerance {tolerance:g}", highlight=False,
              soft_wrap=True)
    return 1


def baseline_dict(res: Results, source: str) -> dict:
    """The baseline object written by `write_baseline` (results.json-shaped, no samples, config or versions)."""
    out = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": res.benchmark,
        "benchmark_version": res.benchmark_version,
        "metrics": dict(res.metrics),
        "primary_metric": res.primary_metric,
        "higher_is_better": res.higher_is_better,
        "model": {"name": res.model.get("name"), "path": res.model.get("path")},
        "n_items": res.n_items,
        "step": res.step,
        "created": res.created,
        "git_hash": res.git_hash,
        "source": source,
        "baseline_written": utc_now(),
    }
    if res.metric_higher_is_better:
        out["metric_higher_is_better"] = dict(res.metric_higher_is_better)
    if "scored" in res.extra:  # what it scored (set hash, count, partial): results of another set are refused
        out["extra"] = {"scored": res.extra["scored"]}
    return out


def write_baseline(results_path: str | os.PathLike, out_file: str | os.PathLike, console: Console | None = None) -> int:
    """`uae check RESULTS --write-baseline FILE`: write a baseline from RESULTS; return 0, or 2 on a bad file."""
    con = console or Console(soft_wrap=True)
    if Path(out_file).exists():
        (console or Console(stderr=True, soft_wrap=True)).print(
            f"[red]error:[/red] {out_file} exists; a baseline is not overwritten: delete it first, or write to "
            "another file", highlight=False, soft_wrap=True)
        return 2
    try:
        res = read_results(results_path)
        src = results_file(results_path)
        atomic_write_text(Path(out_file), to_json_text(baseline_dict(res, str(src))) + "\n")
    except (ResultsError, OSError) as e:
        (console or Console(stderr=True, soft_wrap=True)).print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        return 2
    con.print(f"baseline written: {out_file} ({res.benchmark}, {len(res.metrics)} metrics, "
              f"{res.primary_metric}={_fmt(res.primary_value)})", highlight=False)
    return 0
