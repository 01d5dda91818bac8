"""What uae_eval's harnesses take from models, built from the names and folders a user gives.

The harnesses take plain callables and arrays (uae_eval never imports a model); choosing and loading the
model behind them is logic the CLI (`uae eval ...`) and the demo (uae_train.demo.evals) share, so it is
written once here: GenEval's painter, recon's captioner and painter, MMT-Bench's answerer, the alignment
benchmark's per-layer features.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from uae_data.core.errors import ConfigError


def refuse_unused(given: dict[str, object], rules: list[tuple[str, tuple[str, ...], str]]) -> None:
    """Refuse, in one line, an option that would be ignored. Each rule is (option, others, why): `option` given
    with any of `others` is refused; others written ("!a", "!b") instead mean `option` needs one of a, b."""
    def has(name: str) -> bool:
        return given.get(name) not in (None, False)

    for option, others, why in rules:
        if not has(option):
            continue
        needs = [o[1:] for o in others if o.startswith("!")]
        if needs and not any(has(o) for o in needs):
            raise ConfigError(f"{option} without {' or '.join(needs)}: {why}; nothing was run")
        for other in others:
            if not other.startswith("!") and has(other):
                raise ConfigError(f"{option} with {other}: {why}; nothing was run")


GENEVAL_RULES = [
    ("--encoder", ("!--decoder",), "the encoder only paints through --decoder DIR (without it the manifest's "
                                   "generator would be scored)"),
    ("--images", ("--generator", "--encoder", "--decoder", "--pipeline", "--steps", "--guidance"),
     "--images scores images made elsewhere, so no generator runs and its options would be ignored"),
    ("--detections", ("--generator", "--encoder", "--decoder", "--pipeline", "--steps", "--guidance"),
     "--detections scores detections made elsewhere, so no generator runs and its options would be ignored"),
    ("--generator", ("--decoder", "--pipeline"), "give one generator: a scene --generator, --decoder or --pipeline"),
    ("--decoder", ("--pipeline",), "give --decoder or --pipeline, not both"),
    ("--steps", ("!--decoder",), "sampling steps apply to --decoder (a pipeline's come from the manifest)"),
    ("--guidance", ("!--decoder",), "guidance applies to --decoder (a pipeline's comes from the manifest)"),
    ("--allow-partial", ("!--images", "!--detections"), "it applies to an --images or --detections input")]
MMT_RULES = [
    ("--predictions", ("--model", "--encoder"), "the predictions file holds the answers; no model runs"),
    ("--allow-missing", ("!--predictions",), "it applies to a --predictions file")]
RECON_RULES = [
    ("--reconstructions", ("--encoder", "--decoder", "--steps"), "reconstructions made elsewhere are scored as "
                                                                "given, so no model runs and its options would be ignored"),
    ("--allow-partial", ("!--reconstructions",), "it applies to a --reconstructions folder")]


def geneval_generator(cfg, encoder: Path | None = None, decoder: Path | None = None, pipeline: str | None = None,
                      steps: int | None = None, guidance: float | None = None,
                      given: dict | None = None) -> tuple[Callable | None, dict | None]:
    """(generate, model info) for a GenEvalConfig `cfg`: our encoder+decoder folders, any diffusers pipeline,
    or (None, None) when neither is given (the harness then uses cfg.generator or the given images).
    `given`: every CLI option as typed ({"--images": ..., ...}); options that would be ignored are refused."""
    from uae_train.evaluation import loading

    refuse_unused({"--encoder": encoder, "--decoder": decoder, "--pipeline": pipeline, "--steps": steps,
                   "--guidance": guidance, **(given or {})}, GENEVAL_RULES)
    if decoder is not None:
        return loading.load_autoencoder(encoder, decoder, steps=20 if steps is None else steps,
                                        guidance=1.0 if guidance is None else guidance)
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


def mmt_answerer(model: str, seed: int = 0, encoder: Path | None = None, caption: Callable | None = None,
                 server=None) -> Callable:
    """MMT-Bench's answer(images, prompt) for a manifest's `model`: the caption-reader over `caption`
    (default: the captions of the saved encoder folder `encoder`), a scene answerer (oracle, random: `seed`),
    the VLM named `model` on an OpenAI-compatible server (`server.endpoint` set), or else any image-text-to-text
    VLM (folder or hub name)."""
    from uae_eval.mmt_bench.answerers import ANSWERERS, build_answerer
    from uae_train.evaluation import loading

    if server is not None and server.endpoint:
        from uae_eval.vlm_judge import ServedVLM

        if model in ANSWERERS or encoder is not None:
            raise ConfigError(f"server.endpoint with --model {model}: a served model is named by --model (the name "
                              "the server serves), not a scene answerer, and takes no --encoder; nothing was run")
        return ServedVLM(model, server)

    if encoder is not None and model != "caption-reader":
        raise ConfigError(f"--encoder with --model {model}: the encoder writes captions for --model caption-reader "
                          "only, and would be ignored; nothing was run")
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


DPG_PAINTERS = ("--generator", "--encoder", "--decoder", "--pipeline", "--steps", "--guidance")
DPG_RULES = [
    ("--encoder", ("!--decoder",), "the encoder only paints through --decoder DIR (without it the manifest's "
                                   "generator would be scored)"),
    ("--images", DPG_PAINTERS + ("--answers",), "--images scores images made elsewhere, so no painter runs and "
                                                "its options would be ignored"),
    ("--answers", DPG_PAINTERS + ("--judge", "--judge-model", "server.endpoint"), "--answers scores answers made elsewhere, so no "
                                                              "painter or judge runs and their options would be ignored"),
    ("--generator", ("--decoder", "--pipeline"), "give one painter: a scene --generator, --decoder or --pipeline"),
    ("--decoder", ("--pipeline",), "give --decoder or --pipeline, not both"),
    ("--steps", ("!--decoder",), "sampling steps apply to --decoder (a pipeline's come from the manifest)"),
    ("--guidance", ("!--decoder",), "guidance applies to --decoder (a pipeline's comes from the manifest)"),
    ("--allow-partial", ("!--images", "!--answers", "!server.endpoint"),
     "it applies to an --images folder, an --answers file or a served judge's failed requests")]


def dpg_inputs(cfg, encoder: Path | None = None, decoder: Path | None = None, pipeline: str | None = None,
               steps: int | None = None, guidance: float | None = None,
               given: dict | None = None) -> tuple[Callable | None, dict | None, object | None]:
    """(generate(prompts, seeds), model info, judge) for a DPGConfig `cfg`: our encoder+decoder folders or any
    diffusers pipeline paint (None: the harness uses cfg.generator or the given images/answers). The judge is
    built first (None with --answers), so a missing modelscope or judge model fails before a painter loads;
    `vlm` wraps a model uae_train loads. `given`: every CLI option as typed; options that would be ignored are
    refused before anything loads."""
    from uae_eval.dpg_bench.judges import build_judge
    from uae_train.evaluation import loading

    given = {"--encoder": encoder, "--decoder": decoder, "--pipeline": pipeline, "--steps": steps,
             "--guidance": guidance, "server.endpoint": cfg.server.endpoint, **(given or {})}
    refuse_unused(given, DPG_RULES)
    judge = None
    if given.get("--answers") is None and cfg.judge == "vlm":
        model = cfg.judge_options.get("model")
        if not model:
            raise ConfigError("judge vlm needs a model: give --judge-model DIR (any AutoModelForImageTextToText "
                              "folder or hub name)")
        options = {k: v for k, v in cfg.judge_options.items() if k != "model"}
        if cfg.server.endpoint:  # a served VLM, named as the server names it
            from uae_eval.vlm_judge import ServedVLM

            ask = ServedVLM(str(model), cfg.server)
        else:
            ask = loading.load_vlm_answerer(model, max_new_tokens=options.get("max_new_tokens", 8))
        judge = build_judge("vlm", ask=ask, model=str(model), **options)
    elif given.get("--answers") is None:
        judge = build_judge(cfg.judge, **cfg.judge_options)
    if decoder is not None:
        generate, info = loading.load_autoencoder(encoder, decoder, steps=20 if steps is None else steps,
                                                  guidance=1.0 if guidance is None else guidance)
        return generate, info, judge
    if pipeline is not None:
        generate, info = loading.load_pipeline_generator(pipeline, cfg)
        return generate, info, judge
    return None, None, judge
