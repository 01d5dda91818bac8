"""One place that builds the encoder and decoder from a name or a folder (open_clip's `create_model` idea).

Harnesses, the demo and the stages load models here, so device placement, eval mode and the one-line
user error are decided once. A ref is a local folder, a hub name (owner/model), or "tiny" (the seeded
CPU-sized models of `Encoder.tiny` / `Decoder.tiny`, built from `options`).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from uae_data.core.device import resolve_device
from uae_data.core.errors import InputError
from uae_train.models.encoder import Encoder

if TYPE_CHECKING:  # the decoders import diffusers (~4 s): an encoder-only command (MMT-Bench) never needs it
    from uae_train.models.decoder import Decoder
    from uae_train.models.pipeline_decoder import PipelineDecoder

TINY = "tiny"


@contextlib.contextmanager
def input_errors() -> Iterator[None]:
    """Inside the block, a ValueError (ModelLoadError, a bad config value, a missing device) becomes an
    InputError with the same one-line message: what the CLI prints for a bad --encoder/--decoder/--init."""
    try:
        yield
    except ValueError as e:
        raise InputError(str(e)) from None


def load_encoder(ref: str | Path, device: str | torch.device | None = None, lora: dict | None = None,
                 **options: Any) -> Encoder:
    """An `Encoder` in eval mode on `device` (None/"auto": CUDA when visible).

    options: `Encoder.from_pretrained`'s (dtype, prompt, seed), or `Encoder.tiny`'s for ref "tiny"
    (image_size, seed, text_width, ...). lora adds a fresh adapter (a saved one comes back by itself).
    Raises ModelLoadError for a ref that holds no model.
    """
    device = resolve_device(device)
    if str(ref) == TINY:
        return Encoder.tiny(lora=lora, device=device, **options).eval()
    return Encoder.from_pretrained(ref, device=device, lora=lora, **options).eval()


def load_decoder(ref: str | Path, text_hidden_size: int, device: str | torch.device | None = None,
                 **options: Any) -> Decoder:
    """A `Decoder` in eval mode on `device` (None/"auto": CUDA when visible), reading text states
    `text_hidden_size` wide (the encoder's `hidden_size`).

    options: `Decoder.from_pretrained`'s (torch_dtype, seed, DecoderConfig overrides such as lora_rank), or
    `Decoder.tiny`'s for ref "tiny". Raises ModelLoadError for a ref that holds no decoder.
    """
    from uae_train.models.decoder import Decoder

    device = resolve_device(device)
    if str(ref) == TINY:
        return Decoder.tiny(text_hidden_size, **options).to(device).eval()
    return Decoder.from_pretrained(ref, text_hidden_size=text_hidden_size, **options).to(device).eval()


def load_pipeline_decoder(ref: str | Path, device: str | torch.device | None = None,
                          dtype: torch.dtype | None = None, **options: Any) -> PipelineDecoder:
    """A stock diffusers text-to-image pipeline (a baseline decoder) on `device`; options go to the pipeline."""
    from uae_train.models.pipeline_decoder import PipelineDecoder

    return PipelineDecoder.from_pretrained(ref, torch_dtype=dtype, device=resolve_device(device), **options)


def load_pair(run_folder: str | Path, device: str | torch.device | None = None, encoder_lora: dict | None = None,
              decoder_options: dict | None = None) -> tuple[Encoder, Decoder]:
    """(encoder, decoder) from a run folder's encoder/ and decoder/, on `device`, in eval mode.

    A loading error is an InputError naming the folder (one line), as a bad --init should be.
    """
    run = Path(run_folder)
    with input_errors():
        encoder = load_encoder(run / "encoder", device, lora=encoder_lora or None)
        decoder = load_decoder(run / "decoder", encoder.hidden_size, device, **(decoder_options or {}))
    return encoder, decoder
