"""UniFork on the scene world: a Y-fork vs a fully shared model of the same depth and width, same data.

Trains both (manifests/train/yfork-scene.yaml, shared-scene.yaml; CPU-sized), then scores each on
scene GenEval (text → image through the generation branch, sampled, 4 images per prompt), scene MMT-Bench
(caption-reader over the model's own greedy captions) and per-layer image/text alignment on held-out corpus
pairs (manifests/eval/alignment-scene.yaml), and writes one report with everything side by side.

    python experiments/unifork_compare/unifork_compare.py --out out/unifork [--steps 400] [--geneval-limit N] [--mmt-limit N]

Re-running reuses finished training runs and corpus. Prints one table (what
experiments/unifork_compare/results_cpu.txt holds).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from uae_data.core.config import load_config  # noqa: E402

MODELS = ("yfork", "shared")


def build_corpus(out: Path, n: int) -> Path:
    from uae_data.corpus_config import CorpusConfig
    from uae_data.pipeline import build

    if not (out / "sizes.json").exists():
        cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml", [f"limit={n}"], kind="corpus")
        build(cfg, out, workers=1)
    return out


def train(name: str, corpus: Path, out: Path, overrides: list[str]) -> dict:
    import json

    from uae_train.stages.yfork_train import YForkTrainConfig, train_yfork

    run = out / name
    if (run / "summary.json").exists():
        return json.loads((run / "summary.json").read_text())
    cfg = load_config(YForkTrainConfig, ROOT / f"manifests/train/{name}-scene.yaml", [f"corpus={corpus}", *overrides],
                      kind="yfork")
    return train_yfork(cfg, run)


def cached_captioner(model, images_to_warm: list) -> callable:
    """caption(images) -> texts, batch-captioning `images_to_warm` up front (the harness asks one at a time)."""
    cache: dict[str, str] = {}

    def key(im) -> str:
        return hashlib.sha1(np.asarray(im.convert("RGB")).tobytes()).hexdigest()

    todo = {key(im): im for im in images_to_warm}
    keys = list(todo)
    for k, text in zip(keys, model.caption([todo[k] for k in keys])):
        cache[k] = text

    def caption(images: list) -> list[str]:
        missing = [im for im in images if key(im) not in cache]
        if missing:
            for im, text in zip(missing, model.caption(missing)):
                cache[key(im)] = text
        return [cache[key(im)] for im in images]

    return caption


def evaluate(name: str, model, corpus: Path, out: Path, args) -> dict[str, Path]:
    from uae_eval.alignment import AlignmentConfig
    from uae_eval.alignment import run as run_alignment
    from uae_eval.geneval.generators import from_text_fn
    from uae_eval.geneval.harness import GenEvalConfig
    from uae_eval.geneval.harness import run as run_geneval
    from uae_eval.mmt_bench.answerers import build_answerer
    from uae_eval.mmt_bench.data import decode_images, load_tsv
    from uae_eval.mmt_bench.harness import MMTConfig
    from uae_eval.mmt_bench.harness import run as run_mmt
    from uae_data.pairs import load_pairs
    from uae_train.evaluation.layer_features import yfork_features

    info = {"name": name, "path": str(out / name / "model"), "config": {k: v for k, v in vars(model.config).items()}}
    folders = {}
    t = time.perf_counter()
    gcfg = load_config(GenEvalConfig, ROOT / "manifests/eval/geneval-scene.yaml",
                       [f"limit={args.geneval_limit}"] if args.geneval_limit else [], kind="geneval")
    generate = from_text_fn(lambda prompts, seeds: model.generate(prompts, seeds, size=gcfg.image_size), name)
    folders["geneval"] = out / f"geneval-{name}"
    run_geneval(gcfg, folders["geneval"], generate=generate, model=info)
    print(f"[{name}] geneval {time.perf_counter() - t:.0f}s", flush=True)

    t = time.perf_counter()
    mcfg = load_config(MMTConfig, ROOT / "manifests/eval/mmt-bench-scene.yaml",
                       ["model=caption-reader"] + ([f"limit={args.mmt_limit}"] if args.mmt_limit else []), kind="mmt-bench")
    rows = load_tsv(mcfg.tsv)
    rows = rows.head(mcfg.limit) if mcfg.limit else rows
    images = [decode_images(r, "tsv")[0] for r in rows["image"]]
    caption = cached_captioner(model, images)
    mcfg.model = f"{name} (caption-reader)"
    folders["mmt"] = out / f"mmt-{name}"
    run_mmt(mcfg, folders["mmt"], answer=build_answerer("caption-reader", seed=mcfg.seed, caption=caption))
    print(f"[{name}] mmt {time.perf_counter() - t:.0f}s", flush=True)

    t = time.perf_counter()
    acfg = load_config(AlignmentConfig, ROOT / "manifests/eval/alignment-scene.yaml",
                       [f"data={corpus}", f"skip={args.train_limit}", f"limit={args.align_limit}"], kind="alignment")
    pairs = load_pairs(corpus, acfg.limit, acfg.image_size, skip=acfg.skip)
    feats = yfork_features(model, [p["image"] for p in pairs], [p["caption"] for p in pairs], acfg.batch_size)
    folders["alignment"] = out / f"alignment-{name}"
    run_alignment(acfg, folders["alignment"], feats, model=info)
    # Control: the same architecture and seed, untrained. In-sequence pooling mixes the two sides through
    # causal attention even at init, so the learned curve is read against this one.
    from uae_train.models.yfork import YFork

    init = YFork(model.config, seed=args.seed).eval()
    feats = yfork_features(init, [p["image"] for p in pairs], [p["caption"] for p in pairs], acfg.batch_size)
    folders["alignment_init"] = out / f"alignment-{name}-init"
    run_alignment(acfg, folders["alignment_init"], feats, model={**info, "name": f"{name}@init"})
    print(f"[{name}] alignment {time.perf_counter() - t:.0f}s", flush=True)
    return folders


def table(summaries: dict, folders: dict) -> str:
    from uae_eval.results import read_results

    res = {n: {k: read_results(p) for k, p in f.items()} for n, f in folders.items()}
    lines = ["UniFork on the scene world (CPU): Y-fork vs fully shared, same depth/width/data/steps/seed", ""]
    head = f"{'':34s}" + "".join(f"{n:>12s}" for n in res)
    lines.append(head)

    def row(label: str, values: list) -> None:
        lines.append(f"{label:34s}" + "".join(f"{v:>12.4f}" if isinstance(v, float) else f"{v!s:>12s}" for v in values))

    row("parameters", [summaries[n]["parameters"] for n in res])
    row("shared / total layers", [f"{summaries[n]['config']['shared_layers']}/{summaries[n]['config']['num_layers']}" for n in res])
    row("train steps", [summaries[n]["steps"] for n in res])
    for key in ("last_und_loss", "last_gen_loss", "last_und_token_accuracy", "last_gen_token_accuracy"):
        row(key.replace("last_", "final "), [summaries[n][key] for n in res])
    first = next(iter(res))
    for m in res[first]["geneval"].metrics:
        row(f"GenEval {m}", [res[n]["geneval"].metrics.get(m, float("nan")) for n in res])
    row("GenEval images", [res[n]["geneval"].n_items for n in res])
    for m in [k for k in res[first]["mmt"].metrics if "/" not in k or k.startswith("category/")]:
        row(f"MMT {m}", [res[n]["mmt"].metrics.get(m, float("nan")) for n in res])
    row("MMT questions", [res[n]["mmt"].n_items for n in res])
    a = res[first]["alignment"]
    row("alignment pairs (held out)", [res[n]["alignment"].n_items for n in res])
    row("random baseline k/(N-1)", [res[n]["alignment"].extra["random_baseline_mutual_knn"] for n in res])
    for key, suffix in (("alignment", ""), ("alignment_init", " @init")):
        for task in a.extra["tasks"]:
            for metric in ("mutual_knn", "cknna", "mutual_knn_shuffled_pairs"):
                names = sorted(k for k in a.metrics if k.startswith(f"{task}/{metric}/layer_"))
                for k in names:
                    row(f"{task[:3]} {metric} L{k[-2:]}{suffix}", [res[n][key].metrics.get(k, float("nan")) for n in res])
                if not names:
                    row(f"{task[:3]} {metric} mean{suffix}",
                        [res[n][key].metrics.get(f"{task}/{metric}/mean", float("nan")) for n in res])
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "out" / "unifork")
    p.add_argument("--corpus", type=Path, default=None, help="existing corpus (default: build OUT/corpus)")
    p.add_argument("--corpus-size", type=int, default=3000)
    p.add_argument("--steps", type=int, default=None, help="override the manifests' steps")
    p.add_argument("--train-limit", type=int, default=2000, help="training samples; alignment uses the ones after")
    p.add_argument("--geneval-limit", type=int, default=None)
    p.add_argument("--mmt-limit", type=int, default=None)
    p.add_argument("--align-limit", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of both models (same init for the @init control)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out
    corpus = args.corpus or build_corpus(out / "corpus", args.corpus_size)
    overrides = [f"limit={args.train_limit}", f"threads={args.threads}", f"seed={args.seed}"] + ([f"steps={args.steps}"] if args.steps else [])
    summaries, folders = {}, {}
    from uae_train.models.yfork import YFork

    for name in MODELS:
        t = time.perf_counter()
        summaries[name] = train(name, corpus, out, overrides)
        print(f"[{name}] trained ({time.perf_counter() - t:.0f}s)", flush=True)
        model = YFork.from_pretrained(out / name / "model")
        folders[name] = evaluate(name, model, corpus, out, args)
    from uae_eval.report import build_report

    paths = [folders[n][k] for k in ("geneval", "mmt", "alignment", "alignment_init") for n in MODELS]
    build_report(paths, out / "report.html", title="UniFork: Y-fork vs fully shared (scene world, CPU)")
    build_report(paths, out / "report.md", title="UniFork: Y-fork vs fully shared (scene world, CPU)")
    print()
    print(table(summaries, folders))
    print(f"\nreport: {out / 'report.html'} (and report.md)")


if __name__ == "__main__":
    main()
