"""Readable reports from results folders: a self-contained HTML page or markdown with a files folder.

`build_report(paths, out)` reads only results.json + samples.jsonl (uae_eval.results). The page holds a
summary table (one row per run), per benchmark the metric tables (one column per run), bar charts, a
metric-over-steps plot when several runs carry `step`, curves from `extra["curves"]`
({name: {"x": [...], "y": [...], "xlabel"?, "ylabel"?}}, one line per run), a sample grid (failures
first) and provenance (config, versions, extra) in collapsed <details>.

How a benchmark's metrics split into tables is looked up in METRIC_TABLES (benchmark -> function); the
generic fallback puts plain names in one table and names with a "prefix/" (MMT-Bench's "category/x",
"l2-category/x") in one table per prefix, so a new benchmark needs at most one registered function.
HTML embeds every image as a data:image/png;base64 URI, uses inline CSS and no script or external URL.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from uae_eval.results import (Results, ResultsError, atomic_write_text, read_results, read_samples, results_file,
                              to_json_text, utc_now)

MAX_SAMPLES = 24
THUMB = 256  # longest side of embedded sample images, pixels
MAX_LINES = 12  # lines per step plot

MetricTables = list[tuple[str, list[str]]]
METRIC_TABLES: dict[str, Callable[[list[str]], MetricTables]] = {}


class ReportError(ResultsError):
    """Bad report request (unknown output type, no results). One line for users."""


def metric_tables(*benchmarks: str):
    """Register how a benchmark's metric names split into titled tables (first table = headline)."""
    def deco(fn):
        for b in benchmarks:
            METRIC_TABLES[b] = fn
        return fn
    return deco


def generic_tables(names: list[str]) -> MetricTables:
    plain = [n for n in names if "/" not in n]
    groups: dict[str, list[str]] = {}
    for n in names:
        if "/" in n:
            groups.setdefault(n.split("/", 1)[0], []).append(n)
    return ([("metrics", plain)] if plain else []) + list(groups.items())


@metric_tables("geneval")
def geneval_tables(names: list[str]) -> MetricTables:
    from uae_eval.geneval.prompts import GENEVAL_TAGS

    head = [t for t in GENEVAL_TAGS if t in names] + [n for n in ("overall",) if n in names]
    return [("GenEval tags and overall", head)] + generic_tables([n for n in names if n not in head])


@metric_tables("alignment")
def alignment_tables(names: list[str]) -> MetricTables:
    """UniFork alignment: summaries first, then one per-layer table per task/metric (the curves come from
    extra["curves"], one line per run)."""
    head = [n for n in names if not n.rsplit("/", 1)[-1].startswith("layer_")]
    layers: dict[str, list[str]] = {}
    for n in names:
        if n not in head:
            layers.setdefault(n.rsplit("/", 1)[0], []).append(n)
    return [("alignment summary (mean / last / max over layers)", head)] + [(f"{k} per layer", v) for k, v in layers.items()]


def tables_for(benchmark: str, names: list[str]) -> MetricTables:
    return [(t, ms) for t, ms in METRIC_TABLES.get(benchmark, generic_tables)(list(names)) if ms]


# ---------------------------------------------------------------- document model

@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    title: str = ""
    bold: set = field(default_factory=set)  # {(row, col)}


@dataclass
class Figure:
    png: bytes
    alt: str


@dataclass
class Card:
    title: str
    ok: bool | None  # True correct, False incorrect, None unknown
    decision: str
    lines: list[tuple[str, str]]
    png: bytes | None = None


@dataclass
class Run:
    label: str
    folder: Path
    results: Results


Block = tuple  # ("h", level, text) | ("p", text) | Table | Figure | ("cards", title, [Card]) | ("details", summary, text)


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


# ---------------------------------------------------------------- plots (matplotlib without pyplot: no global backend)

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _figure(w: float, h: float):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(w, h))
    return fig, fig.subplots()


def bar_chart(runs: list[Run], names: list[str], title: str) -> bytes:
    import numpy as np

    n, k = len(names), len(runs)
    horizontal = n > 12
    fig, ax = (_figure(9, min(60.0, max(3.0, 0.22 * n * max(1.0, 0.6 * k)))) if horizontal
               else _figure(min(16.0, max(6.0, 0.7 * n * max(1.0, 0.5 * k))), 4))
    pos, width = np.arange(n), 0.8 / k
    for i, run in enumerate(runs):
        vals = [run.results.metrics.get(m, float("nan")) for m in names]
        vals = [v if math.isfinite(v) else float("nan") for v in vals]  # inf cannot be drawn
        offs = pos - 0.4 + width * (i + 0.5)
        (ax.barh if horizontal else ax.bar)(offs, vals, width, label=run.label)
    if horizontal:
        ax.set_yticks(pos, names, fontsize=7)
        ax.invert_yaxis()
    else:
        ax.set_xticks(pos, names, rotation=30 if n > 4 else 0, ha="right" if n > 4 else "center", fontsize=8)
    ax.set_title(title)
    if k > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    return _png(fig)


def line_plot(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str, ylabel: str = "") -> bytes:
    fig, ax = _figure(7, 3.6)
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o", markersize=3, label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)


def _floats(xs: Iterable) -> list[float]:
    out = []
    for x in xs:
        try:
            out.append(float(x))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


# ---------------------------------------------------------------- samples

OK_WORDS = {"correct", "ok", "pass", "passed", "true", "yes", "success", "right", "match"}
BAD_WORDS = {"incorrect", "wrong", "fail", "failed", "false", "no", "failure", "error", "mismatch"}
TEXT_KEYS = ("prompt", "question", "caption", "inputs", "answer", "prediction", "target", "outputs", "tag")


def sample_ok(s: dict) -> bool | None:
    for key in ("decision", "correct"):
        d = s.get(key)
        if isinstance(d, bool):
            return d
        if isinstance(d, str) and d.strip().lower() in OK_WORDS | BAD_WORDS:
            return d.strip().lower() in OK_WORDS
    return None


def pick_samples(samples: Iterable[dict], n: int) -> list[tuple[int, dict]]:
    """Up to n samples, failures first, then unknown, then successes; those with an image preferred."""
    buckets = {(img, ok): [] for img in (True, False) for ok in (False, None, True)}
    for i, s in enumerate(samples):
        b = buckets[("image" in s and bool(s["image"]), sample_ok(s))]
        if len(b) < n:
            b.append((i, s))
    for img in (True, False):
        chosen = [x for ok in (False, None, True) for x in buckets[(img, ok)]]
        if chosen:
            return chosen[:n]
    return []


def thumbnail(path: Path) -> bytes | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def _short(v) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= 400 else s[:397] + "..."


def sample_cards(run: Run, n: int) -> list[Card]:
    cards = []
    for i, s in pick_samples(read_samples(run.folder), n):
        ok = sample_ok(s)
        lines = [(k, _short(s[k])) for k in TEXT_KEYS if k in s and s[k] not in (None, "")]
        if s.get("reason") not in (None, ""):
            lines.append(("reason", _short(s["reason"])))
        png = None
        if s.get("image"):
            p = Path(s["image"])
            png = thumbnail(p if p.is_absolute() else run.folder / p)
            if png is None:
                lines.append(("image missing", str(s["image"])))
        decision = str(s.get("decision", {True: "correct", False: "incorrect", None: "—"}[ok]))
        cards.append(Card(f"#{i}", ok, decision, lines, png))
    return cards


# ---------------------------------------------------------------- content

def summary_table(runs: list[Run]) -> Table:
    official = any("official_compatible" in r.results.extra for r in runs)
    headers = ["run", "benchmark", "model", "primary metric", "value", "n_items", "step", "created", "git hash"]
    rows = []
    for r in runs:
        res = r.results
        rows.append([r.label, f"{res.benchmark} ({res.benchmark_version})", str(res.model.get("name") or "—"),
                     res.primary_metric + ("" if res.higher_is_better else " (lower better)"),
                     _fmt(res.primary_value), "—" if res.n_items is None else str(res.n_items),
                     "—" if res.step is None else str(res.step), res.created or "—", (res.git_hash or "—")[:12]]
                    + ([str(res.extra.get("official_compatible", "—")).lower()] if official else []))
    return Table(headers + (["official"] if official else []), rows, "Runs")


def metric_table(runs: list[Run], names: list[str], title: str) -> Table:
    rows, bold = [], set()
    for ri, m in enumerate(names):
        hib = runs[0].results.is_higher_better(m)
        vals = [r.results.metrics.get(m) for r in runs]
        rows.append([m + ("" if hib else " (lower better)")] + [_fmt(v) for v in vals])
        present = [v for v in vals if v is not None]
        if len(runs) > 1 and len(set(present)) > 1:
            best = max(present) if hib else min(present)
            bold |= {(ri, ci + 1) for ci, v in enumerate(vals) if v == best}
    return Table(["metric"] + [r.label for r in runs], rows, title, bold)


def benchmark_blocks(bench: str, runs: list[Run]) -> list[Block]:
    blocks: list[Block] = [("h", 2, f"Benchmark: {bench}")]
    versions = sorted({r.results.benchmark_version for r in runs})
    if len(versions) > 1:
        blocks.append(("p", f"Warning: these runs used different benchmark versions ({', '.join(versions)}); "
                            "their numbers may not be comparable."))
    names = list(dict.fromkeys(m for r in runs for m in r.results.metrics))
    stepped = [r for r in runs if r.results.step is not None]
    for title, ms in tables_for(bench, names):
        blocks.append(metric_table(runs, ms, title))
        blocks.append(Figure(bar_chart(runs, ms, f"{bench}: {title}"), f"bar chart of {bench} {title}"))
        if len({r.results.step for r in stepped}) > 1:
            models = {str(r.results.model.get("name")) for r in stepped}
            series: dict[str, tuple[list[float], list[float]]] = {}
            for m in ms[:MAX_LINES]:
                for model in sorted(models):
                    pts = sorted((r.results.step, r.results.metrics[m]) for r in stepped
                                 if str(r.results.model.get("name")) == model and m in r.results.metrics)
                    label = m if len(models) == 1 else f"{model}: {m}"
                    series[label] = ([p[0] for p in pts], [p[1] if math.isfinite(p[1]) else math.nan for p in pts])
            blocks.append(Figure(line_plot(series, f"{bench}: {title} over training steps", "step"),
                                 f"{bench} {title} over steps"))
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for r in runs:
        for name, c in (r.results.extra.get("curves") or {}).items():
            if isinstance(c, dict) and "y" in c:
                y = _floats(c["y"])
                x = _floats(c.get("x", range(len(y))))
                curves.setdefault(name, {})[r.label] = (x, y)
                labels.setdefault(name, (str(c.get("xlabel", "x")), str(c.get("ylabel", name))))
    for name, series in curves.items():
        blocks.append(Figure(line_plot(series, f"{bench}: {name}", *labels[name]), f"{bench} curve {name}"))
    return blocks


def report_blocks(runs: list[Run], max_samples: int) -> list[Block]:
    blocks: list[Block] = [summary_table(runs)]
    for bench in dict.fromkeys(r.results.benchmark for r in runs):
        blocks += benchmark_blocks(bench, [r for r in runs if r.results.benchmark == bench])
    sample_blocks = [("cards", f"{r.label} ({r.results.benchmark})", cards) for r in runs
                     if (cards := sample_cards(r, max_samples))]
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


# ---------------------------------------------------------------- renderers

CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1f2328;max-width:1400px}
h1{font-size:1.6em}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:right}th{background:#f6f8fa}
td:first-child,th:first-child{text-align:left}img.plot{max-width:100%;display:block;margin:8px 0 24px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}
.card{border:1px solid #d0d7de;border-radius:6px;padding:8px;font-size:12px;overflow-wrap:anywhere}
.card img{width:160px;height:160px;object-fit:contain;image-rendering:pixelated;background:#eee;display:block;margin:0 auto 6px}
.ok{border-left:5px solid #1a7f37}.bad{border-left:5px solid #cf222e}.unk{border-left:5px solid #8c959f}
.badge{display:inline-block;padding:1px 6px;border-radius:10px;color:#fff;font-weight:600}
.ok .badge{background:#1a7f37}.bad .badge{background:#cf222e}.unk .badge{background:#8c959f}
.k{color:#57606a}pre{background:#f6f8fa;padding:8px;overflow:auto;font-size:12px}"""


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def render_html(title: str, blocks: list[Block]) -> str:
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>",
           f"<style>{CSS}</style></head><body>", f"<h1>{_esc(title)}</h1>",
           f"<p class=\"k\">generated {_esc(utc_now())} by uae report</p>"]
    for b in blocks:
        if isinstance(b, Table):
            out.append("<table>" + (f"<caption>{_esc(b.title)}</caption>" if b.title else ""))
            out.append("<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in b.headers) + "</tr>")
            for ri, row in enumerate(b.rows):
                out.append("<tr>" + "".join(f"<td><b>{_esc(c)}</b></td>" if (ri, ci) in b.bold else f"<td>{_esc(c)}</td>"
                                            for ci, c in enumerate(row)) + "</tr>")
            out.append("</table>")
        elif isinstance(b, Figure):
            out.append(f"<img class=\"plot\" alt=\"{_esc(b.alt)}\" src=\"{_data_uri(b.png)}\">")
        elif b[0] == "h":
            out.append(f"<h{b[1]}>{_esc(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append(f"<p>{_esc(b[1])}</p>")
        elif b[0] == "cards":
            out.append(f"<h3>{_esc(b[1])}</h3><div class=\"grid\">")
            for c in b[2]:
                cls = {True: "ok", False: "bad", None: "unk"}[c.ok]
                img = f"<img alt=\"sample {_esc(c.title)}\" src=\"{_data_uri(c.png)}\">" if c.png else ""
                body = "".join(f"<div><span class=\"k\">{_esc(k)}:</span> {_esc(v)}</div>" for k, v in c.lines)
                out.append(f"<div class=\"card {cls}\">{img}<div>{_esc(c.title)} <span class=\"badge\">"
                           f"{_esc(c.decision)}</span></div>{body}</div>")
            out.append("</div>")
        elif b[0] == "details":
            out.append(f"<details><summary>{_esc(b[1])}</summary><pre>{_esc(b[2])}</pre></details>")
    out.append("</body></html>\n")
    return "\n".join(out)


def _md_cell(s) -> str:
    return _esc(s).replace("|", "\\|").replace("\n", "<br>")


def render_markdown(title: str, blocks: list[Block], files: Path, rel: str) -> str:
    """Markdown text; PNGs go to `files` and are linked as `rel/NAME`."""
    files.mkdir(parents=True, exist_ok=True)
    n = 0

    def save(png: bytes, stem: str) -> str:
        nonlocal n
        n += 1
        (files / f"{stem}-{n:03d}.png").write_bytes(png)
        return f"{rel}/{stem}-{n:03d}.png"

    out = [f"# {_md_cell(title)}", "", f"_generated {utc_now()} by uae report_", ""]
    for b in blocks:
        if isinstance(b, Table):
            if b.title:
                out += [f"**{_md_cell(b.title)}**", ""]
            out.append("| " + " | ".join(_md_cell(h) for h in b.headers) + " |")
            out.append("|" + "|".join(":---" if i == 0 else "---:" for i in range(len(b.headers))) + "|")
            for ri, row in enumerate(b.rows):
                out.append("| " + " | ".join(f"**{_md_cell(c)}**" if (ri, ci) in b.bold else _md_cell(c)
                                             for ci, c in enumerate(row)) + " |")
            out.append("")
        elif isinstance(b, Figure):
            out += [f"![{_md_cell(b.alt)}]({save(b.png, 'plot')})", ""]
        elif b[0] == "h":
            out += ["#" * b[1] + " " + _md_cell(b[2]), ""]
        elif b[0] == "p":
            out += [_md_cell(b[1]), ""]
        elif b[0] == "cards":
            out += [f"### {_md_cell(b[1])}", "", "| image | decision | details |", "|:---:|:---|:---|"]
            for c in b[2]:
                mark = {True: "✅", False: "❌", None: "•"}[c.ok]
                img = f"<img src=\"{save(c.png, 'sample')}\" width=\"128\">" if c.png else ""
                body = "<br>".join(f"{_md_cell(k)}: {_md_cell(v)}" for k, v in c.lines)
                out.append(f"| {img} | {mark} {_md_cell(c.decision)} {_md_cell(c.title)} | {body} |")
            out.append("")
        elif b[0] == "details":
            out += [f"<details><summary>{_esc(b[1])}</summary>", "", "```json", b[2], "```", "", "</details>", ""]
    return "\n".join(out) + "\n"


def build_report(results_paths: Sequence[str | Path], out: str | Path, max_samples: int = MAX_SAMPLES,
                 title: str = "uae report") -> Path:
    """Write a report of one or more results folders to `out` (.html self-contained, or .md + `<stem>_files/`)."""
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".html", ".htm", ".md"):
        raise ReportError(f"{out}: the report file must end in .html or .md")
    if not results_paths:
        raise ReportError("give at least one results folder or results.json")
    blocks = report_blocks(load_runs(results_paths), max_samples)
    if kind == ".md":
        text = render_markdown(title, blocks, out.parent / f"{out.stem}_files", f"{out.stem}_files")
    else:
        text = render_html(title, blocks)
    atomic_write_text(out, text)
    return out
