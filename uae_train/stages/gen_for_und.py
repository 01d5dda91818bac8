"""Unified-GRPO stage 1, generation for understanding (`uae train stage1`): the encoder is the policy.

Per step: B images; the encoder samples G captions each; the frozen decoder paints every caption back
(one noise seed shared inside a group, so rewards differ by caption, not by noise); reward =
similarity(original, reconstruction) from `uae_train.rewards`; group-relative advantages and TRL's
clipped objective (`uae_train.grpo`) update the encoder.

The decoder reads captions through a frozen copy of the *initial* encoder (its text reader; also the
KL reference when beta > 0). UAE's decoder reads the encoder's re-encoding of the caption; if the policy
itself re-read them, every update would also shift the decoder's input, and the reward would stop
measuring the caption. With a LoRA policy the reader is the base model with the adapter disabled in
spirit; here it is simply a copy, which the tiny and 3B encoders both afford.

Why not TRL's GRPOTrainer (DESIGN.md suggests it where it fits): its reward call gets completions but
no place to run a second, frozen model on the same device with group-shared noise seeds, and its
generation path goes through the processor's chat template with `generate` kwargs we control ourselves
(suppressed vision tokens, sampled token ids scored as sampled). The loop below is ~150 lines on the
same formulas (`grpo.py` is tested against TRL's definitions), shares checkpoint/resume/eval code with
stage 2, and resumes bit for bit on CPU.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from uae_data.core.config import config_kind, help_field
from uae_data.scenes import parse_caption
from uae_train import grpo
from uae_train.rewards import build_reward
from uae_train.stages import rl_common as rl
from uae_train.checkpoint import save_checkpoint
from uae_train.stages.pretrain import autocast, resolve_device


@config_kind("stage1")
@dataclass
class Stage1Config:
    init: str = help_field("", help="run folder with encoder/ and decoder/ (pretrain output); --init overrides")
    corpus: str = help_field("out/corpus", help="training images (uae build-corpus output)")
    image_size: int = help_field(32, help="images are resized to this side (the decoder's size)")
    steps: int = help_field(20, help="optimizer steps (one rollout batch each)")
    images_per_step: int = help_field(8, help="B: images per step")
    group_size: int = help_field(8, help="G: captions sampled per image (TRL num_generations default 8)")
    temperature: float = help_field(1.0, help="caption sampling temperature (TRL default 1.0; UAE demo 0.7)")
    max_new_tokens: int = help_field(160, help="caption token limit (UAE demo: 512)")
    lr: float = help_field(1e-4, help="AdamW lr. UAE's is unknown (facts); TRL's 1e-6 is for billion-scale "
                                      "LoRA-free LMs, the tiny encoder needs far more")
    weight_decay: float = help_field(0.0, help="AdamW weight decay")
    grad_clip: float = help_field(1.0, help="max gradient norm (0 = off)")
    epsilon: float = help_field(0.2, help="clip ε_low (TRL default 0.2)")
    epsilon_high: float | None = help_field(None, help="clip ε_high (default ε; DAPO uses 0.28)")
    beta: float = help_field(0.0, help="k3 KL weight to the initial encoder (TRL default 0; UAE unknown)")
    loss_type: str = help_field("dapo", help="grpo | bnpo | dr_grpo | dapo (TRL's aggregations; dapo = TRL default)")
    scale_rewards: str = help_field("group", help="group | batch | none (none = Dr. GRPO)")
    num_iterations: int = help_field(1, help="μ: updates per rollout batch (TRL default 1: ratio ≡ 1)")
    micro_batch: int = help_field(16, help="captions per forward/backward (memory knob; the loss does not change)")
    reward: dict = help_field({"scene-soft": 1.0}, help="metric weights, e.g. {clip: 1.0} or {scene-soft: 1, pixel: 0.5}")
    reward_options: dict = help_field({}, help="per-metric options, e.g. {clip: {model: ViT-L-14, pretrained: PATH}}")
    shuffle_reward_images: bool = help_field(False, help="control: score each reconstruction against another image "
                                                         "of the batch (a reward that says nothing about the image)")
    decoder_steps: int = help_field(10, help="ODE steps of each reconstruction")
    decoder_guidance: float = help_field(1.0, help="CFG scale of reconstructions (1 = off)")
    max_text_tokens: int = help_field(256, help="caption tokens the decoder reads")
    encoder_lora: dict = help_field({}, help="LoRA for the policy, e.g. {r: 32, alpha: 64} (UAE's); {} = full fine-tune")
    eval_every: int = help_field(0, help="held-out eval every N steps (0 = at start and end only)")
    eval_images: int = help_field(48, help="held-out images per eval")
    eval_corpus: str = help_field("", help="held-out corpus folder; '' = fresh scene-world images")
    eval_seed: int = help_field(2024, help="seed of the held-out scenes and reconstruction noise")
    mmt_tsv: str = help_field("manifests/mmt_bench/scene_mmt.tsv", help="MMT TSV for the caption-reader eval ('' = off)")
    mmt_limit: int = help_field(120, help="MMT rows per eval")
    checkpoint_every: int = help_field(10, help="resumable checkpoint every N steps (and at the end)")
    shuffle_buffer: int = help_field(500, help="webdataset sample shuffle buffer")
    mixed_precision: str = help_field("auto", help="auto (bf16 on CUDA) | no | bf16")
    device: str = help_field("auto", help="auto | cpu | cuda")
    seed: int = help_field(0, help="seed of data order, sampling and noise")
    log_with: list[str] = help_field([], help="experiment trackers beside metrics.jsonl, rank 0 only, under RUN/trackers: tensorboard, wandb (offline), mlflow (local)")

    def validate(self) -> None:
        from uae_train.tracking import TRACKERS

        for name in self.log_with:
            if name not in TRACKERS:
                raise ValueError(f"log_with: unknown tracker {name!r} (known: {', '.join(TRACKERS)})")
        if self.loss_type not in grpo.LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {', '.join(grpo.LOSS_TYPES)}; got {self.loss_type!r}")
        if self.scale_rewards not in ("group", "batch", "none"):
            raise ValueError(f"scale_rewards must be group, batch or none; got {self.scale_rewards!r}")
        for name in ("steps", "images_per_step", "group_size", "num_iterations", "micro_batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2: a group of one has no relative advantage")


def evaluate(cfg: Stage1Config, policy, reader, decoder, images, scenes, reward, out: Path, step: int) -> dict:
    """Greedy captions of the held-out images → reconstructions → reward; exact-scene rate; MMT caption-reader."""
    texts = policy.caption(images, n=1, sample=False, max_new_tokens=cfg.max_new_tokens, batch_size=32)
    recons = reconstruct(cfg, reader, decoder, texts, [cfg.eval_seed + i for i in range(len(texts))])
    r = reward(images, recons, scenes if all(s is not None for s in scenes) else None)
    row = {"step": step, "heldout_reward": float(r.mean()),
           "caption_words": sum(len(t.split()) for t in texts) / len(texts)}
    row.update({f"heldout_{k}": sum(v) / len(v) for k, v in reward.parts.items()})
    if all(s is not None for s in scenes):
        exact = 0
        for t, s in zip(texts, scenes):
            try:
                exact += int(parse_caption(t) == s)
            except Exception:  # noqa: BLE001 - an unparseable caption is simply not exact
                pass
        row["caption_exact_scene"] = exact / len(texts)
    if cfg.mmt_tsv:
        from uae_eval.mmt_bench import harness as mmt
        from uae_eval.mmt_bench.answerers import build_answerer

        tsv = rl.repo_path(cfg.mmt_tsv)
        mcfg = mmt.MMTConfig(tsv=tsv, model="caption-reader", limit=cfg.mmt_limit)
        captioner = rl.mmt_captioner(policy, tsv, cfg.mmt_limit, cfg.max_new_tokens)
        res = mmt.run(mcfg, out / "evals" / f"step-{step:06d}" / "mmt-bench",
                      answer=build_answerer("caption-reader", caption=captioner))
        row["mmt_caption_reader"] = float(res.metrics["overall"])
    return row


@torch.no_grad()
def reconstruct(cfg, reader, decoder, texts: list[str], seeds: list[int], batch: int = 32):
    images = []
    for i in range(0, len(texts), batch):
        hidden, mask = reader.encode_text(texts[i:i + batch], max_length=cfg.max_text_tokens)
        images += decoder.generate(hidden.float(), mask, seeds[i:i + batch], steps=cfg.decoder_steps,
                                   guidance=cfg.decoder_guidance)
    return images


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
                import logging

                logging.getLogger(__name__).warning(
                    "stage1: importance ratio is not 1 on the first update (%.6f..%.6f): old log-probs "
                    "were computed differently from the new ones", merged["ratio_min"], merged["ratio_max"])
        stats.update(merged)
    return stats


def stage1(cfg: Stage1Config, out: Path, resume: bool = False,
           progress: Callable[[str], object] | None = None) -> dict:
    """Run stage 1 into `out` (encoder/ decoder/ checkpoints/ metrics.jsonl eval.jsonl results/)."""
    from uae_data import distributed

    out = Path(out)
    init = rl.check_init(cfg.init)
    from uae_train.tracking import check_trackers

    check_trackers(cfg.log_with)
    dist = distributed.setup(cfg.device)
    resume = rl.prepare_run(out, cfg, "stage1", resume, main=dist.main)
    device = dist.device if dist.active else resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    policy, decoder = rl.load_pair(init, device, encoder_lora=cfg.encoder_lora)
    reader = rl.frozen_copy(policy.model)
    reader_enc = decoder.reader(type(policy)(reader, policy.processor, prompt=policy.prompt,
                                             name_or_path=policy.name_or_path))
    for p in decoder.parameters():
        p.requires_grad_(False)
    decoder_digest = rl.parameters_digest(decoder)
    reward = build_reward(cfg.reward, cfg.reward_options)
    params = policy.trainable_parameters()
    dist.broadcast_params(params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    ckpt = out / "checkpoints" / "encoder"
    step, seen = rl.restore(out, ckpt, policy, optimizer, scheduler, resume)
    eval_images, eval_scenes = rl.heldout(cfg.eval_corpus, cfg.eval_images, cfg.eval_seed, cfg.image_size)
    stream = rl.train_stream(Path(cfg.corpus), cfg.shuffle_buffer, cfg.seed, seen)
    eval_rows = rl.read_jsonl(out / "eval.jsonl")
    lo, hi = dist.bounds(cfg.images_per_step, "images_per_step")  # this rank's whole groups

    def held_out_eval(at: int) -> dict:
        with autocast(cfg, device):
            return evaluate(cfg, policy, reader_enc, decoder, eval_images, eval_scenes, reward, out, at)

    main = dist.main
    with (progress("stage1 (encoder policy)") if progress and main else contextlib.nullcontext()) as update_bar, \
            rl.RunLog(out, cfg, "stage1", dist, eval_rows) as records:
        if step == 0 and not eval_rows:
            records.evaluate(held_out_eval, 0)
        while step < cfg.steps:
            t0 = time.perf_counter()
            all_images, all_scenes, _ = rl.global_batch(stream, cfg.images_per_step, cfg.image_size)
            seen += len(all_images)
            images = all_images[lo:hi]
            G = cfg.group_size
            base = cfg.seed * 1_000_003 + step * 7_919
            with autocast(cfg, device):
                samples = policy.sample_captions(images, n=G, sample=True, temperature=cfg.temperature,
                                                 max_new_tokens=cfg.max_new_tokens, seed=rl.rank_seed(base, dist.rank))
                t_gen = time.perf_counter()
                seeds = [base + lo + i for i in range(len(images)) for _ in range(G)]  # shared within a group
                recons = reconstruct(cfg, reader_enc, decoder, samples.texts, seeds)
                originals = [im for im in images for _ in range(G)]  # what the policy saw
                ref_images, ref_scenes = rl.reward_references(all_images, all_scenes, cfg.shuffle_reward_images)
                targets = [im for im in ref_images[lo:hi] for _ in range(G)]  # what the reward compares with
                rep_scenes = [s for s in ref_scenes[lo:hi] for _ in range(G)]
                r = reward(targets, recons, rep_scenes if all(s is not None for s in all_scenes) else None)
                t_rew = time.perf_counter()
                rewards = r.view(len(images), G)  # (b, G): row i = image lo+i's G captions
                adv = grpo.group_advantages(rewards, scale=cfg.scale_rewards).flatten()  # (b·G,), groups whole
                policy.train()
                st = update(cfg, policy, reader_enc, originals, samples.token_ids, adv, optimizer, params, dist)
                policy.eval()
            scheduler.step()
            step += 1
            now = time.perf_counter()
            all_rewards, parts = rl.gather_rewards(dist, rewards, reward.parts)
            words, cut, count = dist.sum(sum(len(t.split()) for t in samples.texts), sum(samples.truncated),
                                         len(samples.texts))
            row = {"step": step, "reward_mean": float(all_rewards.mean()), "reward_std": float(all_rewards.std()),
                   "zero_std_groups": grpo.zero_std_fraction(all_rewards),
                   "caption_words": words / count, "truncated": cut / count,
                   **{f"reward_{k}": sum(v) / len(v) for k, v in parts.items()},
                   **st, "rollout_s": t_gen - t0, "reward_s": t_rew - t_gen, "step_time_s": now - t0,
                   "samples_seen": seen}
            if row["zero_std_groups"] == 1.0 and main:
                import logging

                logging.getLogger(__name__).warning("stage1 step %d: every group's rewards are equal: no signal", step)
            records.train(row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                rl.main_only(dist, save_checkpoint, ckpt, policy, optimizer, scheduler,
                             {"step": step, "samples_seen": seen})
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                records.evaluate(held_out_eval, step)
            if update_bar:
                update_bar(step, cfg.steps, reward=row["reward_mean"])
    if rl.parameters_digest(decoder) != decoder_digest:
        raise RuntimeError("stage1: the frozen decoder changed during training")
    return rl.main_only(dist, rl.finish, out, "stage1", cfg, policy, decoder, eval_rows, step, init, "encoder") or {}
