"""Does the decoder read its captions? The flow loss with the true captions vs with shuffled ones.

Stage 1 rewards the encoder through the decoder's paintings; when the decoder ignores its text, every
caption paints the same picture and the reward carries no signal about the caption. The loss falls
during pretraining either way (the unconditional image prior is learned first), so the loss curve
cannot tell. This check can: at fixed timesteps and noise, the same images are scored once with their
own captions and once with the captions rolled by one row. `gain` = shuffled − true; ≈ 0 means the
decoder paints the same whatever it is told.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

DEFAULT_TIMESTEPS: tuple[float, ...] = (0.5, 0.9, 0.98)  # 0.98: where a shifted decoder reads its text


@torch.no_grad()
def caption_reliance(decoder, encoder, images: Sequence[Image.Image], captions: Sequence[str],
                     timesteps: Sequence[float] = DEFAULT_TIMESTEPS, seed: int = 0,
                     max_text_tokens: int = 256) -> dict[str, float]:
    """{"true_loss", "shuffled_loss", "gain", "relative_gain"} averaged over `timesteps`, plus per-t gains
    (`gain_t<t>`, `relative_gain_t<t>`).

    Needs at least two images with different captions (a roll of one row changes nothing otherwise).
    The decoder is scored in eval mode (no caption dropout) and left in the mode it was in.
    """
    if len(images) != len(captions) or len(images) < 2:
        raise ValueError(f"need >= 2 images with one caption each, got {len(images)} images and {len(captions)} captions")
    was_training = decoder.training
    decoder.eval()
    reader = decoder.reader(encoder) if hasattr(decoder, "reader") else encoder
    hidden, mask = reader.encode_text(list(captions), max_length=max_text_tokens)
    hidden = hidden.float()
    roll = [*range(1, len(images)), 0]  # (B,) row i reads caption i+1
    g = torch.Generator().manual_seed(seed)

    def vae_draw() -> torch.Generator:  # the same latent sample for every scoring (VAE decoders)
        return torch.Generator().manual_seed(seed + 1)

    shape = decoder.encode_images(list(images), vae_draw()).shape
    out: dict[str, float] = {}
    true_total = shuffled_total = 0.0
    for t in timesteps:
        noise = torch.randn(shape, generator=g)
        true = float(decoder.loss(images, hidden, mask, generator=vae_draw(), t=t, noise=noise))
        shuffled = float(decoder.loss(images, hidden[roll], mask[roll], generator=vae_draw(), t=t, noise=noise))
        out[f"gain_t{t:g}"] = shuffled - true
        out[f"relative_gain_t{t:g}"] = (shuffled - true) / max(shuffled, 1e-12)
        true_total += true / len(timesteps)
        shuffled_total += shuffled / len(timesteps)
    decoder.train(was_training)
    out.update(true_loss=true_total, shuffled_loss=shuffled_total, gain=shuffled_total - true_total,
               relative_gain=(shuffled_total - true_total) / max(shuffled_total, 1e-12))
    return out


def corpus_caption_reliance(decoder, encoder, corpus: Path, n: int, image_size: int, seed: int = 0,
                            max_text_tokens: int = 256) -> dict[str, float]:
    """`caption_reliance` on the first n samples of a corpus folder (images resized to image_size)."""
    from uae_data.shards import corpus_dataset

    samples = [s for _, s in zip(range(n), corpus_dataset(Path(corpus), shuffle=0))]
    images = [s["image"].convert("RGB").resize((image_size, image_size)) for s in samples]
    return caption_reliance(decoder, encoder, images, [s["caption"] for s in samples], seed=seed,
                            max_text_tokens=max_text_tokens)
