"""Readable reports from results folders: a self-contained HTML page or markdown with a files folder.

`build_report(paths, out, title=..., headline=rows_or_headline_json)` reads results.json + samples.jsonl
(uae_eval.results) and, for Unified-GRPO stage results (`<stage>/results`), the stage's eval.jsonl and
metrics.jsonl beside them. The page reads top-down:

1. the headline table (uae_eval.report_headline) when a headline is given: before -> after, gain with its 95% CI
   (marked and coloured by whether the CI excludes 0), controls, chance;
2. a summary table (one row per run);
3. per benchmark the metric tables (one column per run; `X_ci_low`/`X_ci_high` folded into X's cell as
   "value [low, high]") and bar charts, one unit per chart (dB, counts, 0-1 scores never share an axis),
   CI bounds drawn as error bars, metrics equal in every run (e.g. all zero) left out of the charts and
   listed under their table; metric-over-steps plots when several runs carry `step`;
4. held-out curves from a stage's eval.jsonl (every eval point, one unit per chart) and the training reward
   from metrics.jsonl, or else curves from `extra["curves"]` ({name: {"x", "y", "xlabel"?, "ylabel"?}});
5. samples: a card grid (failures first), or for reconstruction runs rows original | caption | reconstruction;
6. provenance (config, versions, extra) in collapsed <details>.

How a benchmark's metrics split into tables is its registry record's `tables` (uae_eval.benchmarks); the
generic fallback puts plain names in one table and names with a "prefix/" (MMT-Bench's "category/x",
"l2-category/x") in one table per prefix, so a new benchmark needs at most one function in its own module.
Rendering (HTML/markdown) lives in uae_eval.report_doc, charts and unit inference in uae_eval.report_plots.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from uae_eval.report_doc import Block, Card, Figure, ReportError, Table, Triple, render_html, render_markdown
from uae_eval.report_headline import HeadlineError, headline_table, load_headline
from uae_eval.report_plots import (DB, bar_chart, ci_bound_names, ci_pairs, is_constant, line_plot, metric_unit,
                                   unit_groups)
from uae_eval.report_samples import (MAX_TRIPLES, pick_samples, recon_triples, sample_cards, sample_ok,  # noqa: F401
                                     thumbnail)
from uae_data.core.io import atomic_write_text
from uae_eval.benchmarks import MetricTables, tables as benchmark_tables
from uae_eval.results import Results, read_results, results_file, to_json_text

__all__ = ["build_report", "ReportError", "HeadlineError", "tables_for", "load_runs", "report_blocks", "pick_samples",
           "sample_ok", "render_html", "render_markdown", "Table", "Figure", "Card", "Triple"]

MAX_SAMPLES = 24
MAX_LINES = 12  # lines per step plot
STAGE_PARTS = ("start", "end", "delta")


def tables_for(benchmark: str, names: list[str]) -> MetricTables:
    """The benchmark's titled tables (uae_eval.benchmarks), empty ones dropped."""
    return [(t, ms) for t, ms in benchmark_tables(benchmark, names) if ms]


# ---------------------------------------------------------------- runs

@dataclass
class Run:
    label: str
    folder: Path
    results: Results


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4f}"


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    runs, seen = [], {}
    for p in paths:
        rf = results_file(p)
        res = read_results(rf)
        label = res.model.get("name") or rf.parent.name
        if res.step is not None:
            label += f" @{res.step}"
        if label in seen:
            label += f" [{rf.parent.name}]"
        while label in seen:
            label += "'"
        seen[label] = True
        runs.append(Run(label, rf.parent, res))
    return runs


def _floats(xs: Iterable) -> list[float]:
    out = []
    for x in xs:
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def _jsonl(path: Path) -> list[dict]:
    """Rows of a jsonl log; a torn or non-object line (a run still writing) is skipped."""
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def stage_dir(run: Run) -> Path | None:
    """The Unified-GRPO stage folder of a run (`s1/` for `s1/results`): the one holding eval.jsonl."""
    dirs = (run.folder, run.folder.parent) if run.folder.name == "results" else (run.folder,)
    return next((d for d in dirs if (d / "eval.jsonl").is_file()), None)


# ---------------------------------------------------------------- content

def _partial(res) -> str:
    """A run scored over an incomplete input (--allow-partial / --allow-missing) says so next to its n."""
    if not res.extra.get("partial"):
        return ""
    missing = res.extra.get("n_missing_images", res.extra.get("n_missing"))
    return f" (PARTIAL: {missing} missing)"


def summary_table(runs: list[Run]) -> Table:
    official = any("official_compatible" in r.results.extra for r in runs)
    headers = ["run", "benchmark", "model", "primary metric", "value", "n_items", "step", "created", "git hash"]
    rows = []
    for r in runs:
        res = r.results
        rows.append([r.label, f"{res.benchmark} ({res.benchmark_version})", str(res.model.get("name") or "—"),
                     res.primary_metric + ("" if res.higher_is_better else " (lower better)"),
                     _fmt(res.primary_value), ("—" if res.n_items is None else str(res.n_items)) + _partial(res),
                     "—" if res.step is None else str(res.step), res.created or "—", (res.git_hash or "—")[:12]]
                    + ([str(res.extra.get("official_compatible", "—")).lower()] if official else []))
    return Table(headers + (["official"] if official else []), rows, "Runs")


def _values(runs: list[Run], name: str) -> list:
    return [r.results.metrics.get(name) for r in runs]


def constant_metrics(runs: list[Run], names: list[str]) -> list[str]:
    """Metrics with nothing to chart: equal in every run (or a single run's 0), or never finite."""
    return [m for m in names if is_constant(_values(runs, m))]


def metric_table(runs: list[Run], names: list[str], title: str) -> Table:
    """One row per metric, one column per run; a metric's CI bounds go into its cell as "value [low, high]"."""
    ci = ci_pairs(names)
    shown = [m for m in names if m not in ci_bound_names(names)]
    rows, bold = [], set()
    for ri, m in enumerate(shown):
        hib = runs[0].results.is_higher_better(m)
        vals = _values(runs, m)
        cells = []
        for r, v in zip(runs, vals):
            cell = _fmt(v)
            if m in ci and v is not None:
                lo, hi = (r.results.metrics.get(b) for b in ci[m])
                if lo is not None and hi is not None:
                    cell += f" [{_fmt(lo)}, {_fmt(hi)}]"
            cells.append(cell)
        unit = metric_unit(m, vals)
        rows.append([m + (" (dB)" if unit == DB else "") + ("" if hib else " (lower better)")] + cells)
        present = [v for v in vals if v is not None]
        if len(runs) > 1 and len(set(present)) > 1:
            best = max(present) if hib else min(present)
            bold |= {(ri, ci_ + 1) for ci_, v in enumerate(vals) if v == best}
    notes = []
    if ci:
        notes.append("[low, high] = 95% CI.")
    flat = constant_metrics(runs, shown)
    if flat:
        why = "the same in every run" if len(runs) > 1 else "zero or not finite"
        notes.append(f"Not charted ({why}): {', '.join(flat)}.")
    return Table(["metric"] + [r.label for r in runs], rows, title, bold, note=" ".join(notes))


def stage_table(runs: list[Run], names: list[str]) -> Table:
    """Stage results ("X/start", "X/end", "X/delta"): one row per X, start | end | delta per run."""
    bases = list(dict.fromkeys(n.rsplit("/", 1)[0] for n in names))
    one = len(runs) == 1
    headers = ["held-out metric"] + [h if one else f"{r.label} {h}" for r in runs for h in ("start", "end", "Δ")]
    rows, flat = [], []
    for b in bases:
        vals = [r.results.metrics.get(f"{b}/{part}") for r in runs for part in STAGE_PARTS]
        unit = metric_unit(b, [v for v in vals[::3] + vals[1::3] if v is not None])
        rows.append([b + (f" ({unit})" if unit in (DB, "count") else "")]
                    + [_fmt(v) if i % 3 < 2 or v is None else f"{v:+.4f}" for i, v in enumerate(vals)])
        if all(r.results.metrics.get(f"{b}/start") == r.results.metrics.get(f"{b}/end") for r in runs):
            flat.append(b)
    note = f"Flat from start to end: {', '.join(flat)}." if flat else ""
    return Table(headers, rows, "held-out eval: first and last eval of the stage", note=note)


def bar_blocks(bench: str, runs: list[Run], names: list[str], title: str) -> list[Block]:
    """One bar chart per unit over the metrics worth charting; CI bounds become error bars."""
    ci = ci_pairs(names)
    chartable = [m for m in names if m not in ci_bound_names(names)]
    chartable = [m for m in chartable if m not in set(constant_metrics(runs, chartable))]
    groups = unit_groups(chartable, {m: _values(runs, m) for m in chartable})
    blocks: list[Block] = []
    for unit, ms in groups.items():
        what = title if len(groups) == 1 else f"{title}, {unit}"
        png = bar_chart([r.label for r in runs], [r.results.metrics for r in runs], ms, f"{bench}: {what}", unit, ci)
        blocks.append(Figure(png, f"bar chart of {bench} {title} [{unit}]"))
    return blocks


def step_blocks(bench: str, runs: list[Run], names: list[str], title: str) -> list[Block]:
    """Metrics over training steps (runs carrying `step`), one line per model and metric, one unit per plot."""
    stepped = [r for r in runs if r.results.step is not None]
    if len({r.results.step for r in stepped}) < 2:
        return []
    names = [m for m in names if m not in ci_bound_names(names)]
    names = [m for m in names if m not in set(constant_metrics(stepped, names))]
    models = sorted({str(r.results.model.get("name")) for r in stepped})
    blocks: list[Block] = []
    for unit, ms in unit_groups(names, {m: _values(stepped, m) for m in names}).items():
        series: dict[str, tuple[list[float], list[float]]] = {}
        for m in ms[:MAX_LINES]:
            for model in models:
                pts = sorted((r.results.step, r.results.metrics[m]) for r in stepped
                             if str(r.results.model.get("name")) == model and m in r.results.metrics)
                series[m if len(models) == 1 else f"{model}: {m}"] = ([p[0] for p in pts], [p[1] for p in pts])
        blocks.append(Figure(line_plot(series, f"{bench}: {title} over training steps ({unit})", "step", unit),
                             f"{bench} {title} over steps [{unit}]"))
    return blocks


def stage_curve_blocks(run: Run) -> list[Block]:
    """Held-out eval curves (every eval point of eval.jsonl, one unit per chart) and the training reward."""
    folder = stage_dir(run)
    if folder is None:
        return []
    rows = sorted((r for r in _jsonl(folder / "eval.jsonl") if isinstance(r.get("step"), (int, float))),
                  key=lambda r: r["step"])
    keys = list(dict.fromkeys(k for r in rows for k, v in r.items()
                              if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)))
    series = {k: ([r["step"] for r in rows if k in r], _floats(r[k] for r in rows if k in r)) for k in keys}
    flat = [k for k in keys if len(set(series[k][1])) <= 1]  # the same at every eval
    blocks: list[Block] = [("h", 3, f"{run.label}: held-out eval over steps ({len(rows)} evals)")]
    for unit, ks in unit_groups([k for k in keys if k not in flat], {k: series[k][1] for k in keys}).items():
        png = line_plot({k: series[k] for k in ks}, f"{run.label}: held-out {unit} over steps", "step", unit)
        blocks.append(Figure(png, f"{run.label} held-out curve [{unit}]"))
    if flat:
        blocks.append(("p", "Constant over every eval (not charted): "
                            + ", ".join(f"{k} = {_fmt(series[k][1][0])}" for k in flat)))
    train = [r for r in _jsonl(folder / "metrics.jsonl") if isinstance(r.get("step"), (int, float))]
    if any("reward_mean" in r for r in train):
        pts = sorted((r["step"], float(r["reward_mean"]), float(r.get("reward_std") or 0.0)) for r in train
                     if isinstance(r.get("reward_mean"), (int, float)))
        x, y, sd = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        png = line_plot({"reward_mean": (x, y)}, f"{run.label}: training reward per step (band: ± sd over samples)",
                        "step", metric_unit("reward_mean", y), markers=len(x) <= 40,
                        bands={"reward_mean": ([a - b for a, b in zip(y, sd)], [a + b for a, b in zip(y, sd)])})
        blocks.append(Figure(png, f"{run.label} training reward curve"))
    return blocks if len(blocks) > 1 else []


def extra_curve_blocks(bench: str, runs: list[Run]) -> list[Block]:
    """Curves from extra["curves"] (one chart per curve name, one line per run), for runs without eval.jsonl."""
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for r in runs:
        for name, c in (r.results.extra.get("curves") or {}).items():
            if isinstance(c, dict) and "y" in c:
                y = _floats(c["y"])
                x = _floats(c.get("x", range(len(y))))
                curves.setdefault(name, {})[r.label] = (x, y)
                labels.setdefault(name, (str(c.get("xlabel", "x")), str(c.get("ylabel", name))))
    return [Figure(line_plot(series, f"{bench}: {name}", *labels[name]), f"{bench} curve {name}")
            for name, series in curves.items()]


def benchmark_blocks(bench: str, runs: list[Run]) -> list[Block]:
    blocks: list[Block] = [("h", 2, f"Benchmark: {bench}")]
    versions = sorted({r.results.benchmark_version for r in runs})
    if len(versions) > 1:
        blocks.append(("p", f"Warning: these runs used different benchmark versions ({', '.join(versions)}); "
                            "their numbers may not be comparable."))
    staged = [r for r in runs if stage_dir(r) is not None]
    names = list(dict.fromkeys(m for r in runs for m in r.results.metrics))
    if names and all(n.rsplit("/", 1)[-1] in STAGE_PARTS and "/" in n for n in names):
        blocks.append(stage_table(runs, names))
        if len(staged) < len(runs):
            blocks += bar_blocks(bench, runs, names, "start / end / delta")
        names = []
    for title, ms in tables_for(bench, names):
        blocks.append(metric_table(runs, ms, title))
        if len(staged) < len(runs):  # stage runs: the curves below say more than start/end bars
            blocks += bar_blocks(bench, runs, ms, title)
        blocks += step_blocks(bench, runs, ms, title)
    for r in staged:
        blocks += stage_curve_blocks(r)
    blocks += extra_curve_blocks(bench, [r for r in runs if r not in staged])
    return blocks


def report_blocks(runs: list[Run], max_samples: int, headline: list[dict] | None = None,
                  lead: Sequence[Block] = ()) -> list[Block]:
    blocks: list[Block] = [headline_table(headline)] if headline else []
    blocks += list(lead)
    blocks.append(summary_table(runs))
    for bench in dict.fromkeys(r.results.benchmark for r in runs):
        blocks += benchmark_blocks(bench, [r for r in runs if r.results.benchmark == bench])
    sample_blocks: list[Block] = []
    for r in runs:
        triples = recon_triples(r, min(max_samples, MAX_TRIPLES))
        if triples:
            sample_blocks.append(("triples", f"{r.label} ({r.results.benchmark}): original | caption | "
                                             "reconstruction, worst first, then the best", triples))
        elif cards := sample_cards(r, max_samples):
            sample_blocks.append(("cards", f"{r.label} ({r.results.benchmark})", cards))
    if sample_blocks:
        blocks += [("h", 2, "Samples (failures first)")] + sample_blocks
    blocks.append(("h", 2, "Provenance"))
    for r in runs:
        res = r.results
        prov = {"source": str(r.folder), "model": res.model, "config": res.config, "versions": res.versions,
                "git_hash": res.git_hash, "created": res.created,
                "extra": {k: v for k, v in res.extra.items() if k != "curves"}}
        blocks.append(("details", f"{r.label}: config, versions, extra", to_json_text(prov)))
    return blocks


def build_report(results_paths: Sequence[str | Path], out: str | Path, max_samples: int = MAX_SAMPLES,
                 title: str = "uae report", headline: str | Path | Sequence[dict] | dict | None = None,
                 lead: Sequence[Block] = ()) -> Path:
    """Write a report of one or more results folders to `out` (.html self-contained, or .md + `<stem>_files/`).

    `headline`: rows for the headline table at the top (a list of dicts, {"rows": [...]}, or the path of a
    JSON file holding either; row format in uae_eval.report_headline). `lead`: blocks shown right after the
    headline (the demo's stage-1 curves and before/after samples)."""
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".html", ".htm", ".md"):
        raise ReportError(f"{out}: the report file must end in .html or .md")
    if not results_paths:
        raise ReportError("give at least one results folder or results.json")
    rows = load_headline(headline)
    blocks = report_blocks(load_runs(results_paths), max_samples, rows, lead)
    if kind == ".md":
        text = render_markdown(title, blocks, out.parent / f"{out.stem}_files", f"{out.stem}_files")
    else:
        text = render_html(title, blocks)
    atomic_write_text(out, text)
    return out
