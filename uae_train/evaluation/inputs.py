"""What uae_eval's harnesses take from models, built from the names and folders a user gives.

The harnesses take plain callables and arrays (uae_eval never imports a model); choosing and loading the
model behind them is logic the CLI (`uae eval ...`) and the demo (uae_train.demo_evals) share, so it is
written once here: GenEval's painter, recon's captioner and painter, MMT-Bench's answerer, the alignment
benchmark's per-layer features.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from uae_data.core.errors import ConfigError


def geneval_generator(cfg, encoder: Path | None = None, decoder: Path | None = None, pipeline: str | None = None,
                      steps: int = 20, guidance: float = 1.0) -> tuple[Callable | None, dict | None]:
    """(generate, model info) for a GenEvalConfig `cfg`: our encoder+decoder folders, any diffusers pipeline,
    or (None, None) when neither is given (the harness then uses cfg.generator or the given images)."""
    from uae_train.evaluation import loading

    if decoder is not None and pipeline is not None:
        raise ConfigError("give --decoder or --pipeline, not both")
    if decoder is not None:
        return loading.load_autoencoder(encoder, decoder, steps=steps, guidance=guidance)
    if pipeline is not None:
        cfg.validate()
        return loading.load_pipeline_generator(pipeline, cfg)
    return None, None


def recon_models(cfg, encoder: str | Path | None = None, decoder: str | Path | None = None) -> tuple:
    """(caption, generate, model info) for a ReconConfig `cfg` from a VLM/uae encoder and a pipeline/uae decoder
    (uae_train.evaluation.loading.load_recon_models); (None, None, None) keeps the manifest's captioner and decoder."""
    if encoder is None and decoder is None:
        return None, None, None
    from uae_train.evaluation.loading import load_recon_models

    return load_recon_models(encoder, decoder, cfg)


def mmt_answerer(model: str, seed: int = 0, encoder: Path | None = None, caption: Callable | None = None) -> Callable:
    """MMT-Bench's answer(images, prompt) for a manifest's `model`: the caption-reader over `caption`
    (default: the captions of the saved encoder folder `encoder`), a scene answerer (oracle, random: `seed`),
    or else any image-text-to-text VLM (folder or hub name)."""
    from uae_eval.mmt_bench.answerers import ANSWERERS, build_answerer
    from uae_train.evaluation import loading

    if model == "caption-reader":
        return build_answerer("caption-reader", seed=seed, caption=caption or loading.load_captioner(encoder))
    if model in ANSWERERS:
        return build_answerer(model, seed=seed)
    return loading.load_vlm_answerer(model)


def alignment_pairs(cfg) -> list:
    """The paired (image, caption) samples an AlignmentConfig `cfg` names (data, limit, image_size, skip)."""
    from uae_data.pairs import load_pairs

    return load_pairs(Path(cfg.data), cfg.limit, cfg.image_size, skip=cfg.skip)


def alignment_features(cfg, model: Path, pairs: list, encoder: Path | None = None) -> tuple[dict, dict]:
    """(per-layer features by task, model info) of the model folder `model` on `pairs`, with cfg's timestep,
    seed and batch size; `encoder`: a decoder's encoder folder (default: its sibling encoder/)."""
    from uae_train.evaluation.layer_features import model_features

    return model_features(model, pairs, encoder, cfg.timestep, cfg.seed, cfg.batch_size)
