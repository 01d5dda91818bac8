"""The demo's web-caption setting: its headline rows, stage-1 curves and before/after samples for the report.

Stage 1 should teach the web-caption encoder to name what its captions leave out: object recall up, attribute
precision held, captions longer, MMT-scene up. A control sits beside each figure: the constant reward (must not
move), the shuffled-image reward and the length reward (both may gain here, since both pay for saying more; the
claim is the true reward's gain beyond them, so each carries `true_minus_control`: the paired per-seed
difference, true after − control after, with its 95% CI). The exact-caption encoder is the ceiling, the blind
encoder the floor.
"""
from __future__ import annotations

import json
from pathlib import Path

from uae_train.demo.headline import MMT_CHANCE, _metric, _per_seed
from uae_train.demo.stats import paired_gain, row

STAGE1_CONTROLS = (("constant", "constant reward"), ("shuffled", "shuffled-image reward"),
                   ("length", "length reward"))
STAGE2_CONTROLS = (("constant", "constant reward"), ("shuffled", "shuffled-image reward"))
SAMPLE_IMAGES = 6


def _controls(out: Path, seeds: int, prefix: str, bench: str, name: str | None, before: float,
              after: list[float], which) -> list[dict]:
    ctrl = []
    for suffix, title in which:
        c_after = _per_seed(out, seeds, f"{prefix}-{suffix}", bench, name)
        if not c_after:
            continue
        entry = {"name": title, "gain": paired_gain(before, c_after)}
        if suffix != "constant" and len(c_after) == len(after):
            entry["true_minus_control"] = paired_gain(c_after, after)
        ctrl.append(entry)
    return ctrl


def web_headline_rows(out: Path, seeds: int, controls: bool = True) -> list[dict]:
    """Object recall, attribute precision, words per caption, MMT-scene, recon scene F1 (stage 1) and
    GenEval-scene and Scene-DPG (stage 2), each before → after with its gain, CI and controls."""
    ev = out / "eval"
    rows: list[dict] = []

    def add(metric: str, stage: str, unit: str, bench: str, name: str | None, after_label: str, prefix: str,
            which, chance: float | None = None, baselines: tuple = ()) -> None:
        before = _metric(ev / "pretrain" / bench, name)
        after = _per_seed(out, seeds, after_label, bench, name)
        if before is None or not after:
            return
        ctrl = _controls(out, seeds, prefix, bench, name, before, after, which) if controls else []
        for label, title in baselines:
            value = _metric(ev / label / bench, name)
            if value is not None:
                ctrl.append({"name": title, "value": value})
        rows.append(row(metric, stage, unit, before, after, chance=chance, controls=ctrl))

    encoders = (("exact-caption-encoder", "exact-caption encoder"), ("blind-encoder", "blind encoder"))
    for metric, name, unit in (("object recall", "object_recall", "share"),
                               ("attribute precision", "attribute_precision", "share"),
                               ("words per caption", "words_per_caption", "words")):
        add(f"{metric} (scene-captions)", "stage 1", unit, "scene-captions", name, "unified-grpo", "stage1",
            STAGE1_CONTROLS, baselines=encoders)
    add("MMT-scene caption-reader", "stage 1", "accuracy", "mmt-bench", None, "unified-grpo", "stage1",
        STAGE1_CONTROLS, MMT_CHANCE, baselines=encoders)
    add("recon scene F1 (stage-1 encoder, pretrained decoder)", "stage 1", "F1", "recon", "scene", "stage1", "stage1",
        STAGE1_CONTROLS)
    add("GenEval-scene overall", "stage 2", "score", "geneval", None, "unified-grpo", "stage2", STAGE2_CONTROLS,
        baselines=(("noise", "object-free images"), ("random", "random scenes")))
    add("Scene-DPG overall (0-100)", "stage 2", "score", "dpg-bench", None, "unified-grpo", "stage2", STAGE2_CONTROLS,
        baselines=(("noise", "object-free images"), ("random", "random scenes")))
    return rows


def _eval_rows(run: Path) -> list[dict]:
    p = run / "eval.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.exists() else []


def stage1_curves(out: Path) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{metric: {run label: (steps, values)}} of words per caption and object recall over stage-1 steps, seed 0's
    held-out evals, for the true reward and each control."""
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {"caption_words": {}, "object_recall": {}}
    for run, label in (("s1", "reconstruction reward"), ("s1-shuffled", "shuffled-image reward"),
                       ("s1-length", "length reward"), ("s1-constant", "constant reward")):
        rows = _eval_rows(out / run)  # seed 0's runs sit in the demo folder itself
        for metric in curves:
            pts = [(r["step"], r[metric]) for r in rows if metric in r]
            if pts:
                curves[metric][label] = ([p[0] for p in pts], [p[1] for p in pts])
    return {m: c for m, c in curves.items() if c}


def _recon_samples(folder: Path) -> dict[str, dict]:
    from uae_eval.results import read_samples

    return {str(s.get("key")): s for s in read_samples(folder) if s.get("original")}


def web_report_lead(out: Path) -> list:
    """Report blocks after the headline: the stage-1 curves, then six held-out images, each with its caption
    before and after stage 1 (seed 0) and the pretrained decoder's reconstruction of both."""
    from uae_eval.report_doc import Figure, Triple
    from uae_eval.report_plots import line_plot
    from uae_eval.report_samples import thumbnail

    def image(folder: Path, rel: str | None) -> bytes | None:
        return thumbnail(folder / rel) if rel else None

    blocks: list = []
    titles = {"caption_words": ("words per caption", "words"), "object_recall": ("object recall", "share")}
    for metric, series in stage1_curves(out).items():
        title, unit = titles[metric]
        blocks.append(Figure(line_plot(series, f"stage 1 (seed 0): held-out {title} over steps", "step", unit),
                             f"stage 1 {title} over steps"))
    before_dir, after_dir = out / "eval" / "pretrain" / "recon", out / "eval" / "stage1" / "recon"
    before, after = _recon_samples(before_dir), _recon_samples(after_dir)
    keys = sorted(set(before) & set(after))[:SAMPLE_IMAGES]
    if keys:
        triples = []
        for key in keys:
            for tag, folder, s in (("before stage 1", before_dir, before[key]), ("after stage 1", after_dir, after[key])):
                rec = s.get("reconstruction") or (s.get("reconstructions") or [None])[0]
                scores = [(m, f"{float(v):.3f}") for m, v in (s.get("metrics") or {}).items()
                          if m == "scene" and isinstance(v, (int, float))]
                triples.append(Triple(f"{key} {tag}", image(folder, s["original"]), str(s.get("caption", "")),
                                      scores, image(folder, rec)))
        blocks.append(("triples", "Six held-out images: caption and reconstruction before and after stage 1 "
                                  "(seed 0; the pretrained decoder paints both)", triples))
    return blocks
