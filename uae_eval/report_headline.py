"""The report's headline table: before -> after, the gain with its 95% CI, controls and chance, one row a metric.

A row (a dict; `build_report(..., headline=rows)` or a headline.json holding {"rows": [...]}):

    {"metric": "MMT-scene caption-reader", "stage": "stage 1", "unit": "accuracy", "higher_is_better": true,
     "before": {"mean": 0.41, "sd": 0.03, "n": 3}, "after": {"mean": 0.52, "sd": 0.02, "n": 3},
     "gain": {"mean": 0.11, "ci95": [0.05, 0.17]}, "chance": 0.25,
     "controls": [{"name": "constant reward", "gain": {"mean": 0.0, "ci95": [-0.03, 0.03]}},
                  {"name": "length reward", "gain": {"mean": 0.05, "ci95": [0.01, 0.09]},
                   "true_minus_control": {"mean": 0.06, "ci95": [0.02, 0.10]}},
                  {"name": "blind encoder", "value": 0.27}]}

Only "metric" is required; stage, unit, higher_is_better (default true), sd, n, gain, ci95, chance and
controls may be missing or null (a single seed has no sd or CI). before/after/value may also be plain numbers.
Without a gain, after - before is shown (marked "no CI"). A gain whose CI lies wholly above 0 is marked
"▲ CI above 0", wholly below "▼ CI below 0", else "○ CI includes 0"; the cell is green when that is an
improvement (direction-aware), red when it is a significant change for the worse, grey when the CI holds 0.
A control's gain whose CI excludes 0 is amber (a control should not move).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

from uae_eval.report_doc import ReportError, Table

MAX_CONTROL_COLUMNS = 5
ABOVE, BELOW, SPANS, NO_CI = "▲ CI above 0", "▼ CI below 0", "○ CI includes 0", "no CI"


class HeadlineError(ReportError):
    """A headline file or row that cannot be read. One line for users."""


def load_headline(headline: str | Path | Sequence[dict] | dict | None) -> list[dict]:
    """Rows from a list of dicts, a {"rows": [...]} dict, or a path to a JSON file holding either."""
    if headline is None:
        return []
    src = "headline"
    if isinstance(headline, (str, Path)):
        src = str(headline)
        try:
            headline = json.loads(Path(headline).read_text())
        except FileNotFoundError:
            raise HeadlineError(f"{src}: headline file not found") from None
        except (OSError, ValueError) as e:
            raise HeadlineError(f"{src}: not a JSON headline file ({e})") from None
    if isinstance(headline, dict):
        if "rows" not in headline:
            raise HeadlineError(f"{src}: a headline file holds {{\"rows\": [...]}}; found keys "
                                f"{', '.join(map(str, list(headline)[:6])) or 'none'}")
        headline = headline["rows"]
    if not isinstance(headline, (list, tuple)):
        raise HeadlineError(f"{src}: headline rows must be a list of objects")
    for i, row in enumerate(headline):
        if not isinstance(row, dict) or not row.get("metric"):
            raise HeadlineError(f"{src}: headline row {i} needs at least a \"metric\" name")
    return [dict(r) for r in headline]


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _stat(v: Any) -> dict:
    """{"mean", "sd", "n", "ci95"} from a dict or a plain number (missing -> None)."""
    if not isinstance(v, dict):
        v = {"mean": v}
    ci = v.get("ci95")
    lo_hi = None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in (_float(ci[0]), _float(ci[1])):
        lo_hi = (_float(ci[0]), _float(ci[1]))
    n = v.get("n")
    return {"mean": _float(v.get("mean")), "sd": _float(v.get("sd")),
            "n": int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else None, "ci95": lo_hi}


def num(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "—"
    if math.isinf(v):
        return ("+" if signed and v > 0 else "") + ("inf" if v > 0 else "-inf")
    a = abs(v)
    digits = 1 if a >= 100 else 2 if a >= 10 else 3
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def ci_marker(ci: tuple[float, float] | None) -> str:
    if ci is None:
        return NO_CI
    lo, hi = ci
    return ABOVE if lo > 0 else BELOW if hi < 0 else SPANS


def _gain_text(g: dict) -> str:
    ci = f" [{num(g['ci95'][0], True)}, {num(g['ci95'][1], True)}]" if g["ci95"] else ""
    return f"{num(g['mean'], True)}{ci} {ci_marker(g['ci95'])}"


def _mean_sd(s: dict) -> str:
    if s["mean"] is None:
        return "—"
    return num(s["mean"]) + (f" ± {num(s['sd'])}" if s["sd"] is not None else "")


def _control_cell(c: Any) -> tuple[str, str | None]:
    if not isinstance(c, dict):
        return (num(_float(c)), None)
    if c.get("gain") is not None:
        g = _stat(c["gain"])
        text = _gain_text(g)
        if isinstance(c.get("true_minus_control"), dict):  # the true reward's after minus this control's, per seed
            text += f"; true − control {_gain_text(_stat(c['true_minus_control']))}"
        return (text, None if g["ci95"] is None else "ns" if ci_marker(g["ci95"]) == SPANS else "warn")
    if c.get("value") is not None:
        v = _stat(c["value"])
        return (_mean_sd(v), None)
    return ("—", None)


def headline_table(rows: list[dict]) -> Table:
    """The headline Table (rows already through load_headline)."""
    staged = any(r.get("stage") for r in rows)
    names = list(dict.fromkeys(str(c.get("name", f"control {i + 1}")) for r in rows
                               for i, c in enumerate(r.get("controls") or []) if isinstance(c, dict)))
    per_column = 0 < len(names) <= MAX_CONTROL_COLUMNS
    headers = (["metric"] + (["stage"] if staged else []) + ["before → after (mean ± sd)", "gain [95% CI]"]
               + ([f"control: {n}" for n in names] if per_column else (["controls"] if names else []))
               + ["chance"])
    out, cls = [], {}
    for ri, r in enumerate(rows):
        hib = r.get("higher_is_better")
        hib = True if hib is None else bool(hib)
        label = str(r["metric"]) + (f" [{r['unit']}]" if r.get("unit") else "") + ("" if hib else " (lower better)")
        before, after = _stat(r.get("before")), _stat(r.get("after"))
        ns = [s["n"] for s in (before, after) if s["n"] is not None]
        n_text = "" if not ns else f" (n={ns[0]})" if len(set(ns)) == 1 and len(ns) == 2 else \
            f" (n={before['n'] if before['n'] is not None else '—'} → {after['n'] if after['n'] is not None else '—'})"
        change = f"{_mean_sd(before)} → {_mean_sd(after)}{n_text}"
        if r.get("gain") is not None:
            g = _stat(r["gain"])
            gain = _gain_text(g)
        elif before["mean"] is not None and after["mean"] is not None:
            g = {"mean": after["mean"] - before["mean"], "ci95": None}
            gain = f"{num(g['mean'], True)} (after − before) {NO_CI}"
        else:
            g, gain = {"mean": None, "ci95": None}, "—"
        row = [label] + ([str(r.get("stage") or "—")] if staged else []) + [change, gain]
        gi = len(row) - 1
        mark = ci_marker(g["ci95"])
        if mark == SPANS:
            cls[(ri, gi)] = "ns"
        elif mark in (ABOVE, BELOW):
            cls[(ri, gi)] = "sig" if (mark == ABOVE) == hib else "worse"
        controls = [c for c in (r.get("controls") or [])]
        if per_column:
            by_name = {str(c.get("name", f"control {i + 1}")): c for i, c in enumerate(controls) if isinstance(c, dict)}
            for n in names:
                text, c_cls = _control_cell(by_name[n]) if n in by_name else ("—", None)
                if c_cls:
                    cls[(ri, len(row))] = c_cls
                row.append(text)
        elif names:
            row.append("\n".join(f"{c.get('name', 'control')}: {_control_cell(c)[0]}" for c in controls
                                 if isinstance(c, dict)) or "—")
        row.append(num(_float(r.get("chance"))))
        out.append(row)
    note = ("gain = after − before. Green: the 95% CI excludes 0 in the better direction; red: it excludes 0 in "
            "the worse direction; grey: the CI includes 0 (no evidence of a change); amber control: a control moved. "
            "sd and n are over seeds.")
    return Table(headers, out, "Headline: before → after, gain with 95% CI, controls, chance", cls=cls,
                 css="headline", note=note)
