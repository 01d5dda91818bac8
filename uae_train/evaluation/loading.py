"""Load saved encoder/decoder folders into harness callables (what `uae eval --encoder/--decoder` uses).

Models come from `uae_train.models.factory` (imported when a model is loaded: the CLI imports this module
before it knows whether it needs torch); a loading error is one InputError line (`input_errors`).
"""
from __future__ import annotations

from pathlib import Path

from uae_data.core.device import default_device
from uae_data.core.errors import InputError


def load_autoencoder(encoder_dir: Path | None, decoder_dir: Path, steps: int = 20, guidance: float = 1.0):
    """(generate(prompts, seeds) -> images, model info for results.json).

    The encoder defaults to the `encoder/` folder beside the decoder (a pretrain run's layout).
    """
    from uae_train.evaluation.autoencoder import text_to_image
    from uae_train.models.factory import input_errors, load_decoder, load_encoder

    decoder_dir = Path(decoder_dir)
    encoder_dir = Path(encoder_dir) if encoder_dir else decoder_dir.parent / "encoder"
    device = default_device()
    with input_errors():  # ModelLoadError and backend config errors
        enc = load_encoder(encoder_dir, device)
        dec = load_decoder(decoder_dir, enc.hidden_size, device)
    info = {"name": f"uae:{decoder_dir.name}", "path": str(decoder_dir),
            "config": {"encoder": str(encoder_dir), "steps": steps, "guidance": guidance}}
    return text_to_image(enc, dec, steps=steps, guidance=guidance), info


def is_pipeline_ref(ref: str | Path) -> bool:
    """A diffusers pipeline (model_index.json, not one of our saved decoders), or a hub name: real-model
    decoders paint from the caption text with their own text encoders (Unified-Bench's baselines)."""
    from uae_data.model_refs import looks_like_path
    from uae_train.models.decoder_files import CONFIG_FILE

    path = Path(ref).expanduser()
    if path.is_dir():
        return (path / "model_index.json").is_file() and not (path / CONFIG_FILE).is_file()
    return not path.exists() and not looks_like_path(str(ref))


def _device_dtype(dtype: str):
    import torch

    device = default_device()
    if dtype == "auto":
        return device, (torch.bfloat16 if device == "cuda" else torch.float32)
    return device, getattr(torch, dtype)


def pipeline_generator(pipe, steps: int, guidance: float | None, size: int | None, batch_size: int,
                       options: dict | None = None):
    """generate(prompts, seeds) -> images through a PipelineDecoder, `batch_size` prompts per call, with a
    progress bar; each image's noise comes from its own seed, so batching does not change an image."""
    from uae_data.core.progress import progress_bar

    def generate(prompts: list[str], seeds: list[int]):
        images = []
        with progress_bar("reconstructing", total=len(prompts)) as update:
            for i in range(0, len(prompts), batch_size):
                images += pipe.generate_text(prompts[i:i + batch_size], seeds[i:i + batch_size], steps=steps,
                                             guidance=guidance, height=size, width=size, **(options or {}))
                update(len(images))
        return images

    generate.name = "diffusers-pipeline"  # type: ignore[attr-defined]
    return generate


def captioner(enc, max_new_tokens: int, batch_size: int):
    """caption(images) -> texts, greedy, `batch_size` images per generate call, with a progress bar."""
    from uae_data.core.progress import progress_bar

    def caption(images):
        texts: list[str] = []
        with progress_bar("captioning", total=len(images)) as update:
            for i in range(0, len(images), batch_size):
                texts += enc.caption(images[i:i + batch_size], n=1, sample=False, max_new_tokens=max_new_tokens)
                update(len(texts))
        return texts

    return caption


def load_pipeline_generator(ref: str | Path, cfg):
    """(generate(metas, seeds) -> images, model info) for `uae eval geneval --pipeline`: any diffusers
    text-to-image pipeline painting each GenEval prompt; cfg: a GenEvalConfig (steps, guidance,
    pipeline_image_size, pipeline_options, dtype, batch_size). Image j of prompt i is seeded by
    seed·100003 + i·images_per_prompt + j, on its own generator."""
    from uae_train.models.factory import input_errors, load_pipeline_decoder

    device, dtype = _device_dtype(cfg.dtype)
    with input_errors():
        pipe = load_pipeline_decoder(ref, device, dtype)
    paint = pipeline_generator(pipe, cfg.steps, cfg.guidance, cfg.pipeline_image_size, cfg.batch_size,
                               cfg.pipeline_options)

    def generate(metas: list[dict], seeds: list[int]):
        return paint([m["prompt"] if isinstance(m, dict) else m for m in metas], seeds)

    generate.name = "diffusers-pipeline"  # type: ignore[attr-defined]
    info = {"name": Path(str(ref)).name, "path": str(ref),
            "config": {"pipeline_class": type(pipe.pipeline).__name__, "steps": cfg.steps, "guidance": cfg.guidance,
                       "image_size": cfg.pipeline_image_size, "dtype": str(dtype),
                       "options": dict(cfg.pipeline_options)}}
    return generate, info


def load_recon_models(encoder_ref: str | Path | None, decoder_ref: str | Path | None, cfg):
    """(caption, generate, model info) for `uae eval recon`; either side may stay the manifest's (None).

    encoder: a saved uae encoder or any AutoModelForImageTextToText (folder or hub name), prompted with
    cfg.caption_prompt for up to cfg.max_new_tokens tokens. decoder: a diffusers text-to-image pipeline
    (SD3, FLUX, SANA, ...: it reads the caption text with its own text encoders) or a saved uae decoder (it
    reads the caption through the encoder; the encoder defaults to the `encoder/` folder beside it).
    cfg: a ReconConfig (steps, guidance, image_size, batch_size, pipeline_options, dtype).
    """
    from uae_train.evaluation.autoencoder import text_to_image
    from uae_train.models.factory import input_errors, load_decoder, load_encoder, load_pipeline_decoder

    device, dtype = _device_dtype(cfg.dtype)
    pipeline = decoder_ref is not None and is_pipeline_ref(decoder_ref)
    if encoder_ref is None and decoder_ref is not None and not pipeline:
        encoder_ref = Path(decoder_ref).parent / "encoder"
    caption = generate = enc = None
    info: dict = {"encoder": str(encoder_ref) if encoder_ref else None, "decoder": str(decoder_ref) if decoder_ref else None,
                  "decoder_kind": "diffusers pipeline" if pipeline else ("uae decoder" if decoder_ref else None),
                  "steps": cfg.steps, "guidance": cfg.guidance, "image_size": cfg.image_size,
                  "caption_prompt": cfg.caption_prompt, "max_new_tokens": cfg.max_new_tokens, "dtype": str(dtype)}
    with input_errors():  # ModelLoadError and backend config errors
        if encoder_ref is not None:
            enc = load_encoder(encoder_ref, device, dtype=dtype, prompt=cfg.caption_prompt)
            info["caption_prompt"] = enc.prompt
            caption = captioner(enc, cfg.max_new_tokens, cfg.batch_size)
        if pipeline:
            pipe = load_pipeline_decoder(decoder_ref, device, dtype)
            info["pipeline_class"] = type(pipe.pipeline).__name__
            generate = pipeline_generator(pipe, cfg.steps, cfg.guidance, cfg.image_size, cfg.batch_size,
                                          cfg.pipeline_options)
        elif decoder_ref is not None:
            dec = load_decoder(decoder_ref, enc.hidden_size, device)
            generate = text_to_image(enc, dec, steps=cfg.steps, guidance=1.0 if cfg.guidance is None else cfg.guidance,
                                     batch_size=cfg.batch_size)
    name = "+".join(Path(str(r)).name for r in (encoder_ref, decoder_ref) if r is not None)
    return caption, generate, {"name": f"uae:{name}" if not pipeline else name, "path": str(encoder_ref or decoder_ref),
                               "config": info}


def _encoder(path: Path | str | None):
    from uae_train.models.factory import input_errors, load_encoder

    if path is None:
        raise InputError("give --encoder DIR (a saved encoder, e.g. runs/pre/encoder)")
    with input_errors():
        return load_encoder(path, default_device())


def load_captioner(encoder_dir: Path | None):
    """caption(images) -> texts with a saved encoder (greedy), for caption-reader answerers."""
    from uae_train.evaluation.autoencoder import image_to_text

    return image_to_text(_encoder(encoder_dir))


def load_vlm_answerer(name_or_path: str, max_new_tokens: int = 32):
    """answer(images, prompt) -> text with any AutoModelForImageTextToText (greedy), for MMT-Bench."""
    enc = _encoder(name_or_path)

    def answer(images, prompt: str) -> str:
        return enc.caption(images[:1], n=1, sample=False, max_new_tokens=max_new_tokens, prompt=prompt)[0]

    return answer
