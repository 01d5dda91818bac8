"""Unified-GRPO stage 1, generation for understanding (`uae train stage1`): the encoder is the policy.

Per step: B images; the encoder samples G captions each; the frozen decoder paints every caption back
(one noise seed shared inside a group, so rewards differ by caption, not by noise); reward =
similarity(original, reconstruction) from `uae_train.rl.rewards`; group-relative advantages and TRL's
clipped objective (`uae_train.rl.grpo`) update the encoder.

The decoder reads captions through a frozen copy of the *initial* encoder (its text reader; also the
KL reference when beta > 0). UAE's decoder reads the encoder's re-encoding of the caption; if the policy
itself re-read them, every update would also shift the decoder's input, and the reward would stop
measuring the caption. With a LoRA policy the reader is the base model with the adapter disabled in
spirit; here it is simply a copy, which the tiny and 3B encoders both afford.

Why not TRL's GRPOTrainer (DESIGN.md suggests it where it fits): its reward call gets completions but
no place to run a second, frozen model on the same device with group-shared noise seeds, and its
generation path goes through the processor's chat template with `generate` kwargs we control ourselves
(suppressed vision tokens, sampled token ids scored as sampled). Stage 1 is a set of hooks (`Stage1`) into
the one RL loop both stages share (`uae_train.training.rl_loop`: run folder, resume, evals, checkpoints), on
the same formulas (`grpo.py` is tested against TRL's definitions); it resumes bit for bit on CPU.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from uae_data.core.config import config_kind, help_field
from uae_data.core.paths import shipped
from uae_train.rl import grpo
from uae_train.evaluation.autoencoder import mmt_captioner
from uae_train.models.painting import paint
from uae_train.training import data, rl_loop
from uae_train.training.config import RLConfig, check_lora


@config_kind("stage1")
@dataclass
class Stage1Config(RLConfig):
    temperature: float = help_field(1.0, help="caption sampling temperature (TRL default 1.0; UAE demo 0.7)")
    epsilon: float = help_field(0.2, help="clip ε_low (TRL default 0.2)")
    epsilon_high: float | None = help_field(None, help="clip ε_high (default ε; DAPO uses 0.28)")
    beta: float = help_field(0.0, help="k3 KL weight to the initial encoder (TRL default 0; UAE unknown)")
    loss_type: str = help_field("dapo", help="grpo | bnpo | dr_grpo | dapo (TRL's aggregations; dapo = TRL default)")
    scale_rewards: str = help_field("group", help="group | batch | none (none = Dr. GRPO)")
    decoder_steps: int = help_field(10, help="ODE steps of each reconstruction")
    decoder_guidance: float = help_field(1.0, help="CFG scale of reconstructions (1 = off)")
    encoder_lora: dict = help_field({}, help="LoRA for the policy, e.g. {r: 32, alpha: 64} (UAE's); {} = full fine-tune")
    mmt_tsv: str = help_field("manifests/mmt_bench/scene_mmt.tsv", help="MMT TSV for the caption-reader eval ('' = off)")
    mmt_limit: int = help_field(120, help="MMT rows per eval")

    def validate(self) -> None:
        super().validate()
        if self.loss_type not in grpo.LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(grpo.LOSS_TYPES)}; got {self.loss_type!r}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ValueError(f"scale_rewards must be group, batch or none; got {self.scale_rewards!r}")
        check_lora("encoder_lora", self.encoder_lora)


def evaluate(cfg: Stage1Config, policy, reader, decoder, images, scenes, reward, out: Path, step: int) -> dict:
    """Greedy captions of the held-out images → reconstructions → reward; exact-scene rate; MMT caption-reader."""
    texts = policy.caption(images, n=1, sample=False, max_new_tokens=cfg.max_new_tokens, batch_size=32)
    recons = paint(reader, decoder, texts, [cfg.eval_seed + i for i in range(len(texts))], cfg.decoder_steps,
                   cfg.decoder_guidance, cfg.max_text_tokens)
    r, parts = reward(images, recons, scenes if all(s is not None for s in scenes) else None, captions=texts)
    row = {"step": step, "heldout_reward": float(r.mean()),
           "caption_words": sum(len(t.split()) for t in texts) / len(texts)}
    row.update({f"heldout_{k}": sum(v) / len(v) for k, v in parts.items()})
    if all(s is not None for s in scenes):
        from uae_eval.scene_captions import aggregate, score_caption

        m = aggregate([score_caption(t, s) for t, s in zip(texts, scenes)])
        row.update(caption_exact_scene=m["exact_scene"], object_recall=m["object_recall"],
                   attribute_precision=m["attribute_precision"])
    if cfg.mmt_tsv:
        from uae_eval.mmt_bench import harness as mmt
        from uae_eval.mmt_bench.answerers import build_answerer

        tsv = str(shipped(cfg.mmt_tsv))
        mcfg = mmt.MMTConfig(tsv=tsv, model="caption-reader", limit=cfg.mmt_limit)
        captioner = mmt_captioner(policy, tsv, cfg.mmt_limit, cfg.max_new_tokens)
        res = mmt.run(mcfg, out / "evals" / f"step-{step:06d}" / "mmt-bench",
                      answer=build_answerer("caption-reader", caption=captioner))
        row["mmt_caption_reader"] = float(res.metrics["overall"])
    return row


def update(cfg: Stage1Config, policy, reference, images, token_ids, advantages, optimizer, params, dist=None) -> dict:
    """μ clipped-objective updates on one rollout batch; returns the stats of the first and last pass.

    In a multi-process run (`dist`) each rank holds whole groups; losses are normalised over the global
    batch (sequences, or for dapo the global active tokens, as TRL does) and the gradients summed, so the
    update equals the 1-process one on the same rollouts.
    """
    from uae_data import distributed

    dist = dist or distributed.current()
    n_local = len(token_ids)
    n = int(dist.sum(n_local)[0])
    old_logp: list[torch.Tensor] | None = None
    ref_logp: list[torch.Tensor | None] = [None] * n
    chunks = [slice(i, min(n_local, i + cfg.micro_batch)) for i in range(0, n_local, cfg.micro_batch)]
    if cfg.beta > 0:
        with torch.no_grad():
            ref_logp = [reference.completion_logprobs(images[c], token_ids[c])[0] for c in chunks]
    if cfg.num_iterations > 1:  # TRL: with μ > 1 the old log-probs are computed once, before any update
        with torch.no_grad():
            old_logp = [policy.completion_logprobs(images[c], token_ids[c])[0] for c in chunks]
    stats: dict = {}
    for it in range(cfg.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        parts = []
        with torch.no_grad():  # dapo normalises by the active tokens of the whole generation batch
            total_tokens = int(dist.sum(sum(max(1, len(t)) for t in token_ids))[0])
        for ci, c in enumerate(chunks):
            logp, mask = policy.completion_logprobs(images[c], token_ids[c])
            old = old_logp[ci] if old_logp is not None else logp.detach()
            loss, st = grpo.policy_loss(logp, old, advantages[c].to(logp.device), mask,
                                        eps_low=cfg.epsilon, eps_high=cfg.epsilon_high, loss_type=cfg.loss_type,
                                        ref_logp=ref_logp[ci], beta=cfg.beta,
                                        num_items_in_batch=total_tokens if cfg.loss_type == "dapo" else None)
            if cfg.loss_type != "dapo":  # per-chunk means → the batch mean
                loss = loss * (c.stop - c.start) / n
            loss.backward()
            parts.append((c.stop - c.start, float(loss.detach()), st))
        dist.sync_grads(params)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        keys = ("clip_fraction", "ratio_mean", "kl")
        sums = dist.sum(*(sum(p[0] * p[2][k] for p in parts) for k in keys), sum(p[1] for p in parts))
        merged = {k: v / n for k, v in zip(keys, sums)}
        merged["loss"] = sums[-1]
        ends = dist.gather((min(p[2]["ratio_min"] for p in parts), max(p[2]["ratio_max"] for p in parts)))
        merged["ratio_min"] = min(e[0] for e in ends)
        merged["ratio_max"] = max(e[1] for e in ends)
        if it == 0:
            stats = {f"first_{k}": v for k, v in merged.items() if k.startswith("ratio")}
            if abs(merged["ratio_max"] - 1) > 1e-5 or abs(merged["ratio_min"] - 1) > 1e-5:
                logging.getLogger(__name__).warning(
                    "stage1: importance ratio is not 1 on the first update (%.6f..%.6f): old log-probs "
                    "were computed differently from the new ones", merged["ratio_min"], merged["ratio_max"])
        stats.update(merged)
    return stats


class Stage1:
    """Stage 1's hooks into the RL loop: the encoder samples G captions per image, the frozen decoder paints
    them back through the frozen reader, the reward compares each painting with the image."""

    name, policy_part = "stage1", "encoder"

    def keep(self, cfg: Stage1Config) -> None:
        """Stage 1 trains on every corpus image."""
        return None

    def setup(self, ctx: rl_loop.RLContext, encoder, decoder):
        self.policy, self.decoder = encoder, decoder
        # the frozen initial encoder: the KL reference, and what the decoder reads captions through (a decoder
        # with its own word table returns a reader that is not an encoder, so the two are kept apart)
        self.reference = type(encoder)(rl_loop.frozen_copy(encoder.model), encoder.processor, prompt=encoder.prompt,
                                       name_or_path=encoder.name_or_path)
        self.reader = decoder.reader(self.reference)
        for p in decoder.parameters():
            p.requires_grad_(False)
        return encoder, decoder

    def prepare_eval(self, ctx: rl_loop.RLContext) -> None:
        pass

    def evaluate(self, ctx: rl_loop.RLContext, step: int) -> dict:
        return evaluate(ctx.cfg, self.policy, self.reader, self.decoder, ctx.eval_images, ctx.eval_scenes,
                        ctx.reward, ctx.out, step)

    def step(self, ctx: rl_loop.RLContext, batch: tuple, base: int, step: int) -> rl_loop.StepResult:
        cfg, dist, lo, hi, policy = ctx.cfg, ctx.dist, ctx.lo, ctx.hi, self.policy
        all_images, all_scenes, _ = batch
        images, G = all_images[lo:hi], cfg.group_size
        t0 = time.perf_counter()
        samples = policy.sample_captions(images, n=G, sample=True, temperature=cfg.temperature,
                                         max_new_tokens=cfg.max_new_tokens, seed=data.rank_seed(base, dist.rank))
        t_gen = time.perf_counter()
        seeds = [base + lo + i for i in range(len(images)) for _ in range(G)]  # shared within a group
        originals = [im for im in images for _ in range(G)]  # what the policy saw
        if getattr(ctx.reward, "reads_images", True):
            recons = paint(self.reader, self.decoder, samples.texts, seeds, cfg.decoder_steps, cfg.decoder_guidance,
                           cfg.max_text_tokens)
        else:  # constant and length rewards never look at a painting: skip the decoder (held-out evals still paint)
            recons = originals
        targets = [im for im in data.shift_by_one(all_images, cfg.shuffle_reward_images)[lo:hi] for _ in range(G)]
        ref_scenes = data.shift_by_one(all_scenes, cfg.shuffle_reward_images)  # what the reward compares with
        rep_scenes = [s for s in ref_scenes[lo:hi] for _ in range(G)]
        r, parts = ctx.reward(targets, recons, rep_scenes if all(s is not None for s in all_scenes) else None,
                              captions=samples.texts)
        t_rew = time.perf_counter()
        rewards = r.view(len(images), G)  # (b, G): row i = image lo+i's G captions
        adv = grpo.group_advantages(rewards, scale=cfg.scale_rewards).flatten()  # (b·G,), groups whole
        policy.train()
        st = update(cfg, policy, self.reference, originals, samples.token_ids, adv, ctx.optimizer, ctx.params, dist)
        policy.eval()
        words, cut, count = dist.sum(sum(len(t.split()) for t in samples.texts), sum(samples.truncated),
                                     len(samples.texts))
        return rl_loop.StepResult(rewards, parts, st, t_gen - t0, t_rew - t_gen,
                                  {"caption_words": words / count, "truncated": cut / count})


def stage1(cfg: Stage1Config, out: Path, resume: bool = False,
           progress: Callable[[str], object] | None = None) -> dict:
    """Run stage 1 into `out` (encoder/ decoder/ checkpoints/ metrics.jsonl eval.jsonl results/)."""
    return rl_loop.run(Stage1(), cfg, out, resume, progress, encoder_lora=cfg.encoder_lora)
