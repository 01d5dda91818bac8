"""The one Unified-GRPO loop; stage 1 (encoder policy) and stage 2 (decoder policy) are hooks into it.

Why one loop: run folder, resume, held-out evals, checkpoints, logs, progress and the frozen-model check
are the same for both stages; only what a step does (rollouts, reward, update) and what an eval measures
differ. A stage is an `RLStage`: it sets itself up from the loaded (encoder, decoder), then per step
turns the global batch into rewards and an update. Every random draw of step s is seeded by (seed, s),
so a resumed run continues bit for bit on CPU.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from uae_data import distributed
from uae_data.core.device import resolve_device
from uae_data.core.io import read_jsonl
from uae_train.rl import grpo
from uae_train.models.factory import load_pair
from uae_train.training import data, run_folder
from uae_train.training.checkpoint import save_checkpoint
from uae_train.training.loader import global_batches, resolve_workers
from uae_train.training.precision import autocast
from uae_train.training.schedules import constant_schedule

log = logging.getLogger(__name__)


@dataclass
class RLContext:
    """What a stage's hooks share with the loop: config, run folder, device, processes, this rank's slice
    [lo, hi) of each global batch, the reward, the policy's optimizer and parameters, the held-out images."""

    cfg: Any
    out: Path
    device: torch.device
    dist: Any
    reward: Callable | None = None
    optimizer: Any = None
    params: list = field(default_factory=list)
    eval_images: list = field(default_factory=list)
    eval_scenes: list = field(default_factory=list)
    lo: int = 0
    hi: int = 0


@dataclass
class StepResult:
    """One step's outcome: this rank's (b, G) rewards and their parts, the update's stats, the rollout and
    reward times (seconds) and any stage-specific log fields."""

    rewards: torch.Tensor
    parts: dict[str, list[float]]
    stats: dict
    rollout_s: float
    reward_s: float
    extra: dict = field(default_factory=dict)


class RLStage(Protocol):
    name: str  # "stage1": the run kind, checkpoint log name and bar label
    policy_part: str  # "encoder" | "decoder": the trained model (checkpoints/<policy_part>)

    def setup(self, ctx: RLContext, encoder, decoder) -> tuple[Any, Any]:
        """Freeze what stays frozen, build frozen copies; return (policy, frozen model)."""

    def prepare_eval(self, ctx: RLContext) -> None:
        """Anything the held-out evals need computed once (after the held-out images are drawn)."""

    def evaluate(self, ctx: RLContext, step: int) -> dict:
        """One held-out eval row {step, heldout_reward, ...}."""

    def step(self, ctx: RLContext, batch: tuple, base_seed: int, step: int) -> StepResult:
        """Rollouts of this rank's groups, rewards, advantages and the policy update."""

    def keep(self, cfg: Any) -> Callable[[dict], bool] | None:
        """Which corpus samples the stage trains on (None: all), decided before resume counts them."""


def frozen_copy(module: Any) -> Any:
    """A deep copy with gradients off: the reference policy / the frozen text reader."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin.eval()


def parameters_digest(module: Any) -> float:
    """Cheap fingerprint of every parameter (sum of |w|·k): a frozen module must keep it bit for bit."""
    total = 0.0
    for i, p in enumerate(module.parameters()):
        total += float(p.detach().double().abs().sum()) * (1 + i % 7)
    return total


def gather_rewards(dist, rewards: torch.Tensor, parts: dict[str, list]) -> tuple[torch.Tensor, dict[str, list]]:
    """The global batch's (B, G) rewards and reward parts, in rank order (= the 1-process batch order)."""
    got = dist.gather((rewards.detach().cpu(), {k: [float(x) for x in v] for k, v in parts.items()}))
    return torch.cat([r for r, _ in got]), {k: [x for _, p in got for x in p[k]] for k in parts}


def run(stage: RLStage, cfg: Any, out: Path, resume: bool = False,
        progress: Callable[[str], object] | None = None, encoder_lora: dict | None = None,
        decoder_options: dict | None = None) -> dict:
    """Run `stage` into `out` (encoder/ decoder/ checkpoints/ metrics.jsonl eval.jsonl results/)."""
    from uae_train.rl.rewards import build_reward
    from uae_train.tracking import check_trackers

    out = Path(out)
    init = run_folder.check_init(cfg.init)
    check_trackers(cfg.log_with)
    dist = distributed.setup(cfg.device)
    resume = run_folder.prepare_run(out, cfg, stage.name, resume, main=dist.main)
    device = dist.device if dist.active else resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    encoder, decoder = load_pair(init, device, encoder_lora=encoder_lora, decoder_options=decoder_options)
    ctx = RLContext(cfg=cfg, out=out, device=device, dist=dist)
    policy, frozen = stage.setup(ctx, encoder, decoder)
    frozen_digest = parameters_digest(frozen)
    ctx.reward = build_reward(cfg.reward, cfg.reward_options)
    ctx.params = params = policy.trainable_parameters()
    dist.broadcast_params(params)
    ctx.optimizer = optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = constant_schedule(optimizer)
    ckpt = out / "checkpoints" / stage.policy_part
    step, seen = run_folder.restore(out, ckpt, policy, optimizer, scheduler, resume)
    ctx.eval_images, ctx.eval_scenes = data.heldout(cfg.eval_corpus, cfg.eval_images, cfg.eval_seed, cfg.image_size)
    stage.prepare_eval(ctx)
    eval_rows = read_jsonl(out / "eval.jsonl")
    ctx.lo, ctx.hi = dist.bounds(cfg.images_per_step, "images_per_step")  # this rank's whole groups
    # the images this rank decodes: its own, and the next one for the shuffled-reward control (shift_by_one)
    need = {*range(ctx.lo, ctx.hi), *([ctx.hi % cfg.images_per_step] if cfg.shuffle_reward_images else [])}
    batches = global_batches(Path(cfg.corpus), cfg.shuffle_buffer, cfg.seed, seen, stage.keep(cfg),
                             cfg.images_per_step, cfg.image_size, need, resolve_workers(cfg.loader_workers, device))

    def held_out_eval(at: int) -> dict:
        with autocast(cfg, device):
            return stage.evaluate(ctx, at)

    bar = progress(f"{stage.name} ({stage.policy_part} policy)") if progress and dist.main else contextlib.nullcontext()
    warned = False
    with bar as update_bar, run_folder.RunLog(out, cfg, stage.name, dist, eval_rows) as records, batches as stream:
        if step == 0 and not eval_rows:
            records.evaluate(held_out_eval, 0)
        while step < cfg.steps:
            t0 = time.perf_counter()
            batch = data.batch_fields(*next(stream))  # every image this rank uses decoded, None elsewhere
            seen += len(batch[0])
            with autocast(cfg, device):
                res = stage.step(ctx, batch, cfg.seed * 1_000_003 + step * 7_919, step)
            scheduler.step()
            step += 1
            all_rewards, parts = gather_rewards(dist, res.rewards, res.parts)
            row = {"step": step, "reward_mean": float(all_rewards.mean()), "reward_std": float(all_rewards.std()),
                   "zero_std_groups": grpo.zero_std_fraction(all_rewards),
                   **{f"reward_{k}": sum(v) / len(v) for k, v in parts.items()}, **res.stats,
                   "rollout_s": res.rollout_s, "reward_s": res.reward_s, "step_time_s": time.perf_counter() - t0,
                   **res.extra, "samples_seen": seen}
            if row["zero_std_groups"] == 1.0 and dist.main and not warned:
                warned = True  # once a run: the constant-reward control has no signal by design
                log.warning("%s step %d: every group's rewards are equal: no signal", stage.name, step)
            records.train(row)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                run_folder.main_only(dist, save_checkpoint, ckpt, policy, optimizer, scheduler,
                                     {"step": step, "samples_seen": seen})
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                records.evaluate(held_out_eval, step)
            if update_bar:
                update_bar(step, cfg.steps, reward=row["reward_mean"])
    if parameters_digest(frozen) != frozen_digest:
        raise RuntimeError(f"{stage.name}: the frozen {'decoder' if stage.policy_part == 'encoder' else 'encoder'} "
                           "changed during training")
    return run_folder.main_only(dist, run_folder.finish, out, stage.name, cfg, encoder, decoder, eval_rows, step,
                                init, stage.policy_part) or {}
