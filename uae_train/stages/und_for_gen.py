"""Unified-GRPO stage 2, understanding for generation (`uae train stage2`): the decoder is the policy.

Per step: B images; the frozen encoder captions each; the decoder paints G images per caption through
Flow-GRPO's SDE sampler (`flow_sde.sde_step`: every step Gaussian, so every step has a log-prob), with
fewer rollout steps than inference steps; reward = similarity(original, painting); advantages as
Flow-GRPO (per-group mean, batch std, clipped) or TRL's per-group; then, for the trained steps of each
trajectory, the clipped objective on the stored transitions plus β·KL to the reference decoder (the
initial weights: LoRA disabled, or a frozen copy for a full fine-tune). `algorithm: nft` paints with the
ODE sampler instead and trains DiffusionNFT's loss on the clean paintings (`flow_nft.py`); the updates live
in `stage2_updates.py`. No library does GRPO for diffusers models, so this stage is ours: hooks (`Stage2`)
into the shared RL loop (`uae_train.training.rl_loop`); the formulas are tested in grpo.py / flow_sde.py /
flow_nft.py.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from uae_data.core.config import check_options, config_kind, help_field, require_at_least_one
from uae_data.core.errors import InputError
from uae_data.core.paths import shipped
from uae_data.scenes import write_caption
from uae_train.rl import flow_sde, grpo
from uae_train.models.image_tensors import tensor_to_pil
from uae_train.models.painting import paint
from uae_train.rl.rewards import CAPTION_TERMS, GENEVAL_TERMS
from uae_train.stages.stage2_updates import trained_steps, update, update_nft
from uae_train.training import data, rl_loop
from uae_train.training.config import RLConfig


@config_kind("stage2")
@dataclass
class Stage2Config(RLConfig):
    images_per_step: int = help_field(4, help="B: captions (images) per step")
    group_size: int = help_field(8, help="G: paintings per caption (Flow-GRPO: 24)")
    micro_batch: int = help_field(32, help="images per training forward (memory knob)")
    lr: float = help_field(1e-4, help="AdamW lr (Flow-GRPO LoRA: 3e-4; UAE unknown)")
    weight_decay: float = help_field(1e-4, help="AdamW weight decay (Flow-GRPO: 1e-4)")
    rollout_steps: int = help_field(10, help="SDE steps per rollout (Flow-GRPO: 10 for training, 40 ODE for eval)")
    noise_level: float = help_field(0.7, help="a in σ_t = a·√(t/(1−t)) (Flow-GRPO: 0.7)")
    timestep_fraction: float = help_field(0.99, help="share of rollout steps trained (Flow-GRPO 0.99: 9 of 10)")
    ode_after_trained: bool = help_field(False, help="steps after the trained ones are ODE steps, so a group's "
                                                     "spread comes only from steps the update trains")
    group_noise: str = help_field("independent", help="starting latent of a group's paintings: independent (Flow-GRPO) "
                                                      "| shared (DanceGRPO's init_same_noise)")
    guidance: float = help_field(1.0, help="CFG inside the policy (Flow-GRPO 4.5 on SD3.5; 1 = off for the tiny decoder)")
    algorithm: str = help_field("flow_grpo", help="flow_grpo (SDE rollouts, clipped log-prob objective) | nft "
                                                  "(DiffusionNFT: ODE rollouts, advantage-signed flow matching on "
                                                  "the paintings; flow_nft.py)")
    nft_beta: float = help_field(1.0, help="DiffusionNFT's β: v⁺ = β·v_θ + (1 − β)·v_old (algorithm: nft)")
    advantage: str = help_field("flow_grpo", help="flow_grpo (group mean, batch std, ±5 clip) | group (TRL)")
    clip_range: float = help_field(1e-4, help="ρ clip (Flow-GRPO: 1e-4)")
    adv_clip: float = help_field(5.0, help="advantage clip (Flow-GRPO: 5)")
    beta: float = help_field(0.04, help="KL weight to the reference decoder (Flow-GRPO: 0.04 GenEval, 0.01 PickScore)")
    caption_temperature: float = help_field(0.0, help="frozen encoder's caption sampling temperature (0 = greedy)")
    prompts: str = help_field("captions", help="what the decoder paints from: captions (UAE: the frozen encoder's "
                                               "caption of each image) | short (each image's short GenEval-template "
                                               "prompt from the corpus, for the geneval reward: Flow-GRPO's GenEval task)")
    train_on_eval_prompts: bool = help_field(False, help="prompts: short: also train on corpus rows whose prompt is "
                                                          "one of geneval_metadata's (off: those rows are skipped, "
                                                          "so GenEval-scene scores prompts stage 2 never painted)")
    decoder_options: dict = help_field({}, help="decoder load options, e.g. {lora_rank: 32} (LoRA policy; reference = adapter off)")
    eval_steps: int = help_field(20, help="ODE steps of eval paintings")
    eval_geneval_prompts: int = help_field(0, help="GenEval-scene prompts painted at every eval, every k-th of the 553 "
                                                   "so all six tags appear (0 = off; a subset is not comparable "
                                                   "with a full run)")
    geneval_metadata: str = help_field("manifests/geneval/scene_metadata.jsonl", help="GenEval prompt metadata for the eval hook")

    def validate(self) -> None:
        super().validate()
        if self.prompts not in ("captions", "short"):
            raise ValueError(f"prompts must be captions or short; got {self.prompts!r}")
        if self.prompts == "short" and self.eval_corpus:
            raise ValueError("prompts: short evaluates on held-out scene-world prompt scenes; set eval_corpus: ''")
        if set(self.reward) & set(GENEVAL_TERMS) and self.prompts != "short":
            raise ValueError("reward geneval judges a painting against its GenEval prompt: set prompts: short")
        if set(self.reward) & set(CAPTION_TERMS):
            raise ValueError(f"reward {sorted(set(self.reward) & set(CAPTION_TERMS))[0]} pays for the encoder's captions: "
                             "a stage-1 control, not a stage-2 reward")
        if self.group_noise not in ("independent", "shared"):
            raise ValueError(f"group_noise must be independent or shared; got {self.group_noise!r}")
        if self.advantage not in ("flow_grpo", "group"):
            raise ValueError(f"advantage must be flow_grpo or group; got {self.advantage!r}")
        require_at_least_one(self, "rollout_steps")
        if not 0 < self.timestep_fraction <= 1:
            raise ValueError("timestep_fraction must be in (0, 1]")
        if self.algorithm not in ("flow_grpo", "nft"):
            raise ValueError(f"algorithm must be flow_grpo or nft; got {self.algorithm!r}")
        if self.algorithm == "flow_grpo" and self.noise_level <= 0:
            raise ValueError("noise_level must be > 0: an ODE step has no log-probability")
        if self.algorithm == "nft" and self.nft_beta <= 0:
            raise ValueError(f"nft_beta must be > 0; got {self.nft_beta}")
        from uae_train.models.decoder import Decoder, DecoderConfig

        check_options("decoder_options", self.decoder_options, Decoder.from_pretrained, DecoderConfig,
                      exclude=("name_or_path", "text_hidden_size", "device", "seed"))


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


def paint_eval(cfg: Stage2Config, encoder, decoder, texts: list[str], seeds: list[int]):
    """Held-out paintings: ODE sampling with the eval steps and the policy's CFG."""
    return paint(decoder.reader(encoder), decoder, texts, seeds, cfg.eval_steps, cfg.guidance, cfg.max_text_tokens)


def geneval_subset(metadata: str, n: int, out: Path) -> Path:
    """Every k-th prompt of a GenEval metadata file (all tags kept, as the file is grouped by tag) → out."""
    lines = [line for line in shipped(metadata).read_text().splitlines() if line.strip()]
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
    paintings = paint_eval(cfg, encoder, decoder, eval_texts, seeds)
    r, parts = reward(images, paintings, scenes if known else None, eval_texts if cfg.prompts == "short" else None)
    row = {"step": step, "heldout_reward": float(r.mean())}
    row.update({f"heldout_{k}": sum(v) / len(v) for k, v in parts.items()})
    from uae_eval.metrics import build_metric

    # Fidelity monitors in their own units (PSNR in dB, not the reward's /50 part): a detector reward can rise
    # while paintings turn to speckle.
    for name in ("ssim", "psnr"):
        values = build_metric(name)(list(images), paintings)
        row[f"heldout_{name}"] = sum(values) / len(values)
    if known and cfg.prompts == "captions":  # generation from exact long captions: how well the decoder follows text
        exact = [write_caption(s, cfg.eval_seed + i) for i, s in enumerate(scenes)]
        r2, _ = reward(images, paint_eval(cfg, encoder, decoder, exact, seeds), scenes)
        row["exact_caption_reward"] = float(r2.mean())
    if cfg.eval_geneval_prompts > 0 and out is not None:
        row["geneval_subset"] = geneval_hook(cfg, encoder, decoder, out, step)
    return row


def rollout_warning(rollout_reward: float, heldout_reward: float) -> str | None:
    """A line when the SDE rollouts score far below the ODE paintings of the start eval, else None.

    Why: the policy learns only from its rollouts. At CFG 8, Flow-GRPO's noise level 0.7 with 6 steps left visible
    noise in every rollout (scene-soft 0.05 where ODE paintings score 1.0), and stage 2 then learns from noise.
    The two means are over different images (a training batch, the held-out set), so only a large gap is flagged.
    """
    if heldout_reward > 0.2 and rollout_reward < 0.5 * heldout_reward:
        return (f"stage2: the first step's SDE rollouts score {rollout_reward:.3f} where the start eval's ODE paintings "
                f"score {heldout_reward:.3f}; the policy would learn from broken paintings: lower noise_level or raise "
                f"rollout_steps (docs/scene-world-learning.md)")
    return None


def rollout(cfg: Stage2Config, decoder, context, seeds: list[int], noise_seeds: list[int] | None = None,
            ode: bool = False):
    """G·B SDE trajectories: latents (K+1, N, C, h, w), log-probs (K, N), sigmas (K+1,), final images.
    `seeds` drive each trajectory's SDE noise; `noise_seeds` (default: `seeds`) its starting latent; `ode`:
    every step an ODE step (log-probs 0), the eval's sampler, for algorithm nft."""
    sigmas, trained = decoder.sigmas(cfg.rollout_steps), trained_steps(cfg)
    x = decoder.initial_noise(noise_seeds if noise_seeds is not None else seeds)
    gens = [torch.Generator().manual_seed(int(s) * 31 + 17) for s in seeds]
    traj, logps = [x], []
    with torch.no_grad():
        for k in range(cfg.rollout_steps):
            v = decoder.velocity_from_context(x, sigmas[k], context, cfg.guidance)
            a = 0.0 if ode or (k >= trained and cfg.ode_after_trained) else cfg.noise_level  # 0: an ODE step
            st = flow_sde.sde_step(v, x, float(sigmas[k]), float(sigmas[k + 1]), a,
                                   sigma_max=float(sigmas[1]), generator=gens)
            x = st.prev_sample
            traj.append(x)
            logps.append(st.log_prob)
        images = tensor_to_pil(decoder.decode_latents(x))
    return torch.stack(traj), torch.stack(logps), sigmas, images


def eval_prompt_filter(metadata: str) -> Callable[[dict], bool]:
    """A corpus-sample filter that drops rows whose short prompt is one of a GenEval metadata file's prompts."""
    from uae_eval.geneval.prompts import load_metadata

    held = {m["prompt"].strip().lower() for m in load_metadata(shipped(metadata))}

    def keep(sample: dict) -> bool:
        prompt = (sample.get("meta") or {}).get("short_caption")
        return prompt is None or prompt.strip().lower() not in held
    return keep


class Stage2:
    """Stage 2's hooks into the RL loop: the frozen encoder captions each image (or the corpus gives its short
    prompt), the decoder paints G images per text through the SDE sampler, the reward scores each painting."""

    name, policy_part = "stage2", "decoder"

    def keep(self, cfg: Stage2Config) -> Callable[[dict], bool] | None:
        """prompts: short trains on prompts GenEval-scene does not score, unless train_on_eval_prompts."""
        if cfg.prompts != "short" or cfg.train_on_eval_prompts:
            return None
        return eval_prompt_filter(cfg.geneval_metadata)

    def setup(self, ctx: rl_loop.RLContext, encoder, decoder):
        self.encoder, self.decoder = encoder, decoder
        self.start_reward: float | None = None  # the step-0 eval's reward; evals run on the main rank only
        for p in encoder.parameters():
            p.requires_grad_(False)
        if decoder.has_lora or ctx.cfg.beta <= 0:
            @contextlib.contextmanager
            def reference():
                with decoder.adapter_disabled():
                    yield decoder
        else:
            frozen = rl_loop.frozen_copy(decoder)

            @contextlib.contextmanager
            def reference():
                yield frozen
        self.reference = reference
        return decoder, encoder

    def prepare_eval(self, ctx: rl_loop.RLContext) -> None:
        cfg = ctx.cfg
        if cfg.prompts == "short":  # held-out framed prompt scenes and their prompts (validate: no eval_corpus)
            ctx.eval_images, ctx.eval_scenes, self.eval_texts = data.heldout_prompts(cfg.eval_images, cfg.eval_seed,
                                                                                     cfg.image_size)
        else:
            from uae_train.training.precision import autocast

            with autocast(cfg, ctx.device):
                self.eval_texts = captions(cfg, self.encoder, ctx.eval_images, cfg.eval_seed)

    def evaluate(self, ctx: rl_loop.RLContext, step: int) -> dict:
        row = evaluate(ctx.cfg, self.encoder, self.decoder, ctx.eval_images, ctx.eval_scenes, self.eval_texts,
                       ctx.reward, step, ctx.out)
        if step == 0:
            self.start_reward = row["heldout_reward"]
        return row

    def step(self, ctx: rl_loop.RLContext, batch: tuple, base: int, step: int) -> rl_loop.StepResult:
        cfg, dist, lo, hi, decoder = ctx.cfg, ctx.dist, ctx.lo, ctx.hi, self.decoder
        all_images, all_scenes, all_short = batch
        images, G = all_images[lo:hi], cfg.group_size
        t0 = time.perf_counter()
        texts = (short_prompts(all_short[lo:hi], cfg.corpus) if cfg.prompts == "short"
                 else captions(cfg, self.encoder, images, data.rank_seed(base, dist.rank)))
        with torch.no_grad():
            hidden, mask = decoder.reader(self.encoder).encode_text(texts, max_length=cfg.max_text_tokens)
        hidden = hidden.float().repeat_interleave(G, 0)  # (b·G, T, H): row i·G+g = caption i
        mask = mask.repeat_interleave(G, 0)
        seeds = [base + lo * G + j for j in range(len(images) * G)]  # every painting its own SDE noise
        starts = seeds if cfg.group_noise == "independent" else [seeds[j - j % G] for j in range(len(seeds))]
        decoder.eval()
        with torch.no_grad():
            context = decoder.context(hidden, mask)
        nft = cfg.algorithm == "nft"
        traj, logps, sigmas, paintings = rollout(cfg, decoder, context, seeds, starts, ode=nft)
        t_roll = time.perf_counter()
        shuffle = cfg.shuffle_reward_images
        originals = [im for im in data.shift_by_one(all_images, shuffle)[lo:hi] for _ in range(G)]
        rep = [s for s in data.shift_by_one(all_scenes, shuffle)[lo:hi] for _ in range(G)]
        prompts = ([t for t in data.shift_by_one(all_short, shuffle)[lo:hi] for _ in range(G)]  # control: shuffled
                   if cfg.prompts == "short" else None)
        r, parts = ctx.reward(originals, paintings, rep if all(s is not None for s in all_scenes) else None, prompts)
        rewards = r.view(len(images), G)  # (b, G)
        if step == 1 and self.start_reward is not None and not shuffle:  # no collective: the main rank's rollouts
            line = rollout_warning(float(r.mean()), self.start_reward)
            if line:
                logging.getLogger(__name__).warning(line)
        adv = (grpo.flow_grpo_advantages(rewards, clip=cfg.adv_clip) if cfg.advantage == "flow_grpo"
               else grpo.group_advantages(rewards)).flatten().to(ctx.device)  # (b·G,), groups whole
        t_rew = time.perf_counter()
        decoder.train()
        if nft:
            st = update_nft(cfg, decoder, self.reference, hidden, mask, traj[-1], sigmas, adv, ctx.optimizer,
                            ctx.params, dist, seed=base * 7919 + lo)
        else:
            st = update(cfg, decoder, self.reference, hidden, mask, traj, logps, sigmas, adv, ctx.optimizer,
                        ctx.params, dist)
        decoder.eval()
        return rl_loop.StepResult(rewards, parts, st, t_roll - t0, t_rew - t_roll,
                                  {"images_per_s": dist.sum(len(paintings))[0] / max(1e-9, t_roll - t0)})


def stage2(cfg: Stage2Config, out: Path, resume: bool = False,
           progress: Callable[[str], object] | None = None) -> dict:
    """Run stage 2 into `out` (encoder/ decoder/ checkpoints/ metrics.jsonl eval.jsonl results/)."""
    return rl_loop.run(Stage2(), cfg, out, resume, progress, decoder_options=cfg.decoder_options)
