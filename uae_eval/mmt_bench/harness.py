"""MMT-Bench harness: prompt -> answer(images, prompt) or a predictions file -> extract -> aggregate."""
from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from uae_data.core.config import help_field, to_dict
from uae_data.core.errors import InputError
from uae_eval.benchmarks import Benchmark, register
from uae_eval.results import Results, write_results
from uae_eval.vlm_judge import ServedVLMConfig

from .data import check_images, decode_images, load_tsv
from .extract import RULE_SETS, extract_choice
from .prompt import build_prompt, row_options


@dataclass
class MMTConfig:
    tsv: str = help_field("manifests/mmt_bench/scene_mmt.tsv", help="official-layout MMT-Bench TSV")
    model: str = help_field("oracle", help="answerer name or model path (the CLI builds the answer callable)")
    rules: str = help_field("vlmevalkit-2026", help="extraction rule set: " + " | ".join(RULE_SETS))
    seed: int = help_field(0, help="seed for random answerers")
    limit: int | None = help_field(None, help="score only the first N rows (smoke runs; not comparable)")
    allow_missing: bool = help_field(False, help="predictions mode: score rows without a prediction as failed extractions (as VLMEvalKit scores a missing answer) instead of refusing; results record n_missing")
    server: ServedVLMConfig = help_field(None, help="a VLM served by vLLM/SGLang/lmdeploy: server.endpoint=URL makes `model` the served model's name")

    def __post_init__(self) -> None:
        self.server = self.server or ServedVLMConfig()
        if self.rules not in RULE_SETS:
            raise InputError(f"mmt-bench config: rules {self.rules!r} unknown; choose {', '.join(RULE_SETS)}")


def aggregate(samples: list[dict]) -> dict[str, float]:
    """overall = micro mean; category/<c> = mean per category; l2-category/<l> = mean of its categories (facts §6)."""
    by_cat: dict[str, list[int]] = defaultdict(list)
    l2_of: dict[str, set] = defaultdict(set)
    for s in samples:
        by_cat[s["category"]].append(int(s["hit"]))
        l2_of[s["l2-category"]].add(s["category"])
    metrics = {"overall": sum(int(s["hit"]) for s in samples) / len(samples)} if samples else {}
    cat_acc = {c: sum(h) / len(h) for c, h in by_cat.items()}
    for l2, cats in sorted(l2_of.items()):
        metrics[f"l2-category/{l2}"] = sum(cat_acc[c] for c in cats) / len(cats)
    for c in sorted(cat_acc):
        metrics[f"category/{c}"] = cat_acc[c]
    return metrics


def write_acc_csv(path: Path, samples: list[dict]) -> None:
    """VLMEvalKit-style acc table: rows per split then ALL; Overall, l2 columns, then categories sorted."""
    splits = sorted({str(s.get("split", "none")) for s in samples})
    rows = [(sp, aggregate([s for s in samples if str(s.get("split", "none")) == sp])) for sp in splits]
    rows.append(("ALL", aggregate(samples)))
    l2s = sorted({s["l2-category"] for s in samples})
    cats = sorted({s["category"] for s in samples})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "Overall", *l2s, *cats])
        for sp, m in rows:
            w.writerow([sp, m.get("overall", ""), *(m.get(f"l2-category/{l}", "") for l in l2s),
                        *(m.get(f"category/{c}", "") for c in cats)])


def read_predictions(path: str | Path) -> dict[str, str]:
    """index -> prediction; a duplicated index is refused (which answer counts would be a guess)."""
    preds: dict[str, str] = {}
    lines: dict[str, int] = {}
    try:
        f = open(path)
    except OSError as e:
        raise InputError(f"{path}: cannot read predictions ({e.strerror})") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                idx, pred = str(d["index"]), str(d["prediction"])
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{path}: line {n}: expected {{\"index\": ..., \"prediction\": \"...\"}}") from None
            if idx in preds:
                raise InputError(f"{path}: line {n}: index {idx} already answered on line {lines[idx]}")
            preds[idx], lines[idx] = pred, n
    return preds


def check_predictions(preds: dict[str, str], df, all_indexes: set[str], path, allow_missing: bool) -> int:
    """Refuse indexes the TSV lacks; count rows without a prediction, refusing them unless `allow_missing`."""
    unknown = [i for i in preds if i not in all_indexes]
    if unknown:
        raise InputError(f"{path}: {len(unknown)} predictions name indexes not in the TSV (e.g. "
                         f"{', '.join(unknown[:5])}); predictions must answer this TSV's rows")
    missing = [i for i in df["index"] if i not in preds]
    if missing and not allow_missing:
        raise InputError(f"{path}: {len(missing)} of {len(df)} rows have no prediction (e.g. index "
                         f"{', '.join(missing[:5])}); pass --allow-missing to score them as failed answers")
    return len(missing)


def run(cfg: MMTConfig, out: str | Path, answer: Callable[[list, str], str] | None = None,
        predictions: str | Path | None = None, model_name: str | None = None) -> Results:
    """Score `answer(images, prompt) -> text` or a PRED.jsonl; writes results.json, samples.jsonl, <tsv>_acc.csv.

    Predictions must answer every row (or `allow_missing`: a missing answer scores as a failed
    extraction, as VLMEvalKit scores it); results name what made them (`model_name`, default the
    predictions file's stem), never the manifest's answerer.
    """
    if (answer is None) == (predictions is None):
        raise InputError("mmt-bench: give exactly one of an answerer or --predictions PRED.jsonl")
    df = load_tsv(cfg.tsv)
    all_indexes = set(df["index"])
    left = 0  # rows limit= leaves out: a subset is marked partial, as missing answers are
    if cfg.limit is not None:
        left = max(0, len(df) - cfg.limit)
        df = df.head(cfg.limit)
    preds = read_predictions(predictions) if predictions is not None else None
    n_missing = 0
    if preds is not None:
        n_missing = check_predictions(preds, df, all_indexes, predictions, cfg.allow_missing)
        model = {"name": model_name or Path(predictions).stem, "path": str(predictions),
                 "config": {"source": "predictions file"}}
    else:
        model = {"name": model_name or cfg.model, "path": None, "config": {}}
    if answer is not None:
        lacking = [c for c in getattr(answer, "needs_columns", ()) if c not in df.columns]
        if lacking:
            raise InputError(f"{cfg.tsv}: no {', '.join(lacking)} column; the scene-world answerers (oracle, "
                             "caption-reader) answer only scene-world TSVs: give a real model or --predictions")
        check_images(df, cfg.tsv)  # bad rows fail up front, not mid-run
    from uae_data import distributed

    dist = distributed.current()  # several processes: each answers every world-th row, rank 0 merges
    records = df.to_dict("records")
    mine = dist.split(list(range(len(records)))) if answer is not None else list(range(len(records)))
    samples = []
    asked: dict = {}
    if answer is not None and hasattr(answer, "answer_many"):  # a served VLM: many questions in flight at once,
        rows = [records[i] for i in mine]                      # in chunks so the decoded images stay few
        for k in range(0, len(rows), 512):
            chunk = rows[k:k + 512]
            asked.update(zip((r["index"] for r in chunk), answer.answer_many(
                [(decode_images(r["image"], f"{cfg.tsv}: row index {r['index']}"), build_prompt(r)) for r in chunk])))
    for row in (records[i] for i in mine):
        idx = row["index"]
        if preds is not None:
            pred = preds.get(idx, "")  # missing (allow_missing): no answer -> extraction fails -> Z
        elif idx in asked:
            pred = asked[idx]
        else:
            extra = {"row": row} if getattr(answer, "wants_row", False) else {}
            pred = answer(decode_images(row["image"], f"{cfg.tsv}: row index {idx}"), build_prompt(row), **extra)
        options = row_options(row)
        got = extract_choice(pred, options, cfg.rules) or "Z"
        samples.append({"index": idx, "question": row["question"], "options": options, "answer": row["answer"],
                        "prediction": pred, "extracted": got, "hit": int(got == row["answer"]),
                        "category": row["category"], "l2-category": row["l2-category"],
                        "split": str(row.get("split", "none"))})
    if answer is not None and dist.active:
        merged = [pair for part in dist.gather(list(zip(mine, samples))) for pair in part]
        samples = [s for _, s in sorted(merged, key=lambda p: p[0])]
    out = Path(out)
    name = Path(cfg.tsv).stem
    if not dist.main:
        dist.barrier()
        return Results(benchmark="mmt-bench", benchmark_version=f"{name}+{cfg.rules}", model=model,
                       metrics=aggregate(samples), primary_metric="overall", higher_is_better=True,
                       n_items=len(samples), config=to_dict(cfg))
    out.mkdir(parents=True, exist_ok=True)
    write_acc_csv(out / f"{name}_acc.csv", samples)
    results = Results(benchmark="mmt-bench", benchmark_version=f"{name}+{cfg.rules}",
                      model=model, metrics=aggregate(samples),
                      primary_metric="overall", higher_is_better=True, n_items=len(samples),
                      config=to_dict(cfg) | ({"model": model["name"]} if preds is not None else {}),
                      extra={"partial": bool(n_missing or left), "n_missing": n_missing + left,
                             **({"limited_to": len(df)} if left else {}),
                             **({"n_request_failed": len(answer.errors)} if hasattr(answer, "errors") else {})})
    write_results(out, results, samples)
    dist.barrier()
    return results


def mmt_summary(res: Results, out: Path) -> str:
    missing = f", {res.extra['n_missing']} unanswered scored as failed" if res.extra.get("n_missing") else ""
    return (f"mmt-bench overall={res.metrics['overall']:.4f} over {res.n_items} questions "
            f"({res.model['name']}{missing}) -> {out}")


register(Benchmark("mmt-bench", MMTConfig, run, help="MMT-Bench with VLMEvalKit's prompt, answer extraction and "
                   "aggregation", manifest="eval/mmt-bench-scene.yaml", summary=mmt_summary))
