"""The demo's evaluations of one run folder (encoder/ + decoder/), each written once and skipped when done.

Benchmarks: GenEval-scene (the decoder paints the 553 prompts), Scene-DPG (the decoder paints the first
`dpg_limit` dense Scene-DPG prompts as DPG-Bench grids, judged exactly), MMT-scene with the caption-reader (the
encoder's captions answer the questions), recon (image → caption → image, scene F1 / PSNR / SSIM) and
scene-captions (the encoder's captions parsed cell by cell: does it see?), plus caption reliance (does the
decoder read?). This module sits above the harnesses: it wires uae_train models into uae_eval's
plain-callable harnesses (uae_eval never imports uae_train).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from uae_data.core.config import load_config

from uae_data.core.paths import manifests_dir

MANIFESTS = manifests_dir()
BENCHMARKS = ("geneval", "dpg-bench", "mmt-bench", "recon", "scene-captions")


def done(folder: Path) -> bool:
    return (folder / "results.json").exists() or (folder / "summary.json").exists()


def load_models(run: Path):
    from uae_train.models.factory import load_pair

    return load_pair(run)  # (encoder, decoder) on CUDA when visible, in eval mode


def heldout_scenes(corpus: Path, n: int, image_size: int):
    """(images, scenes) of the first n samples of the held-out corpus."""
    from uae_data.shards import corpus_dataset
    from uae_train.training.data import scene_of

    samples = [s for _, s in zip(range(n), corpus_dataset(Path(corpus), shuffle=0))]
    return ([s["image"].convert("RGB").resize((image_size, image_size)) for s in samples],
            [scene_of(s) for s in samples])


def geneval(cfg, out: Path, generate=None, model: dict | None = None, generator: str | None = None) -> Path:
    """GenEval-scene of a painter (`generate`) or a built-in generator (oracle | random | noise)."""
    from uae_eval.geneval import harness

    if not done(out):
        over = [f"image_size={cfg.image_size}", f"images_per_prompt={cfg.geneval_images_per_prompt}",
                f"seed={cfg.seed}"]
        over += [f"limit={cfg.geneval_limit}"] if cfg.geneval_limit else []
        over += [f"generator={generator}"] if generator else []
        gcfg = load_config(harness.GenEvalConfig, MANIFESTS / "eval" / "geneval-scene.yaml", over, kind="geneval")
        harness.run(gcfg, out, generate=generate, model=model)
    return out


def dpg(cfg, out: Path, generate=None, model: dict | None = None, generator: str | None = None) -> Path:
    """Scene-DPG of a painter (`generate`) or a scene generator (oracle | random | noise): the first
    cfg.dpg_limit items, cfg.dpg_tiles tiles each, at the demo's image size."""
    from uae_eval.dpg_bench import harness

    if not done(out):
        over = [f"image_size={cfg.image_size}", f"tiles={cfg.dpg_tiles}", f"seed={cfg.seed}"]
        over += [f"limit={cfg.dpg_limit}"] if cfg.dpg_limit else []
        over += [f"generator={generator}"] if generator else []
        dcfg = load_config(harness.DPGConfig, MANIFESTS / "eval" / "dpg-scene.yaml", over, kind="dpg-bench")
        harness.run(dcfg, out, generate=generate, model=model)
    return out


def evaluate_run(cfg, run: Path, label: str, out: Path, corpus: Path, say: Callable[[str], None],
                 parts: Sequence[str] = BENCHMARKS, reliance: bool = True) -> list[Path]:
    """The chosen benchmarks of one run folder into out/<benchmark>/ (+ out/caption_reliance.json)."""
    from uae_train.evaluation.autoencoder import image_to_text, text_to_image

    todo = [p for p in parts if not done(out / p)]
    need_reliance = reliance and not (out / "caption_reliance.json").exists()
    if not todo and not need_reliance:
        return [out / p for p in parts]
    enc, dec = load_models(run)
    info = {"name": label, "path": str(run), "config": {"steps": cfg.sampling_steps, "guidance": cfg.guidance}}
    paint = text_to_image(enc, dec, steps=cfg.sampling_steps, guidance=cfg.guidance)
    caption = image_to_text(enc, max_new_tokens=cfg.caption_tokens)
    for part in todo:
        say(f"eval {label}: {part}")
        if part == "geneval":
            geneval(cfg, out / part, generate=paint, model=info)
        elif part == "dpg-bench":
            dpg(cfg, out / part, generate=paint, model=info)
        elif part == "mmt-bench":
            mmt(cfg, enc, out / part, label)
        elif part == "recon":
            from uae_eval import recon

            rcfg = load_config(recon.ReconConfig, MANIFESTS / "eval" / "recon-scene.yaml",
                               [f"data={corpus}", f"limit={cfg.recon_limit}", f"image_size={cfg.image_size}",
                                "metrics=[scene, scene-soft, psnr, ssim]", "save_images=true"], kind="recon")
            recon.run(rcfg, out / part, caption=caption, generate=paint, model=info)
        elif part == "scene-captions":
            from uae_eval import scene_captions

            images, truths = heldout_scenes(corpus, cfg.recon_limit, cfg.image_size)
            scene_captions.run(images, truths, caption, out / part, model=info,
                               config={"max_new_tokens": cfg.caption_tokens, "greedy": True, "data": str(corpus)})
        else:
            raise ValueError(f"unknown demo benchmark {part!r}")
    if need_reliance:
        say(f"eval {label}: caption reliance (decoder loss, true vs shuffled captions)")
        from uae_train.evaluation.caption_reliance import corpus_caption_reliance

        scores = corpus_caption_reliance(dec, enc, corpus, cfg.recon_limit, cfg.image_size, cfg.seed)
        (out / "caption_reliance.json").write_text(json.dumps(scores, indent=2) + "\n")
    return [out / p for p in parts]


def mmt(cfg, enc, out: Path, label: str) -> None:
    """MMT-scene with the caption-reader answering from `enc`'s captions; the model named `label`."""
    from uae_eval.mmt_bench import harness
    from uae_data.core.paths import shipped
    from uae_train.evaluation.inputs import mmt_answerer
    from uae_train.evaluation.autoencoder import mmt_captioner

    mcfg = load_config(harness.MMTConfig, MANIFESTS / "eval" / "mmt-bench-scene.yaml",
                       ["model=caption-reader"] + ([f"limit={cfg.mmt_limit}"] if cfg.mmt_limit else []),
                       kind="mmt-bench")
    mcfg.tsv = str(shipped(mcfg.tsv))
    captioner = mmt_captioner(enc, mcfg.tsv, cfg.mmt_limit, cfg.caption_tokens)
    harness.run(mcfg, out, answer=mmt_answerer("caption-reader", caption=captioner))
    p = out / "results.json"  # the MMT harness records the answerer's name only: name the model too
    data = json.loads(p.read_text())
    data["model"]["name"] = label
    p.write_text(json.dumps(data, indent=2) + "\n")


def alignment(cfg, run: Path, label: str, out: Path, corpus: Path, say: Callable[[str], None]) -> list[Path]:
    """UniFork's per-layer alignment of the run's encoder (understanding) and decoder (generation)."""
    from uae_eval.alignment import AlignmentConfig, run as align
    from uae_train.evaluation.inputs import alignment_features, alignment_pairs

    acfg = load_config(AlignmentConfig, MANIFESTS / "eval" / "alignment-scene.yaml",
                       [f"data={corpus}", f"image_size={cfg.image_size}", f"seed={cfg.seed}"], kind="alignment")
    folders = []
    pairs = None
    for part in ("encoder", "decoder"):
        a_out = out / f"alignment-{part}"
        if not done(a_out):
            say(f"eval {label}: alignment ({part})")
            pairs = pairs or alignment_pairs(acfg)
            if len(pairs) <= acfg.k + 3:  # a small held-out set (toy runs): fewer neighbours, still above chance
                acfg.k = max(1, len(pairs) - 4)
            features, info = alignment_features(acfg, run / part, pairs)
            info["name"] = f"{label}:{part}"
            align(acfg, a_out, features, model=info)
        folders.append(a_out)
    return folders
