"""The UAE connector: the encoder's last-layer text states → the DiT's `encoder_hidden_states`.

UAE replaces SD3's T5/CLIP text path by the VLM itself: the caption is re-encoded by the VLM, and all of
its last-layer hidden states go through a two-layer MLP (Linear(H→8192), GELU, Linear(→4096) for
SD3.5-Large, whose joint_attention_dim is 4096). Here the widths are H → mult·D → D with D the DiT's
joint_attention_dim; mult = 2 reproduces the paper's 8192/4096.
"""
from __future__ import annotations

import torch
from torch import nn


class Connector(nn.Module):
    """MLP from text hidden states (B, T, H) to DiT context states (B, T, D); padded positions come out as 0.

    Zeroing alone does not hide padding from the DiT (its context_embedder adds a bias, and SD3's joint
    attention has no mask argument), so the decoder also masks padded keys in attention; zeroing keeps
    the connector's output independent of what the encoder left in padded positions.
    """

    def __init__(self, text_hidden_size: int, context_dim: int, mult: int = 2, vocab_size: int = 0,
                 word_order: int = 0) -> None:
        super().__init__()
        if vocab_size:  # text_input sentences: the decoder's own word table (sentence_reader.py)
            self.words = nn.Embedding(vocab_size, text_hidden_size)
            nn.init.normal_(self.words.weight, std=0.02)
            # sentence means of 0.02-scale embeddings are tiny; normalising them is what let the probe learn
            self.sentence_norm = nn.LayerNorm(text_hidden_size)
            if word_order:  # a word's place in its sentence scales its embedding: 1 + order[i] (zero at init)
                self.word_order = nn.Embedding(word_order, text_hidden_size)
                nn.init.zeros_(self.word_order.weight)
        self.text_hidden_size = text_hidden_size
        self.context_dim = context_dim
        self.mult = mult
        self.net = nn.Sequential(
            nn.Linear(text_hidden_size, mult * context_dim),
            nn.GELU(),
            nn.Linear(mult * context_dim, context_dim),
        )

    def forward(self, text_hidden: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """text_hidden (B, T, H), text_mask (B, T) bool (True = real token) → (B, T, D)."""
        if text_hidden.shape[-1] != self.text_hidden_size:
            raise ValueError(f"text states have width {text_hidden.shape[-1]}, "
                             f"the connector expects {self.text_hidden_size}")
        weight = self.net[0].weight
        out = self.net(text_hidden.to(device=weight.device, dtype=weight.dtype))  # (B, T, D)
        return out * text_mask.to(out.device)[..., None].to(out.dtype)
