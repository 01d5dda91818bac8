"""Charts for the report: units (one per chart), CI pairs drawn as error bars, constant metrics left out.

Units are inferred from a metric's name and values: a name containing "psnr" is in dB; "words", "length",
"tokens" or "_len" is a count; anything else whose values all lie in [0, 1] is a 0-1 score (a "/delta",
"_delta" or "gain" name in [-1, 1] is a change in a score); whatever is left is a unit of its own, named by the
metric's prefix before its last "/" (so a per-layer "task/cknna/layer_NN" family shares one chart) or by
the metric itself; no axis ever mixes dB with counts or scores.

A metric `X` with `X_ci_low` / `X_ci_high` (uae_eval.recon) or `X/ci_low` / `X/ci_high` beside it is drawn
as one bar with an error bar; the bounds are never bars of their own.

matplotlib is used without pyplot (no global backend).
"""
from __future__ import annotations

import io
import math
from typing import Iterable, Sequence

DB, COUNT, SCORE, CHANGE = "dB", "count", "score (0-1)", "change in score"
COUNT_WORDS = ("words", "length", "tokens", "_len")
CI_SUFFIXES = (("_ci_low", "_ci_high"), ("/ci_low", "/ci_high"))


def _finite(vals: Iterable) -> list[float]:
    out = []
    for v in vals:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def metric_unit(name: str, values: Iterable = ()) -> str:
    """The unit a metric is charted in (see the module docstring); an unknown unit is the metric's own name."""
    low = name.lower()
    if "psnr" in low:
        return DB
    if any(w in low for w in COUNT_WORDS):
        return COUNT
    vals = _finite(values)
    is_change = low.endswith(("/delta", "_delta")) or "gain" in low
    if vals and all(0.0 <= v <= 1.0 for v in vals) and not (is_change and min(vals) < 0):
        return CHANGE if is_change else SCORE
    if vals and is_change and all(-1.0 <= v <= 1.0 for v in vals):
        return CHANGE
    return name.rsplit("/", 1)[0] if "/" in name else name  # "task/cknna/layer_03", ".../mean" -> "task/cknna"


def ci_pairs(names: Sequence[str]) -> dict[str, tuple[str, str]]:
    """{X: (low name, high name)} for every X in `names` whose two CI bounds are in `names` too."""
    have = set(names)
    out = {}
    for n in names:
        for lo, hi in CI_SUFFIXES:
            if n + lo in have and n + hi in have:
                out[n] = (n + lo, n + hi)
                break
    return out


def ci_bound_names(names: Sequence[str]) -> set[str]:
    return {b for pair in ci_pairs(names).values() for b in pair}


def is_constant(values: Sequence) -> bool:
    """Nothing to see in a chart: no finite value, every run equal (two or more runs), or a single run's 0."""
    vals = [float(v) if v is not None else math.nan for v in values]
    fin = _finite(vals)
    if not fin:
        return True
    if len(vals) > 1:
        return len(fin) == len(vals) and max(fin) == min(fin)
    return fin[0] == 0.0


def unit_groups(names: Sequence[str], values: dict[str, list]) -> dict[str, list[str]]:
    """{unit: [names]} in first-seen order. A family ("task/cknna/...") with any member outside [0, 1] is charted
    in its own unit as a whole, so its in-range members do not drift onto the 0-1 score axis."""
    units = {n: metric_unit(n, values.get(n, ())) for n in names}
    own = {u for n, u in units.items() if "/" in n and u == n.rsplit("/", 1)[0]}
    groups: dict[str, list[str]] = {}
    for n in names:
        u = units[n]
        if u == SCORE and "/" in n and n.rsplit("/", 1)[0] in own:
            u = n.rsplit("/", 1)[0]
        groups.setdefault(u, []).append(n)
    return groups


# ---------------------------------------------------------------- drawing

def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return buf.getvalue()


def _figure(w: float, h: float):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(w, h))
    return fig, fig.subplots()


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def bar_chart(labels: list[str], metrics: list[dict], names: list[str], title: str, unit: str,
              ci: dict[str, tuple[str, str]] | None = None) -> bytes:
    """One bar per (metric, run); `metrics[i]` is run i's metric dict; CI bounds in `ci` become error bars."""
    import numpy as np

    ci = ci or {}
    n, k = len(names), len(labels)
    horizontal = n > 12
    fig, ax = (_figure(9, min(60.0, max(3.0, 0.22 * n * max(1.0, 0.6 * k)))) if horizontal
               else _figure(min(14.0, max(5.0, 0.9 * n * max(1.0, 0.5 * k) + 2)), 3.6))
    pos, width = np.arange(n), 0.8 / k
    for i, (label, m) in enumerate(zip(labels, metrics)):
        vals = np.array([_num(m.get(x)) for x in names])
        offs = pos - 0.4 + width * (i + 0.5)
        err = None
        if any(x in ci for x in names):
            lo = np.array([_num(m.get(ci[x][0])) if x in ci else math.nan for x in names])
            hi = np.array([_num(m.get(ci[x][1])) if x in ci else math.nan for x in names])
            err = np.nan_to_num(np.clip(np.vstack([vals - lo, hi - vals]), 0, None), nan=0.0)
        kw = {"label": label, "capsize": 4, "error_kw": {"elinewidth": 1.2, "ecolor": "#333"}}
        if horizontal:
            ax.barh(offs, vals, width, xerr=err, **kw)
        else:
            ax.bar(offs, vals, width, yerr=err, **kw)
        for o, x in zip(offs, names):  # inf (PSNR of identical images) cannot be drawn: say so at the axis
            raw = m.get(x)
            if raw is not None and not math.isfinite(_num(raw)) and not (isinstance(raw, float) and math.isnan(raw)):
                txt = str(raw) if isinstance(raw, str) else ("inf" if raw > 0 else "-inf")
                if horizontal:
                    ax.text(0.01, o, f"{txt} (not drawn)", va="center", fontsize=8, transform=ax.get_yaxis_transform())
                else:
                    ax.text(o, 0.02, f"{txt} (not drawn)", ha="center", va="bottom", fontsize=8, rotation=90,
                            transform=ax.get_xaxis_transform())
    (ax.set_ylim if horizontal else ax.set_xlim)(-0.5, n - 0.5)
    if horizontal:
        ax.set_yticks(pos, names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
    else:
        rot = n > 4 or max(len(x) for x in names) > 18
        ax.set_xticks(pos, names, rotation=30 if rot else 0, ha="right" if rot else "center", fontsize=8)
        ax.set_ylabel(unit)
    if unit == SCORE:
        (ax.set_xlim if horizontal else ax.set_ylim)(0, 1.05)
    ax.axhline(0, color="#888", linewidth=0.8) if not horizontal else ax.axvline(0, color="#888", linewidth=0.8)
    ax.set_title(title + (" (error bars: 95% CI)" if any(x in ci for x in names) else ""), fontsize=10)
    if k > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    return _png(fig)


def line_plot(series: dict[str, tuple[list[float], list[float]]], title: str, xlabel: str, ylabel: str = "",
              bands: dict[str, tuple[list[float], list[float]]] | None = None, markers: bool = True) -> bytes:
    """One line per series with a marker on every point (unless markers=False); optional (low, high) bands."""
    fig, ax = _figure(7, 3.4)
    for label, (x, y) in series.items():
        y = [_num(v) for v in y]
        (line,) = ax.plot(x, y, marker="o" if markers else None, markersize=4, label=label)
        if bands and label in bands:
            lo, hi = bands[label]
            ax.fill_between(x, [_num(v) for v in lo], [_num(v) for v in hi], color=line.get_color(), alpha=0.15)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _png(fig)
