"""DPG-Bench's registry record (uae_eval.benchmarks): config, harness, report tables, the CLI's summary line."""
from __future__ import annotations

from pathlib import Path

from uae_eval.benchmarks import Benchmark, MetricTables, generic_tables, register
from uae_eval.dpg_bench.harness import BENCHMARK, DPGConfig, run


def dpg_tables(names: list[str]) -> MetricTables:
    """Overall first, then the L1 categories, then the L2 categories (the three tables papers report)."""
    l1 = [n for n in names if n.startswith("l1/")]
    l2 = [n for n in names if n.startswith("l2/")]
    rest = [n for n in names if n != "overall" and n not in l1 and n not in l2]
    head = [n for n in ("overall",) if n in names]
    return [("DPG-Bench overall", head), ("L1 categories", l1), ("L2 categories", l2)] + generic_tables(rest)


def dpg_summary(res, out: Path) -> str:
    l1 = "  ".join(f"{k[3:]}={v:.2f}" for k, v in res.metrics.items() if k.startswith("l1/"))
    extra = res.extra
    notes = []
    if extra.get("partial"):
        unanswered = (extra.get("judge") or {}).get("failed_requests")
        notes.append(f"PARTIAL: {extra.get('n_missing_images', 0)} missing, {extra.get('n_failed_images', 0)} failed"
                     + (f", limited to {extra['limited_to']} items" if "limited_to" in extra else "")
                     + (f", {unanswered} judge requests failed (scored 'no')" if unanswered else ""))
    if extra.get("n_skipped"):
        notes.append(f"{extra['n_skipped']} skipped as the official scorer skips them")
    note = f"  ({'; '.join(notes)})" if notes else ""
    return (f"dpg-bench overall={res.metrics['overall']:.2f} over {res.n_items} images  (L1: {l1}){note}  "
            f"official_compatible={str(bool(extra.get('official_compatible'))).lower()}  -> {out}")


register(Benchmark(BENCHMARK, DPGConfig, run, help="DPG-Bench (ELLA's scoring): overall, L1 and L2 category scores",
                   manifest="eval/dpg-scene.yaml", tables=dpg_tables, summary=dpg_summary))
