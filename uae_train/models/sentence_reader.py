"""The decoder's own reading of a caption: one context token per sentence, the mean of its word embeddings.

Why: UAE feeds the DiT every last-layer state of the VLM re-reading the caption. On the scene world that
path barely binds words to cells: the DiT's text stream has no positions, and a causal LM trained to
caption puts no "which cell" into a colour word that comes before its cell phrase ("a large purple ring
occupies the top left cell"). Measured with the demo's DiT (48 px, one token per cell, 64 held-out scenes,
caption reliance = relative flow-loss gain of the true over a shuffled caption): frozen encoder states
0.018 after 300 steps, trainable word embeddings 0.067, a 2-layer transformer connector over them 0.0004
after 200 steps; one token per sentence (mean of trainable word embeddings) 0.12 after 200, 0.78 after 400,
0.85 after 600 steps (oracle per-cell tokens: 0.77). A dense caption states one object per sentence, so a
sentence's bag of words carries its cell words and its attributes together, and a cell's image token finds
its sentence by one attention lookup. What a plain mean loses is word order inside a sentence ("a circle
left of a square" and "a square left of a circle" read alike), which matters for short GenEval-style
prompts; `word_order` scales each word by a learned vector of its place in the sentence before the mean.

The embedding table is `decoder.connector.words` and each sentence mean goes through
`decoder.connector.sentence_norm` (a LayerNorm; both saved with the connector); the tokenizer is the
encoder's, so the decoder keeps reading the encoder's vocabulary. UAE's path (`text_input: states`) stays
the default for real models.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

SENTENCE_ENDS = (".", "!", "?")
# phrases: a sentence is also cut after these words and before a relation ("a red cross and | a blue ring",
# "a cross | left of a ring"), so each context token holds one object's words
PHRASE_ENDS = ("and", ",", ";", ":")
RELATION_STARTS = ("above", "below")  # always start a phrase
RELATION_STARTS_BEFORE_OF = ("left", "right")  # start one only as "left of" / "right of" (not "the top left cell")


def sentence_end_table(tokenizer, vocab_size: int) -> torch.Tensor:
    """(V,) bool: tokens whose text ends a sentence (works for word-level and BPE vocabularies alike)."""
    table = torch.zeros(vocab_size, dtype=torch.bool)
    for i in range(min(vocab_size, len(tokenizer))):
        text = tokenizer.decode([i], skip_special_tokens=True).strip()
        table[i] = bool(text) and text.endswith(SENTENCE_ENDS)
    return table


def word_table(tokenizer, vocab_size: int, words: Sequence[str]) -> torch.Tensor:
    """(V,) bool: tokens whose stripped text is one of `words`."""
    table = torch.zeros(vocab_size, dtype=torch.bool)
    wanted = set(words)
    for i in range(min(vocab_size, len(tokenizer))):
        table[i] = tokenizer.decode([i], skip_special_tokens=True).strip() in wanted
    return table


def phrase_ends(ids: torch.Tensor, ends: torch.Tensor, tables: dict[str, torch.Tensor]) -> torch.Tensor:
    """ends (B, T) with phrase cuts added: after PHRASE_ENDS words, before relation words."""
    ends = ends | tables["ends"][ids]
    starts = tables["starts"][ids].clone()
    before_of = tables["before_of"][ids]
    starts[:, :-1] |= before_of[:, :-1] & tables["of"][ids[:, 1:]]
    ends[:, :-1] |= starts[:, 1:]
    return ends


def sentence_pool(states: torch.Tensor, ends: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of `states` (B, T, W) over each sentence → (B, S, W) and mask (B, S) bool.

    ends (B, T) bool marks the last token of each sentence (it belongs to that sentence); text after the
    last end is a sentence of its own. Padding (mask False) counts nowhere.
    """
    ends = ends & mask
    sentence = (ends.long().cumsum(1) - ends.long()).masked_fill(~mask, 0)  # (B, T) sentence index
    count = int(sentence.max()) + 1 if sentence.numel() else 1
    member = nn.functional.one_hot(sentence, count).to(states.dtype) * mask[..., None].to(states.dtype)  # (B, T, S)
    sizes = member.sum(1)  # (B, S)
    pooled = torch.einsum("bts,btw->bsw", member, states) / sizes.clamp_min(1)[..., None]
    return pooled, sizes > 0


def place_in_sentence(ends: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) long: each token's index inside its sentence (0 for the first word after an end)."""
    t = torch.arange(ends.shape[1], device=ends.device).expand_as(ends)
    starts = torch.zeros_like(ends)
    starts[:, 0] = True
    starts[:, 1:] = (ends & mask)[:, :-1]
    first = torch.cummax(torch.where(starts, t, torch.zeros_like(t)), dim=1).values
    return (t - first) * mask


class SentenceReader:
    """A `TextConditioner` (encode_text) over the decoder's word table: one state per caption sentence."""

    def __init__(self, words: nn.Embedding, tokenizer, norm: nn.Module | None = None,
                 order: nn.Embedding | None = None, phrases: bool = False) -> None:
        self.words = words
        self.order = order
        self.norm = norm if norm is not None else nn.Identity()
        self.tokenizer = tokenizer
        self.ends = sentence_end_table(tokenizer, words.num_embeddings)
        self.hidden_size = words.embedding_dim
        v = words.num_embeddings
        self.phrase_tables = {"ends": word_table(tokenizer, v, PHRASE_ENDS),
                              "starts": word_table(tokenizer, v, RELATION_STARTS),
                              "before_of": word_table(tokenizer, v, RELATION_STARTS_BEFORE_OF),
                              "of": word_table(tokenizer, v, ("of",))} if phrases else None

    def encode_text(self, texts: Sequence[str], max_length: int | None = None, return_truncated: bool = False):
        """(B, S, W) sentence states and (B, S) mask; max_length cuts each caption to its first tokens."""
        if not len(texts):
            raise ValueError("encode_text needs at least one text")
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        n_cut = sum(len(i) > max_length for i in ids) if max_length else 0
        if max_length:
            ids = [i[:max_length] for i in ids]
        device = self.words.weight.device
        length = max(1, max(len(i) for i in ids))
        table = torch.zeros(len(ids), length, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.bool)
        for row, i in enumerate(ids):
            table[row, :len(i)] = torch.tensor(i, dtype=torch.long).clamp_max(self.words.num_embeddings - 1)
            mask[row, :len(i)] = True
        mask[:, 0] |= ~mask.any(1)  # an empty caption reads as one (padding-id) token
        ends = self.ends[table]
        if self.phrase_tables is not None:
            ends = phrase_ends(table, ends, self.phrase_tables)
        ends, mask = ends.to(device), mask.to(device)
        states = self.words(table.to(device))
        if self.order is not None:
            place = place_in_sentence(ends, mask).clamp_max(self.order.num_embeddings - 1)
            states = states * (1 + self.order(place))
        pooled, keep = sentence_pool(states, ends, mask)
        pooled = self.norm(pooled) * keep[..., None].to(pooled.dtype)
        return (pooled, keep, n_cut) if return_truncated else (pooled, keep)
