"""The decoder's text condition: a (states, mask) pair, what produces one, and how it becomes DiT context.

The decoder never imports the encoder class: anything with an `encode_text` method conditions it (the
encoder, the decoder's own sentence reader, or a stand-in in tests). `TextConditioning` is the part of
`Decoder` that reads texts and runs the connector (it needs the decoder's `config`, `connector`,
`transformer` and `device`).
"""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

TextCondition = tuple[torch.Tensor, torch.Tensor]  # hidden (B, T, H) float, mask (B, T) bool


class TextConditioner(Protocol):
    """Anything that turns texts into last-layer states: the encoder, or a stand-in in tests."""

    def encode_text(self, texts: list[str]) -> TextCondition: ...


def pad_cat(a: TextCondition, b: TextCondition) -> TextCondition:
    """Stack two (states (B, T, D), mask (B, T)) batches, padding the shorter one with masked zeros.

    Guidance runs the negative and positive conditions in one DiT call; their lengths differ."""
    length = max(a[0].shape[1], b[0].shape[1])

    def pad(states: torch.Tensor, mask: torch.Tensor) -> TextCondition:
        extra = length - states.shape[1]
        return F.pad(states, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)

    (sa, ma), (sb, mb) = pad(*a), pad(*b)
    return torch.cat([sa, sb]), torch.cat([ma, mb])


class TextConditioning:
    """Conditioning methods of `Decoder` (a mixin: see the module docstring for what it needs)."""

    def reader(self, encoder: TextConditioner) -> TextConditioner:
        """What turns captions into this decoder's text states: the encoder itself (text_input states, UAE) or
        the decoder's own sentence reader over the encoder's tokenizer (text_input sentences)."""
        if self.config.text_input == "states":
            return encoder
        from uae_train.models.sentence_reader import SentenceReader

        cached = getattr(self, "_sentence_reader", None)
        tokenizer = getattr(encoder, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("text_input sentences needs a tokenizer: pass the encoder (or anything with .tokenizer)")
        if cached is None or cached.tokenizer is not tokenizer:
            cached = SentenceReader(self.connector.words, tokenizer, self.connector.sentence_norm,
                                    order=getattr(self.connector, "word_order", None),
                                    phrases=self.config.phrases)
            object.__setattr__(self, "_sentence_reader", cached)  # not a submodule: the table already is
        return cached

    def context(self, text_hidden: torch.Tensor, text_mask: torch.Tensor) -> TextCondition:
        """Text states (B, T, H) + mask (B, T) → DiT context (B, T', D) + mask (B, T').

        Columns padded in every row are dropped (exact: text tokens carry no position in the DiT and
        masked keys are ignored), so a batch costs what its longest caption costs.
        """
        if text_hidden.dim() != 3 or text_mask.shape != text_hidden.shape[:2]:
            raise ValueError(f"text states must be (B, T, H) with mask (B, T); got {tuple(text_hidden.shape)} "
                             f"and {tuple(text_mask.shape)}")
        mask = text_mask.to(self.device, torch.bool)
        keep = mask.any(dim=0)
        if not keep.any():
            keep[0] = True
        return self.connector(text_hidden[:, keep.to(text_hidden.device)], mask[:, keep]), mask[:, keep]

    def null_context(self, batch: int) -> TextCondition:
        """The unconditional input: one all-zero context token (what `uncond_prob` trains)."""
        states = torch.zeros(batch, 1, self.transformer.config.joint_attention_dim, device=self.device)
        return states, torch.ones(batch, 1, dtype=torch.bool, device=self.device)

    def _negative_context(self, negative: TextCondition | None, batch: int) -> TextCondition:
        if negative is None:
            return self.null_context(batch)
        states, mask = self.context(*negative)
        if states.shape[0] == 1 and batch > 1:
            states, mask = states.expand(batch, -1, -1), mask.expand(batch, -1)
        if states.shape[0] != batch:
            raise ValueError(f"negative condition has batch {states.shape[0]}, expected 1 or {batch}")
        return states, mask
