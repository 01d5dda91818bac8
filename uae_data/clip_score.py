"""CLIP image-text score with open_clip (any model by name, pretrained tag or local checkpoint).

CLIP's text tower reads a fixed context (77 tokens for OpenAI/open_clip models, start and end
included; 248 for Long-CLIP) and open_clip's tokenizer truncates longer text silently, so a
150-word caption would be scored on its first ~75 tokens only (facts/corpus.md §4). Long dense
captions are what this corpus is for, so by default (`long_captions: chunks`) a caption is split
at sentence ends into chunks that each fit the model's context (read from its tokenizer, so a
Long-CLIP model gets 248-token chunks), every chunk is scored against the image, and the score is
the mean chunk cosine. `truncate` scores the first context only and says so (clip_truncated).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from uae_data.core.device import resolve_device
from uae_data.core.errors import ModelLoadError
from uae_data.filters import ClipFilterConfig

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")


@dataclass
class ClipScore:
    score: float  # mean cosine similarity over chunks, in [-1, 1]
    chunks: int  # text chunks scored (1 when the caption fits the context)
    truncated: bool  # True only in `truncate` mode when the caption did not fit


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens the text tower would see, start and end tokens included."""
    if hasattr(tokenizer, "encode"):  # open_clip SimpleTokenizer (BPE)
        return len(tokenizer.encode(text)) + 2
    return len(tokenizer.tokenizer(text)["input_ids"])  # open_clip HFTokenizer wraps a transformers one


def split_caption(text: str, fits: Any) -> list[str]:
    """Greedy sentence packing: consecutive sentences joined while `fits(chunk)`; an over-long
    sentence is cut into the longest word runs that fit. Never returns an empty list."""
    chunks: list[str] = []
    current = ""
    for sentence in [s for s in _SENTENCE_END.split(text.strip()) if s]:
        joined = f"{current} {sentence}".strip()
        if fits(joined):
            current = joined
            continue
        if current:
            chunks.append(current)
        if fits(sentence):
            current = sentence
            continue
        current = ""
        for word in sentence.split():
            joined = f"{current} {word}".strip()
            if fits(joined) or not current:
                current = joined
            else:
                chunks.append(current)
                current = word
    if current:
        chunks.append(current)
    return chunks or [""]


class ClipScorer:
    """Loads the model once; `__call__(images, captions) -> list[ClipScore]`."""

    def __init__(self, cfg: ClipFilterConfig) -> None:
        import open_clip
        import torch

        self.cfg, self.torch = cfg, torch
        if cfg.model_config:
            if not Path(cfg.model_config).is_file():
                raise ModelLoadError(f"{cfg.model_config}: open_clip model config not found (filters.clip.model_config)")
            open_clip.add_model_config(cfg.model_config)
        if cfg.pretrained and ("/" in cfg.pretrained or cfg.pretrained.endswith((".pt", ".bin", ".safetensors"))) \
                and not Path(cfg.pretrained).is_file():
            raise ModelLoadError(f"{cfg.pretrained}: CLIP checkpoint not found (filters.clip.pretrained)")
        from uae_data.model_refs import require_open_clip

        require_open_clip(cfg.model, cfg.pretrained, "filters.clip.model / filters.clip.pretrained")
        self.device = resolve_device(cfg.device)
        try:
            model, _, self.preprocess = open_clip.create_model_and_transforms(cfg.model, pretrained=cfg.pretrained,
                                                                             device=self.device)
            self.tokenizer = open_clip.get_tokenizer(cfg.model)
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelLoadError(f"cannot load open_clip model {cfg.model!r} ({cfg.pretrained}): "
                                 f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        self.model = model.eval()
        self.context = int(getattr(self.tokenizer, "context_length", 77))
        self.name = f"{cfg.model}:{cfg.pretrained or 'random'}"

    def _chunks(self, caption: str) -> tuple[list[str], bool]:
        fits = lambda t: count_tokens(self.tokenizer, t) <= self.context  # noqa: E731
        if self.cfg.long_captions == "truncate":
            return [caption], not fits(caption)
        return split_caption(caption, fits), False

    def __call__(self, images: list[Image.Image], captions: list[str]) -> list[ClipScore]:
        torch = self.torch
        split = [self._chunks(c) for c in captions]
        texts = [t for chunks, _ in split for t in chunks]
        owner = [i for i, (chunks, _) in enumerate(split) for _ in chunks]
        bs = self.cfg.batch_size
        with torch.no_grad():
            img = torch.cat([self.model.encode_image(torch.stack([self.preprocess(im) for im in images[k:k + bs]]).to(self.device))
                             for k in range(0, len(images), bs)])
            txt = torch.cat([self.model.encode_text(self.tokenizer(texts[k:k + bs]).to(self.device))
                             for k in range(0, len(texts), bs)])
        img = torch.nn.functional.normalize(img.float(), dim=-1)  # (N, D)
        txt = torch.nn.functional.normalize(txt.float(), dim=-1)  # (T, D)
        owner_t = torch.tensor(owner, device=img.device)
        cos = (txt * img[owner_t]).sum(-1).cpu()  # (T,)
        sums = torch.zeros(len(captions)).index_add_(0, owner_t.cpu(), cos)
        return [ClipScore(float(sums[i]) / len(chunks), len(chunks), trunc) for i, (chunks, trunc) in enumerate(split)]
