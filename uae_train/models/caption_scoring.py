"""Teacher-forced scoring of captions given image + prompt: GRPO's log-probabilities and SFT's loss.

Sequence layout (as TRL's): `[left-padded prompt | right-padded completion]`, so every completion starts
at the same column and only the last T+1 positions need logits. `CaptionScoring` is the part of
`Encoder` that does it (it needs the encoder's `model`, `tokenizer`, `stop_token_ids`,
`suppressed_token_ids`, `end_token_id`, `device`, `_core` and `_prompt_inputs`).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from uae_train.models.caption_sampling import ImageLike
from uae_train.models.model_runtime import accepts_kwarg


def mask_after_stop(ids: torch.Tensor, mask: torch.Tensor, stop_ids: Sequence[int]) -> torch.Tensor:
    """`mask` (B, T) bool with every position after the first stop token switched off (the stop stays on)."""
    is_stop = torch.isin(ids, torch.tensor(list(stop_ids), device=ids.device)) & mask
    seen_before = (is_stop.long().cumsum(1) - is_stop.long()) > 0
    return mask & ~seen_before


def image_word_loss(at_image: torch.Tensor, targets: Sequence[Sequence[Sequence[int]]],
                    count: int | None = None) -> torch.Tensor:
    """Mean over image tokens of -Σ log p(target word) from the logits at those tokens (N, V); `count`
    replaces the number of image tokens as the divisor (a global batch's, in a multi-process run)."""
    flat = [list(t) for per_image in targets for t in per_image]
    if len(flat) != at_image.shape[0]:
        raise ValueError(f"image_targets name {len(flat)} image tokens; the batch has {at_image.shape[0]}")
    logp = at_image.float().log_softmax(-1)
    rows = torch.tensor([k for k, t in enumerate(flat) for _ in t], device=logp.device)
    cols = torch.tensor([i for t in flat for i in t], device=logp.device)
    return -logp[rows, cols].sum() / max(1, count or len(flat))


class CaptionScoring:
    """Scoring methods of `Encoder` (a mixin: see the module docstring for what it needs)."""

    def _completion_ids(self, captions: Sequence[str] | Sequence[Sequence[int]], add_end: bool) -> list[list[int]]:
        if len(captions) and not isinstance(captions[0], str):
            ids = [list(map(int, c)) for c in captions]  # token ids as sampled: scored as they are
            banned = set(self.suppressed_token_ids)
            bad = next((i for i, c in enumerate(ids) if banned.intersection(c)), None)
            if bad is not None:
                raise ValueError(f"caption {bad} holds a vision placeholder token ({sorted(banned)}); "
                                 "captions must be plain text tokens")
            return ids
        ids = self.tokenizer(list(captions), add_special_tokens=False)["input_ids"]
        return [i + [self.end_token_id] if add_end else i for i in ids]

    def _completion_logits(self, images: Sequence[ImageLike], completions: list[list[int]], prompt: str | None,
                           image_logits: bool = False) -> tuple[torch.Tensor, ...]:
        """logits (B, T, V) predicting completion ids (B, T), and their mask (B, T) bool (pad off).

        image_logits: also return the logits at every image-placeholder position (N, V), in input order
        (image by image, merged patches row by row), suppressed tokens at -inf.
        """
        if len(images) != len(completions):
            raise ValueError(f"{len(images)} images for {len(completions)} captions; pass one image per caption")
        inputs = self._prompt_inputs(images, prompt)
        prompt_ids = inputs["input_ids"]  # (B, P)
        batch, prompt_len = prompt_ids.shape
        length = max(1, max(len(c) for c in completions))
        pad = self.tokenizer.pad_token_id
        ids = torch.full((batch, length), pad, dtype=prompt_ids.dtype)
        mask = torch.zeros(batch, length, dtype=torch.bool)
        for i, c in enumerate(completions):
            ids[i, :len(c)] = torch.tensor(c, dtype=prompt_ids.dtype)
            mask[i, :len(c)] = True
        ids, mask = ids.to(self.device), mask.to(self.device)
        for key, value in list(inputs.items()):  # per-token inputs (mask, mm_token_type_ids, ...) grow too
            if torch.is_tensor(value) and value.shape == (batch, prompt_len):
                tail = ids if key == "input_ids" else mask if key == "attention_mask" else torch.zeros_like(ids)
                inputs[key] = torch.cat([value, tail.to(value.dtype)], dim=1)
        at_image = None
        if image_logits:
            full = self.model(**inputs).logits
            at_image = full[inputs["input_ids"] == self._core().config.image_token_id]
            logits = full[:, -(length + 1):]
        elif accepts_kwarg(self.model, "logits_to_keep"):
            logits = self.model(**inputs, logits_to_keep=length + 1).logits
        else:
            logits = self.model(**inputs).logits[:, -(length + 1):]
        logits = logits[:, :-1]  # (B, T, V): position t predicts completion token t
        suppressed = self.suppressed_token_ids
        if suppressed:
            fill = torch.tensor(suppressed, device=logits.device)
            logits = logits.index_fill(-1, fill, float("-inf"))
            at_image = at_image.index_fill(-1, fill, float("-inf")) if at_image is not None else None
        return (logits, ids, mask, at_image) if image_logits else (logits, ids, mask)

    def completion_logprobs(self, images: Sequence[ImageLike], captions: Sequence[str] | Sequence[Sequence[int]],
                            temperature: float = 1.0, add_end: bool = True, prompt: str | None = None,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log π(caption token | image, prompt, earlier tokens): (B, T) float32 and mask (B, T) bool.

        captions: strings (tokenized, the end-of-turn token appended when add_end) or token-id lists as
        sampled (scored as is). The mask is off on padding and after the first stop token (the stop token
        itself counts, as in TRL). Logits are divided by `temperature`, the sampling temperature. Follows
        torch's grad mode: gradients reach the (trainable) parameters unless under torch.no_grad().
        """
        completions = self._completion_ids(captions, add_end)
        logits, ids, mask = self._completion_logits(images, completions, prompt)
        rows = []
        for row_logits, row_ids in zip(logits, ids):  # one row at a time: float32 (T, V) only
            scaled = row_logits.float() / temperature
            rows.append(scaled.gather(-1, row_ids[:, None]).squeeze(-1) - scaled.logsumexp(-1))
        return torch.stack(rows), mask_after_stop(ids, mask, self.stop_token_ids)

    def sft_loss(self, images: Sequence[ImageLike], captions: Sequence[str], prompt: str | None = None,
                 token_weights: dict[int, float] | None = None,
                 image_targets: Sequence[Sequence[Sequence[int]]] | None = None,
                 image_weight: float = 1.0, token_count: int | None = None,
                 image_token_count: int | None = None) -> tuple[torch.Tensor, float]:
        """(mean cross-entropy over caption tokens + end token, next-token accuracy on them).

        token_count / image_token_count replace this batch's own counts as the divisors: a rank of a
        multi-process run passes the global batch's counts, so the ranks' losses sum to the global mean.

        The prompt (image, instruction, assistant header) is context only, as labels of -100 would make it.
        `token_weights` {token id: w} counts those target tokens w times in the sum (the divisor stays the
        token count): a long caption is mostly template text, and the few words that need the image train
        too slowly without it (docs/scene-world-learning.md).
        `image_targets[b][k]` lists token ids the LM should predict at image b's k-th image token (e.g. the
        words of what that grid cell holds): adds image_weight × mean over tokens of -Σ log p(target), so
        image positions hold their content in word space and caption positions only have to copy it.
        """
        completions = self._completion_ids(captions, add_end=True)
        at_image = None
        if image_targets is not None:
            logits, ids, mask, at_image = self._completion_logits(images, completions, prompt, image_logits=True)
        else:
            logits, ids, mask = self._completion_logits(images, completions, prompt)
        labels = ids.masked_fill(~mask, -100)
        if token_weights:
            ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                                 reduction="none").view_as(ids)
            table = torch.ones(logits.shape[-1], device=ids.device, dtype=ce.dtype)
            table[list(token_weights)] = torch.tensor(list(token_weights.values()), device=ids.device, dtype=ce.dtype)
            w = table[ids] * mask
            loss = (ce * w).sum() / (token_count or mask.sum())
        elif token_count:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                                   reduction="sum") / token_count
        else:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        if at_image is not None:
            loss = loss + image_weight * image_word_loss(at_image, image_targets, image_token_count)
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == ids)[mask].float().mean().item()
        return loss, accuracy

    def word_token_ids(self, words: Sequence[str]) -> set[int]:
        """Token ids that spell `words`, with and without a leading space (every piece of a split word)."""
        ids: set[int] = set()
        for w in words:
            for variant in (w, " " + w):
                ids.update(self.tokenizer(variant, add_special_tokens=False)["input_ids"])
        ids.discard(self.tokenizer.pad_token_id)
        return ids
