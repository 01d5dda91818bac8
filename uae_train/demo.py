"""`uae demo`: the whole UAE loop on the scene world in one command, each step resumable.

scene corpus → pretrain (encoder SFT + decoder) → stage 1 (encoder policy) → stage 2 (decoder policy) →
GenEval-scene, MMT-scene (caption-reader) and recon, before (pretrain) and after (Unified-GRPO) → one
report. Every step writes its own folder under OUT and is skipped when its result is already there, so
re-running the same command after an interruption continues where it stopped.

This module sits above the harnesses: it wires uae_train models into uae_eval's plain-callable harnesses
(uae_eval never imports uae_train).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from uae_data.config import config_kind, help_field, load_config

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "manifests"


@config_kind("demo")
@dataclass
class DemoConfig:
    corpus_size: int = help_field(3000, help="scenes in the training corpus")
    image_size: int = help_field(32, help="image side for every model and eval")
    pretrain: list = help_field([], help="overrides of manifests/train/pretrain-scene.yaml (key=value strings)")
    stage1: list = help_field([], help="overrides of manifests/train/stage1-scene.yaml")
    stage2: list = help_field([], help="overrides of manifests/train/stage2-scene.yaml")
    geneval_limit: int | None = help_field(None, help="GenEval prompts scored (None = all 553; smaller = not comparable)")
    geneval_images_per_prompt: int = help_field(4, help="GenEval images per prompt (official: 4)")
    mmt_limit: int | None = help_field(None, help="MMT rows scored (None = all)")
    recon_limit: int = help_field(100, help="held-out images for recon")
    caption_tokens: int = help_field(192, help="token limit of every caption the encoder writes in the evals (the "
                                               "scene world's longest caption is 170 tokens)")
    sampling_steps: int = help_field(20, help="ODE steps of every eval painting")
    guidance: float = help_field(5.0, help="CFG scale of every painting: reconstructions in stage 1, rollouts in "
                                           "stage 2 (Flow-GRPO: 4.5) and evals. A briefly trained decoder follows its "
                                           "captions only weakly; guidance amplifies that signal")
    alignment: bool = help_field(True, help="also measure UniFork's per-layer alignment of both models (~20 s a run "
                                            "on CPU)")
    seed: int = help_field(0, help="seed of the corpus and every stage")


def _done(folder: Path) -> bool:
    return (folder / "results.json").exists() or (folder / "summary.json").exists()


def _models(run: Path):
    import torch

    from uae_train.models.decoder import Decoder
    from uae_train.models.encoder import Encoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    enc = Encoder.from_pretrained(run / "encoder", device=device).eval()
    dec = Decoder.from_pretrained(run / "decoder", text_hidden_size=enc.hidden_size).to(device).eval()
    return enc, dec


def evaluate_run(cfg: DemoConfig, run: Path, label: str, out: Path, corpus: Path, say: Callable[[str], None]) -> list[Path]:
    """GenEval-scene (decoder), MMT-scene caption-reader (encoder), recon (both) of one run folder."""
    from uae_eval.geneval import harness as geneval
    from uae_eval.mmt_bench import harness as mmt
    from uae_eval.mmt_bench.answerers import build_answerer
    from uae_eval import recon
    from uae_train.models.autoencoder import image_to_text, text_to_image

    enc, dec = _models(run)
    info = {"name": label, "path": str(run), "config": {"steps": cfg.sampling_steps, "guidance": cfg.guidance}}
    paint = text_to_image(enc, dec, steps=cfg.sampling_steps, guidance=cfg.guidance)
    folders = []
    g_out = out / "geneval"
    if not _done(g_out):
        say(f"eval {label}: GenEval-scene")
        gcfg = load_config(geneval.GenEvalConfig, MANIFESTS / "eval" / "geneval-scene.yaml",
                           [f"image_size={cfg.image_size}", f"images_per_prompt={cfg.geneval_images_per_prompt}",
                            f"seed={cfg.seed}"] + ([f"limit={cfg.geneval_limit}"] if cfg.geneval_limit else []),
                           kind="geneval")
        geneval.run(gcfg, g_out, generate=paint, model=info)
    folders.append(g_out)
    m_out = out / "mmt-bench"
    if not _done(m_out):
        say(f"eval {label}: MMT-scene (caption-reader)")
        mcfg = load_config(mmt.MMTConfig, MANIFESTS / "eval" / "mmt-bench-scene.yaml",
                           ["model=caption-reader"] + ([f"limit={cfg.mmt_limit}"] if cfg.mmt_limit else []),
                           kind="mmt-bench")
        from uae_train.stages.rl_common import mmt_captioner, repo_path

        mcfg.tsv = repo_path(mcfg.tsv)
        captioner = mmt_captioner(enc, mcfg.tsv, cfg.mmt_limit, cfg.caption_tokens)
        mmt.run(mcfg, m_out, answer=build_answerer("caption-reader", caption=captioner))
        _relabel(m_out, label)
    folders.append(m_out)
    r_out = out / "recon"
    if not _done(r_out):
        say(f"eval {label}: recon")
        rcfg = load_config(recon.ReconConfig, MANIFESTS / "eval" / "recon-scene.yaml",
                           [f"data={corpus}", f"limit={cfg.recon_limit}", f"image_size={cfg.image_size}",
                            "metrics=[scene, scene-soft, psnr, ssim]", "save_images=true"], kind="recon")
        recon.run(rcfg, r_out, caption=image_to_text(enc, max_new_tokens=cfg.caption_tokens), generate=paint, model=info)
    folders.append(r_out)
    if cfg.alignment:
        folders += alignment(cfg, run, label, out, corpus, say)
    reliance = out / "caption_reliance.json"
    if not reliance.exists():
        say(f"eval {label}: caption reliance (decoder loss, true vs shuffled captions)")
        from uae_train.models.caption_reliance import corpus_caption_reliance

        scores = corpus_caption_reliance(dec, enc, corpus, cfg.recon_limit, cfg.image_size, cfg.seed)
        reliance.write_text(json.dumps(scores, indent=2) + "\n")
    return folders


def alignment(cfg: DemoConfig, run: Path, label: str, out: Path, corpus: Path, say: Callable[[str], None]) -> list[Path]:
    """UniFork's per-layer alignment of the run's encoder (understanding) and decoder (generation)."""
    from uae_eval.alignment import AlignmentConfig, run as align
    from uae_train.models.layer_features import load_pairs, model_features

    acfg = load_config(AlignmentConfig, MANIFESTS / "eval" / "alignment-scene.yaml",
                       [f"data={corpus}", f"image_size={cfg.image_size}", f"seed={cfg.seed}"], kind="alignment")
    folders = []
    pairs = None
    for part in ("encoder", "decoder"):
        a_out = out / f"alignment-{part}"
        if not _done(a_out):
            say(f"eval {label}: alignment ({part})")
            pairs = pairs or load_pairs(Path(acfg.data), acfg.limit, acfg.image_size, skip=acfg.skip)
            if len(pairs) <= acfg.k + 3:  # a small held-out set (toy runs): fewer neighbours, still above chance
                acfg.k = max(1, len(pairs) - 4)
            features, info = model_features(run / part, pairs, None, acfg.timestep, acfg.seed, acfg.batch_size)
            info["name"] = f"{label}:{part}"
            align(acfg, a_out, features, model=info)
        folders.append(a_out)
    return folders


def _relabel(folder: Path, label: str) -> None:
    """Name the model in results.json (the MMT harness records the answerer name only)."""
    p = folder / "results.json"
    data = json.loads(p.read_text())
    data["model"]["name"] = label
    p.write_text(json.dumps(data, indent=2) + "\n")


def demo(cfg: DemoConfig, out: Path, progress=None, say: Callable[[str], None] = print) -> dict:
    """Run (or continue) the whole loop into `out`; returns the headline numbers before/after."""
    from uae_data.pipeline import CorpusConfig, build
    from uae_eval.report import build_report
    from uae_eval.results import read_results
    from uae_train.stages.gen_for_und import Stage1Config, stage1
    from uae_train.stages.pretrain import PretrainConfig, pretrain
    from uae_train.stages.und_for_gen import Stage2Config, stage2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    minutes: dict[str, float] = {}  # wall time of each part run by this call (a resumed call skips done parts)
    t0 = time.perf_counter()
    corpus = out / "corpus"
    heldout = out / "heldout"
    if not (corpus / "manifest.json").exists():
        say(f"corpus: {cfg.corpus_size} scenes at {cfg.image_size} px")
        build(load_config(CorpusConfig, MANIFESTS / "corpus" / "scenes.yaml",
                          [f"source.n={cfg.corpus_size}", f"image_size={cfg.image_size}", f"seed={cfg.seed}"]),
              corpus, workers=None)
    if not (heldout / "manifest.json").exists():  # another corpus seed: scenes the models never trained on
        build(load_config(CorpusConfig, MANIFESTS / "corpus" / "scenes.yaml",
                          [f"source.n={cfg.recon_limit}", f"image_size={cfg.image_size}", f"seed={cfg.seed + 1000}",
                           "name=heldout"]), heldout, workers=1)
    minutes["corpus"] = (time.perf_counter() - t0) / 60

    stages = [("pre", PretrainConfig, "pretrain", pretrain, cfg.pretrain, None),
              ("s1", Stage1Config, "stage1", stage1, cfg.stage1, "pre"),
              ("s2", Stage2Config, "stage2", stage2, cfg.stage2, "s1")]
    for name, Config, kind, fn, overrides, init in stages:
        run = out / name
        if (run / "summary.json").exists():
            continue
        say(f"{kind} -> {run}")
        extra = [f"corpus={corpus}", f"image_size={cfg.image_size}", f"seed={cfg.seed}"]
        if init:
            extra.append(f"init={out / init}")
        if kind == "stage1":
            extra.append(f"decoder_guidance={cfg.guidance}")
        if kind == "stage2":
            extra.append(f"guidance={cfg.guidance}")
        c = load_config(Config, MANIFESTS / "train" / f"{kind}-scene.yaml", extra + list(overrides), kind=kind)
        t0 = time.perf_counter()
        fn(c, run, resume=(run / "config.yaml").exists(), progress=progress)
        minutes[kind] = (time.perf_counter() - t0) / 60

    results: list[Path] = []
    t0 = time.perf_counter()
    before = evaluate_run(cfg, out / "pre", "pretrain", out / "eval" / "pretrain", heldout, say)
    minutes["eval pretrain"] = (time.perf_counter() - t0) / 60
    t0 = time.perf_counter()
    after = evaluate_run(cfg, out / "s2", "unified-grpo", out / "eval" / "unified-grpo", heldout, say)
    minutes["eval unified-grpo"] = (time.perf_counter() - t0) / 60
    results += [p for pair in zip(before, after) for p in pair]
    results += [out / "s1" / "results", out / "s2" / "results"]
    report = build_report(results, out / "report.html", title="uae demo: Unified-GRPO on the scene world")
    headline = {}
    for b, a in zip(before, after):
        rb, ra = read_results(b), read_results(a)
        headline[b.name] = {"metric": rb.primary_metric, "pretrain": rb.metrics[rb.primary_metric],
                            "unified-grpo": ra.metrics[ra.primary_metric]}
    rel = {label: json.loads((out / "eval" / label / "caption_reliance.json").read_text())["relative_gain"]
           for label in ("pretrain", "unified-grpo")}
    headline["caption-reliance"] = {"metric": "relative_gain", **rel}
    for stage in ("s1", "s2"):
        r = read_results(out / stage / "results")
        headline[r.benchmark] = {"metric": "heldout_reward", "start": r.metrics["heldout_reward/start"],
                                 "end": r.metrics["heldout_reward/end"]}
    headline["wall_minutes"] = {k: round(v, 2) for k, v in minutes.items()}
    (out / "headline.json").write_text(json.dumps(headline, indent=2) + "\n")
    headline["report"] = str(report)
    return headline
