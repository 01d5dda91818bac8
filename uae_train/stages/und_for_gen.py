"""Unified-GRPO stage 2, understanding for generation (`uae train stage2`): the decoder is the policy.

Per step: B images; the frozen encoder captions each; the decoder paints G images per caption through
Flow-GRPO's SDE sampler (`flow_sde.sde_step`: every step Gaussian, so every step has a log-prob), with
fewer rollout steps than inference steps; reward = similarity(original, painting); advantages as
Flow-GRPO (per-group mean, batch std, clipped) or TRL's per-group; then, for the trained steps of each
trajectory, the clipped objective on the stored transitions plus β·KL to the reference decoder (the
initial weights: LoRA disabled, or a frozen copy for a full fine-tune). No library does GRPO for
diffusers models (DESIGN.md), so this loop is ours; the formulas are tested in grpo.py / flow_sde.py.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from uae_data.core.config import config_kind, help_field
from uae_data.core.errors import InputError
from uae_data.scenes import write_caption
from uae_train import flow_sde, grpo
from uae_train.models.image_tensors import tensor_to_pil
from uae_train.rewards import GENEVAL_TERMS, build_reward
from uae_train.stages import rl_common as rl
from uae_train.checkpoint import save_checkpoint
from uae_train.stages.pretrain import autocast, resolve_device


@config_kind("stage2")
@dataclass
class Stage2Config:
    init: str = help_field("", help="run folder with encoder/ and decoder/ (pretrain or stage1 output); --init overrides")
    corpus: str = help_field("out/corpus", help="training images (uae build-corpus output)")
    image_size: int = help_field(32, help="images are resized to this side (the decoder's size)")
    steps: int = help_field(20, help="optimizer steps (one rollout batch each)")
    images_per_step: int = help_field(4, help="B: captions (images) per step")
    group_size: int = help_field(8, help="G: paintings per caption (Flow-GRPO: 24)")
    rollout_steps: int = help_field(10, help="SDE steps per rollout (Flow-GRPO: 10 for training, 40 ODE for eval)")
    noise_level: float = help_field(0.7, help="a in σ_t = a·√(t/(1−t)) (Flow-GRPO: 0.7)")
    timestep_fraction: float = help_field(0.99, help="share of rollout steps trained (Flow-GRPO 0.99: 9 of 10)")
    guidance: float = help_field(1.0, help="CFG inside the policy (Flow-GRPO 4.5 on SD3.5; 1 = off for the tiny decoder)")
    advantage: str = help_field("flow_grpo", help="flow_grpo (group mean, batch std, ±5 clip) | group (TRL)")
    clip_range: float = help_field(1e-4, help="ρ clip (Flow-GRPO: 1e-4)")
    adv_clip: float = help_field(5.0, help="advantage clip (Flow-GRPO: 5)")
    beta: float = help_field(0.04, help="KL weight to the reference decoder (Flow-GRPO: 0.04 GenEval, 0.01 PickScore)")
    num_iterations: int = help_field(1, help="updates per rollout batch")
    lr: float = help_field(1e-4, help="AdamW lr (Flow-GRPO LoRA: 3e-4; UAE unknown)")
    weight_decay: float = help_field(1e-4, help="AdamW weight decay (Flow-GRPO: 1e-4)")
    grad_clip: float = help_field(1.0, help="max gradient norm (Flow-GRPO: 1)")
    micro_batch: int = help_field(32, help="images per training forward (memory knob)")
    caption_temperature: float = help_field(0.0, help="frozen encoder's caption sampling temperature (0 = greedy)")
    max_new_tokens: int = help_field(160, help="caption token limit")
    max_text_tokens: int = help_field(256, help="caption tokens the decoder reads")
    prompts: str = help_field("captions", help="what the decoder paints from: captions (UAE: the frozen encoder's "
                                               "caption of each image) | short (each image's short GenEval-template "
                                               "prompt from the corpus, for the geneval reward: Flow-GRPO's GenEval task)")
    reward: dict = help_field({"scene-soft": 1.0}, help="metric weights, as stage 1; geneval / geneval-partial judge "
                                                        "each painting against its prompt (prompts: short)")
    shuffle_reward_images: bool = help_field(False, help="control: score each painting against another image of "
                                                         "the batch (a reward that says nothing about the caption)")
    reward_options: dict = help_field({}, help="per-metric options")
    decoder_options: dict = help_field({}, help="decoder load options, e.g. {lora_rank: 32} (LoRA policy; reference = adapter off)")
    eval_every: int = help_field(0, help="held-out eval every N steps (0 = at start and end only)")
    eval_images: int = help_field(48, help="held-out images per eval")
    eval_steps: int = help_field(20, help="ODE steps of eval paintings")
    eval_corpus: str = help_field("", help="held-out corpus folder; '' = fresh scene-world images")
    eval_geneval_prompts: int = help_field(0, help="GenEval-scene prompts painted at every eval, every k-th of the 553 "
                                                   "so all six tags appear (0 = off; a subset is not comparable "
                                                   "with a full run)")
    geneval_metadata: str = help_field("manifests/geneval/scene_metadata.jsonl", help="GenEval prompt metadata for the eval hook")
    eval_seed: int = help_field(2024, help="seed of held-out scenes and eval noise")
    checkpoint_every: int = help_field(10, help="resumable checkpoint every N steps (and at the end)")
    shuffle_buffer: int = help_field(500, help="webdataset sample shuffle buffer")
    mixed_precision: str = help_field("auto", help="auto (bf16 on CUDA) | no | bf16")
    device: str = help_field("auto", help="auto | cpu | cuda")
    seed: int = help_field(0, help="seed of data order, captions and noise")
    log_with: list[str] = help_field([], help="experiment trackers beside metrics.jsonl, rank 0 only, under RUN/trackers: tensorboard, wandb (offline), mlflow (local)")

    def validate(self) -> None:
        from uae_train.tracking import TRACKERS

        for name in self.log_with:
            if name not in TRACKERS:
                raise ValueError(f"log_with: unknown tracker {name!r} (known: {', '.join(TRACKERS)})")
        if self.prompts not in ("captions", "short"):
            raise ValueError(f"prompts must be captions or short; got {self.prompts!r}")
        if set(self.reward) & set(GENEVAL_TERMS) and self.prompts != "short":
            raise ValueError("reward geneval judges a painting against its GenEval prompt: set prompts: short")
        if self.advantage not in ("flow_grpo", "group"):
            raise ValueError(f"advantage must be flow_grpo or group; got {self.advantage!r}")
        for name in ("steps", "images_per_step", "rollout_steps", "num_iterations", "micro_batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2: a group of one has no relative advantage")
        if not 0 < self.timestep_fraction <= 1:
            raise ValueError("timestep_fraction must be in (0, 1]")
        if self.noise_level <= 0:
            raise ValueError("noise_level must be > 0: an ODE step has no log-probability")


def short_prompts(prompts: list[str | None], corpus: str) -> list[str]:
    """The batch's short prompts (prompts: short); a corpus row without one is an input error."""
    if any(p is None for p in prompts):
        raise InputError(f"{corpus}: prompts: short needs every row's meta.short_caption (scene corpora carry "
                         f"one); this corpus has rows without")
    return list(prompts)


def captions(cfg: Stage2Config, encoder, images, seed: int) -> list[str]:
    sample = cfg.caption_temperature > 0
    return encoder.caption(images, n=1, sample=sample, temperature=cfg.caption_temperature if sample else 1.0,
                           max_new_tokens=cfg.max_new_tokens, seed=seed, batch_size=16)


@torch.no_grad()
def paint(cfg: Stage2Config, encoder, decoder, texts: list[str], seeds: list[int], batch: int = 32):
    out = []
    for i in range(0, len(texts), batch):
        hidden, mask = decoder.reader(encoder).encode_text(texts[i:i + batch], max_length=cfg.max_text_tokens)
        out += decoder.generate(hidden.float(), mask, seeds[i:i + batch], steps=cfg.eval_steps, guidance=cfg.guidance)
    return out


def geneval_subset(metadata: str, n: int, out: Path) -> Path:
    """Every k-th prompt of a GenEval metadata file (all tags kept, as the file is grouped by tag) → out."""
    lines = [line for line in Path(rl.repo_path(metadata)).read_text().splitlines() if line.strip()]
    stride = max(1, -(-len(lines) // n))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines[::stride]) + "\n")
    return out


def geneval_hook(cfg: Stage2Config, encoder, decoder, out: Path, step: int) -> float:
    """GenEval-scene overall on a stratified prompt subset, painted like every eval (CFG, ODE steps)."""
    from uae_eval.geneval import harness as geneval
    from uae_train.evaluation.autoencoder import text_to_image

    meta = geneval_subset(cfg.geneval_metadata, cfg.eval_geneval_prompts, out / "evals" / "geneval_prompts.jsonl")
    gcfg = geneval.GenEvalConfig(metadata=str(meta), images_per_prompt=1, seed=cfg.eval_seed,
                                 image_size=cfg.image_size, save_images=False)
    paint = text_to_image(encoder, decoder, steps=cfg.eval_steps, guidance=cfg.guidance,
                          max_text_tokens=cfg.max_text_tokens)
    res = geneval.run(gcfg, out / "evals" / f"step-{step:06d}" / "geneval", generate=paint,
                      model={"name": f"stage2@{step}", "path": str(out), "config": {}})
    return float(res.metrics["overall"])


def evaluate(cfg: Stage2Config, encoder, decoder, images, scenes, eval_texts, reward, step: int,
             out: Path | None = None) -> dict:
    """Held-out: paint the frozen encoder's captions (fixed seeds, ODE) → reward; and exact scene captions;
    and GenEval-scene on a prompt subset when eval_geneval_prompts > 0."""
    seeds = [cfg.eval_seed + i for i in range(len(images))]
    known = all(s is not None for s in scenes)
    paintings = paint(cfg, encoder, decoder, eval_texts, seeds)
    r = reward(images, paintings, scenes if known else None, eval_texts if cfg.prompts == "short" else None)
    row = {"step": step, "heldout_reward": float(r.mean())}
    row.update({f"heldout_{k}": sum(v) / len(v) for k, v in reward.parts.items()})
    from uae_eval.metrics import build_metric

    # Fidelity monitors in their own units (PSNR in dB, not the reward's /50 part): a detector reward can rise
    # while paintings turn to speckle.
    for name in ("ssim", "psnr"):
        values = build_metric(name)(list(images), paintings)
        row[f"heldout_{name}"] = sum(values) / len(values)
    if known and cfg.prompts == "captions":  # generation from exact long captions: how well the decoder follows text
        exact = [write_caption(s, cfg.eval_seed + i) for i, s in enumerate(scenes)]
        r2 = reward(images, paint(cfg, encoder, decoder, exact, seeds), scenes)
        row["exact_caption_reward"] = float(r2.mean())
    if cfg.eval_geneval_prompts > 0 and out is not None:
        row["geneval_subset"] = geneval_hook(cfg, encoder, decoder, out, step)
    return row


def rollout(cfg: Stage2Config, decoder, context, seeds: list[int]):
    """G·B SDE trajectories: latents (K+1, N, C, h, w), log-probs (K, N), sigmas (K+1,), final images."""
    sigmas = decoder.sigmas(cfg.rollout_steps)
    x = decoder.initial_noise(seeds)
    gens = [torch.Generator().manual_seed(int(s) * 31 + 17) for s in seeds]
    traj, logps = [x], []
    with torch.no_grad():
        for k in range(cfg.rollout_steps):
            v = decoder.velocity_from_context(x, sigmas[k], context, cfg.guidance)
            st = flow_sde.sde_step(v, x, float(sigmas[k]), float(sigmas[k + 1]), cfg.noise_level,
                                   sigma_max=float(sigmas[1]), generator=gens)
            x = st.prev_sample
            traj.append(x)
            logps.append(st.log_prob)
        images = tensor_to_pil(decoder.decode_latents(x))
    return torch.stack(traj), torch.stack(logps), sigmas, images


def update(cfg: Stage2Config, decoder, reference, hidden, mask, traj, old_logps, sigmas, adv, optimizer, params,
           dist=None) -> dict:
    """Clipped objective + β·KL over the trained steps of every trajectory; one optimizer step per iteration.
    Multi-process (`dist`): weights are over the global batch and gradients are summed across ranks."""
    from uae_data import distributed

    dist = dist or distributed.current()
    n_local = traj.shape[1]
    n = int(dist.sum(n_local)[0])
    trained = max(1, int(cfg.rollout_steps * cfg.timestep_fraction))
    chunks = [slice(i, min(n_local, i + cfg.micro_batch)) for i in range(0, n_local, cfg.micro_batch)]
    stats: dict = {}
    for it in range(cfg.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        acc = {"loss": 0.0, "kl": 0.0, "clip_fraction": 0.0, "ratio_mean": 0.0}
        rmin, rmax = float("inf"), float("-inf")
        for k in range(trained):
            for c in chunks:
                w = (c.stop - c.start) / n / trained
                context = decoder.context(hidden[c], mask[c])  # through the trainable connector
                v = decoder.velocity_from_context(traj[k, c], sigmas[k], context, cfg.guidance)
                st = flow_sde.sde_step(v, traj[k, c], float(sigmas[k]), float(sigmas[k + 1]), cfg.noise_level,
                                       sigma_max=float(sigmas[1]), prev_sample=traj[k + 1, c])
                loss, s = grpo.flow_policy_loss(st.log_prob, old_logps[k, c], adv[c], cfg.clip_range, cfg.adv_clip)
                if cfg.beta > 0:
                    with torch.no_grad(), reference() as ref:
                        v_ref = ref.velocity_from_context(traj[k, c], sigmas[k], ref.context(hidden[c], mask[c]),
                                                          cfg.guidance)
                        ref_st = flow_sde.sde_step(v_ref, traj[k, c], float(sigmas[k]), float(sigmas[k + 1]),
                                                   cfg.noise_level, sigma_max=float(sigmas[1]),
                                                   prev_sample=traj[k + 1, c])
                    kl = flow_sde.sde_kl(st.mean, ref_st.mean, st.std).mean()
                    loss = loss + cfg.beta * kl
                    acc["kl"] += w * float(kl.detach())
                (loss * w).backward()
                acc["loss"] += w * float(loss.detach())
                acc["clip_fraction"] += w * s["clip_fraction"]
                acc["ratio_mean"] += w * s["ratio_mean"]
                rmin, rmax = min(rmin, s["ratio_min"]), max(rmax, s["ratio_max"])
        dist.sync_grads(params)
        acc = dict(zip(acc, dist.sum(*acc.values())))
        ends = dist.gather((rmin, rmax))
        rmin, rmax = min(e[0] for e in ends), max(e[1] for e in ends)
        if cfg.grad_clip > 0:
            acc["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        optimizer.step()
        acc.update(ratio_min=rmin, ratio_max=rmax)
        if it == 0:
            stats = {"first_ratio_min": rmin, "first_ratio_max": rmax}
        stats.update(acc)
    return stats


def stage2(cfg: Stage2Config, out: Path, resume: bool = False,
           progress: Callable[[str], object] | None = None) -> dict:
    """Run stage 2 into `out` (encoder/ decoder/ checkpoints/ metrics.jsonl eval.jsonl results/)."""
    import contextlib

    from uae_data import distributed

    out = Path(out)
    init = rl.check_init(cfg.init)
    from uae_train.tracking import check_trackers

    check_trackers(cfg.log_with)
    dist = distributed.setup(cfg.device)
    resume = rl.prepare_run(out, cfg, "stage2", resume, main=dist.main)
    device = dist.device if dist.active else resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    encoder, decoder = rl.load_pair(init, device, decoder_options=cfg.decoder_options)
    for p in encoder.parameters():
        p.requires_grad_(False)
    encoder_digest = rl.parameters_digest(encoder)
    if decoder.has_lora or cfg.beta <= 0:
        frozen = None

        @contextlib.contextmanager
        def reference():
            with decoder.adapter_disabled():
                yield decoder
    else:
        frozen = rl.frozen_copy(decoder)

        @contextlib.contextmanager
        def reference():
            yield frozen
    reward = build_reward(cfg.reward, cfg.reward_options)
    params = decoder.trainable_parameters()
    dist.broadcast_params(params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    ckpt = out / "checkpoints" / "decoder"
    step, seen = rl.restore(out, ckpt, decoder, optimizer, scheduler, resume)
    eval_images, eval_scenes = rl.heldout(cfg.eval_corpus, cfg.eval_images, cfg.eval_seed, cfg.image_size)
    if cfg.prompts == "short":  # held-out short prompts, true of each held-out scene
        from uae_data.short_captions import short_caption

        if any(s is None for s in eval_scenes):
            raise InputError(f"{cfg.eval_corpus}: prompts: short evaluates on scene-world images (eval_corpus: '')")
        eval_texts = [short_caption(s, cfg.eval_seed + i) for i, s in enumerate(eval_scenes)]
    else:
        with autocast(cfg, device):
            eval_texts = captions(cfg, encoder, eval_images, cfg.eval_seed)
    stream = rl.train_stream(Path(cfg.corpus), cfg.shuffle_buffer, cfg.seed, seen)
    eval_rows = rl.read_jsonl(out / "eval.jsonl")
    lo, hi = dist.bounds(cfg.images_per_step, "images_per_step")  # this rank's whole groups

    def held_out_eval(at: int) -> dict:
        with autocast(cfg, device):
            return evaluate(cfg, encoder, decoder, eval_images, eval_scenes, eval_texts, reward, at, out)

    main = dist.main
    with (progress("stage2 (decoder policy)") if progress and main else contextlib.nullcontext()) as update_bar, \
            rl.RunLog(out, cfg, "stage2", dist, eval_rows) as records:
        if step == 0 and not eval_rows:
            records.evaluate(held_out_eval, 0)
        while step < cfg.steps:
            t0 = time.perf_counter()
            all_images, all_scenes, all_short = rl.global_batch(stream, cfg.images_per_step, cfg.image_size)
            seen += len(all_images)
            images = all_images[lo:hi]
            G = cfg.group_size
            base = cfg.seed * 1_000_003 + step * 7_919
            with autocast(cfg, device):
                texts = (short_prompts(all_short[lo:hi], cfg.corpus) if cfg.prompts == "short"
                         else captions(cfg, encoder, images, rl.rank_seed(base, dist.rank)))
                with torch.no_grad():
                    hidden, mask = decoder.reader(encoder).encode_text(texts, max_length=cfg.max_text_tokens)
                hidden = hidden.float().repeat_interleave(G, 0)  # (b·G, T, H): row i·G+g = caption i
                mask = mask.repeat_interleave(G, 0)
                seeds = [base + lo * G + j for j in range(len(images) * G)]  # every painting its own noise
                decoder.eval()
                with torch.no_grad():
                    context = decoder.context(hidden, mask)
                traj, logps, sigmas, paintings = rollout(cfg, decoder, context, seeds)
                t_roll = time.perf_counter()
                ref_images, ref_scenes = rl.reward_references(all_images, all_scenes, cfg.shuffle_reward_images)
                originals = [im for im in ref_images[lo:hi] for _ in range(G)]
                rep = [s for s in ref_scenes[lo:hi] for _ in range(G)]
                ref_short = rl.reward_references(all_short, all_short, cfg.shuffle_reward_images)[0]  # control: shuffled
                prompts = [t for t in ref_short[lo:hi] for _ in range(G)] if cfg.prompts == "short" else None
                r = reward(originals, paintings, rep if all(s is not None for s in all_scenes) else None, prompts)
                rewards = r.view(len(images), G)  # (b, G)
                adv = (grpo.flow_grpo_advantages(rewards, clip=cfg.adv_clip) if cfg.advantage == "flow_grpo"
                       else grpo.group_advantages(rewards)).flatten().to(device)  # (b·G,), groups whole
                t_rew = time.perf_counter()
                decoder.train()
                st = update(cfg, decoder, reference, hidden, mask, traj, logps, sigmas, adv, optimizer, params, dist)
                decoder.eval()
            scheduler.step()
            step += 1
            now = time.perf_counter()
            all_rewards, parts = rl.gather_rewards(dist, rewards, reward.parts)
            row = {"step": step, "reward_mean": float(all_rewards.mean()), "reward_std": float(all_rewards.std()),
                   "zero_std_groups": grpo.zero_std_fraction(all_rewards),
                   **{f"reward_{k}": float(np.mean(v)) for k, v in parts.items()},
                   **st, "rollout_s": t_roll - t0, "reward_s": t_rew - t_roll, "step_time_s": now - t0,
                   "images_per_s": dist.sum(len(paintings))[0] / max(1e-9, t_roll - t0), "samples_seen": seen}
            records.train(row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                rl.main_only(dist, save_checkpoint, ckpt, decoder, optimizer, scheduler,
                             {"step": step, "samples_seen": seen})
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                records.evaluate(held_out_eval, step)
            if update_bar:
                update_bar(step, cfg.steps, reward=row["reward_mean"])
    if rl.parameters_digest(encoder) != encoder_digest:
        raise RuntimeError("stage2: the frozen encoder changed during training")
    return rl.main_only(dist, rl.finish, out, "stage2", cfg, encoder, decoder, eval_rows, step, init, "decoder") or {}
