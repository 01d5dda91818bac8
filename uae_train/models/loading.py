"""Load saved encoder/decoder folders into harness callables (what `uae eval --encoder/--decoder` uses)."""
from __future__ import annotations

from pathlib import Path

from uae_data.errors import InputError


def load_autoencoder(encoder_dir: Path | None, decoder_dir: Path, steps: int = 20, guidance: float = 1.0):
    """(generate(prompts, seeds) -> images, model info for results.json).

    The encoder defaults to the `encoder/` folder beside the decoder (a pretrain run's layout).
    """
    import torch

    from uae_train.models.autoencoder import text_to_image
    from uae_train.models.decoder import Decoder, ModelLoadError
    from uae_train.models.encoder import Encoder

    decoder_dir = Path(decoder_dir)
    encoder_dir = Path(encoder_dir) if encoder_dir else decoder_dir.parent / "encoder"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        enc = Encoder.from_pretrained(encoder_dir).to(device).eval()
        dec = Decoder.from_pretrained(decoder_dir, text_hidden_size=enc.hidden_size).to(device).eval()
    except ValueError as e:  # ModelLoadError and backend config errors
        raise InputError(str(e)) from None
    info = {"name": f"uae:{decoder_dir.name}", "path": str(decoder_dir),
            "config": {"encoder": str(encoder_dir), "steps": steps, "guidance": guidance}}
    return text_to_image(enc, dec, steps=steps, guidance=guidance), info


def load_recon_models(encoder_dir: Path | None, decoder_dir: Path | None, steps: int = 20):
    """(caption, generate, model info) for `uae eval recon`; either side may stay the manifest's (None)."""
    import torch

    from uae_train.models.autoencoder import image_to_text, text_to_image
    from uae_train.models.decoder import Decoder
    from uae_train.models.encoder import Encoder

    if encoder_dir is None and decoder_dir is not None:
        encoder_dir = Path(decoder_dir).parent / "encoder"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        enc = Encoder.from_pretrained(encoder_dir).to(device).eval()
        dec = (Decoder.from_pretrained(decoder_dir, text_hidden_size=enc.hidden_size).to(device).eval()
               if decoder_dir is not None else None)
    except ValueError as e:  # ModelLoadError and backend config errors
        raise InputError(str(e)) from None
    info = {"name": f"uae:{Path(encoder_dir).name}+{Path(decoder_dir).name if decoder_dir else 'manifest-decoder'}",
            "path": str(encoder_dir), "config": {"encoder": str(encoder_dir), "decoder": str(decoder_dir), "steps": steps}}
    return image_to_text(enc), (text_to_image(enc, dec, steps=steps) if dec is not None else None), info


def _encoder(path: Path | str | None):
    import torch

    from uae_train.models.encoder import Encoder

    if path is None:
        raise InputError("give --encoder DIR (a saved encoder, e.g. runs/pre/encoder)")
    try:
        return Encoder.from_pretrained(path, device="cuda" if torch.cuda.is_available() else "cpu").eval()
    except ValueError as e:
        raise InputError(str(e)) from None


def load_captioner(encoder_dir: Path | None):
    """caption(images) -> texts with a saved encoder (greedy), for caption-reader answerers."""
    from uae_train.models.autoencoder import image_to_text

    return image_to_text(_encoder(encoder_dir))


def load_vlm_answerer(name_or_path: str, max_new_tokens: int = 32):
    """answer(images, prompt) -> text with any AutoModelForImageTextToText (greedy), for MMT-Bench."""
    enc = _encoder(name_or_path)

    def answer(images, prompt: str) -> str:
        return enc.caption(images[:1], n=1, sample=False, max_new_tokens=max_new_tokens, prompt=prompt)[0]

    return answer
