"""GenEval's registry record (uae_eval.benchmarks): config, harness, report tables, the CLI's summary line.

Beside the harness rather than in it because harness.py is at its size limit.
"""
from __future__ import annotations

from pathlib import Path

from uae_eval.benchmarks import Benchmark, MetricTables, generic_tables, register
from uae_eval.geneval.harness import BENCHMARK, GenEvalConfig, run
from uae_eval.geneval.prompts import GENEVAL_TAGS


def geneval_tables(names: list[str]) -> MetricTables:
    """The six tags and overall first, anything else after."""
    head = [t for t in GENEVAL_TAGS if t in names] + [n for n in ("overall",) if n in names]
    return [("GenEval tags and overall", head)] + generic_tables([n for n in names if n not in head])


def geneval_summary(res, out: Path) -> str:
    tags = "  ".join(f"{k}={v:.3f}" for k, v in res.metrics.items() if k != "overall")
    partial = (f"  PARTIAL: {res.extra['n_missing_prompts']} prompts / {res.extra['n_missing_images']} images missing"
               if res.extra.get("partial") else "")
    return f"geneval overall={res.metrics['overall']:.4f} over {res.n_items} images  ({tags}){partial}  -> {out}"


register(Benchmark(BENCHMARK, GenEvalConfig, run, help="GenEval (official rules): per-tag accuracy and overall",
                   manifest="eval/geneval-scene.yaml", tables=geneval_tables, summary=geneval_summary))
