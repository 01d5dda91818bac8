"""Caption sampling: the encoder as stage 1's policy and the corpus recaptioner.

Sampling is plain softmax(logits / temperature) with the model's top-k/top-p/repetition defaults off, so
`caption_scoring` scores exactly the sampling policy. `CaptionSampling` is the part of `Encoder` that
does it (it needs the encoder's `model`, `tokenizer`, `device`, `stop_token_ids`, `suppressed_token_ids`
and `_prompt_inputs`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from uae_train.models.model_runtime import seeded

ImageLike = Image.Image | np.ndarray


@dataclass
class CaptionSamples:
    """Captions grouped by image (image 0's n first); token_ids end with the stop token unless truncated."""

    texts: list[str]
    token_ids: list[list[int]]
    truncated: list[bool]  # True: hit max_new_tokens without a stop token


def as_pil(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a PIL image or an (H, W, 3|4) uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4):
        return Image.fromarray(image.astype(np.uint8)[..., :3], "RGB")
    raise ValueError(f"expected PIL images or (H, W, 3) uint8 arrays, got {type(image).__name__}"
                     f"{getattr(image, 'shape', '')}")


class CaptionSampling:
    """Captioning methods of `Encoder` (a mixin: see the module docstring for what it needs)."""

    @torch.no_grad()
    def sample_captions(self, images: Sequence[ImageLike], n: int = 1, sample: bool = True,
                        max_new_tokens: int = 160, temperature: float = 1.0, seed: int | None = None,
                        batch_size: int | None = None, prompt: str | None = None) -> CaptionSamples:
        """len(images)·n captions grouped by image, with their token ids and truncation flags.

        Sampling is plain softmax(logits / temperature) (the model's top-k/top-p/repetition defaults are
        switched off), so `completion_logprobs(..., temperature=)` scores exactly the sampling policy.
        `sample=False` is greedy. Reproducible for the same seed, inputs and batch_size; the global RNG
        state is left as it was. Runs in eval mode and restores the previous mode.
        """
        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        if sample and temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
        from transformers import GenerationConfig

        repeated = [im for im in images for _ in range(n)]
        stops = self.stop_token_ids
        gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sample, num_beams=1,
                               temperature=temperature if sample else None, top_k=0 if sample else None,
                               top_p=1.0 if sample else None, repetition_penalty=1.0, eos_token_id=stops,
                               suppress_tokens=self.suppressed_token_ids or None,
                               pad_token_id=self.tokenizer.pad_token_id, bos_token_id=None)
        was_training = self.model.training
        self.model.eval()
        texts: list[str] = []
        token_ids: list[list[int]] = []
        truncated: list[bool] = []
        step = batch_size or max(1, len(repeated))
        try:
            with seeded(seed, self.device):
                for start in range(0, len(repeated), step):
                    inputs = self._prompt_inputs(repeated[start:start + step], prompt)
                    out = self.model.generate(**inputs, generation_config=gen)
                    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
                        end = next((i for i, t in enumerate(row) if t in stops), None)
                        ids = row if end is None else row[:end + 1]
                        token_ids.append(ids)
                        truncated.append(end is None)
                        texts.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        finally:
            self.model.train(was_training)
        return CaptionSamples(texts, token_ids, truncated)

    def caption_with_info(self, images: Sequence[ImageLike], n: int = 1, sample: bool = True,
                          max_new_tokens: int = 160, temperature: float = 1.0, seed: int | None = None,
                          batch_size: int | None = None, prompt: str | None = None) -> tuple[list[str], list[bool]]:
        """(captions, truncated flags), as `sample_captions`; truncated = hit max_new_tokens before a stop token."""
        out = self.sample_captions(images, n=n, sample=sample, max_new_tokens=max_new_tokens,
                                   temperature=temperature, seed=seed, batch_size=batch_size, prompt=prompt)
        return out.texts, out.truncated

    def caption(self, images: Sequence[ImageLike], n: int = 1, sample: bool = True, max_new_tokens: int = 160,
                temperature: float = 1.0, seed: int | None = None, batch_size: int | None = None,
                prompt: str | None = None) -> list[str]:
        """len(images)·n captions, image 0's n first; see `sample_captions`."""
        return self.sample_captions(images, n=n, sample=sample, max_new_tokens=max_new_tokens,
                                    temperature=temperature, seed=seed, batch_size=batch_size,
                                    prompt=prompt).texts
