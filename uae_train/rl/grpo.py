"""GRPO math as pure functions: group advantages, the clipped policy loss and the k3 KL.

Two conventions live here, both written to match their reference code line for line:
- TRL GRPO (huggingface/trl f2cd577, trl/trainer/grpo_trainer.py) for the caption policy (Gen→Und): token-level
  ratios, Bessel-corrected group std, `loss_type` aggregations.
- Flow-GRPO (yifan123/flow_grpo, scripts/train_sd3.py, flow_grpo/stat_tracking.py) for the DiT policy (Und→Gen):
  one log-prob per denoising step, batch-global std (ddof 0), advantages clipped to ±5, clip_range 1e-4.

Rewards are laid out (B, G): row b holds the G rollouts of prompt b (TRL's contiguous blocks of
`num_generations`, i.e. `rewards.view(-1, G)`). Nothing here divides by grad-accumulation steps: callers do.
"""
from __future__ import annotations

import torch
from torch import Tensor

SCALES = ("group", "batch", "none")
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
STAT_KEYS = ("clip_fraction", "ratio_mean", "ratio_min", "ratio_max", "kl")


def _check_rewards(rewards: Tensor) -> Tensor:
    if rewards.ndim != 2:
        raise ValueError(f"rewards must be (B, G), got shape {tuple(rewards.shape)}; reshape with .view(-1, G)")
    return rewards if rewards.is_floating_point() else rewards.float()


def group_advantages(rewards: Tensor, scale: str = "group", eps: float = 1e-4) -> Tensor:
    """TRL's advantages (B, G): (r − group mean) / (std + eps).

    scale="group": each group's unbiased std (TRL default); "batch": the unbiased std of all B·G rewards, still
    with group means; "none": no division (Dr. GRPO). A group of one has no baseline, so its advantage is 0.
    Groups whose rewards are all equal get A = 0 under every scale (only a KL term can move them).
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    rewards = _check_rewards(rewards)  # (B, G)
    if rewards.shape[1] <= 1:
        return torch.zeros_like(rewards)
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (B, G)
    if scale == "none":
        return centred
    std = rewards.std(dim=1, keepdim=True) if scale == "group" else rewards.std()  # (B, 1) or ()
    return centred / (std + eps)


def zero_std_fraction(rewards: Tensor, atol: float = 1e-8) -> float:
    """Share of groups (rows) whose G rewards are all equal (within atol): those carry no GRPO signal.

    TRL logs the same number as `frac_reward_zero_std`. A group of one counts as zero spread; B = 0 gives 0.0.
    """
    rewards = _check_rewards(rewards)
    if rewards.shape[0] == 0:
        return 0.0
    spread = rewards.amax(dim=1) - rewards.amin(dim=1)  # (B,)
    return (spread <= atol).float().mean().item()


def flow_grpo_advantages(rewards: Tensor, eps: float = 1e-4, clip: float = 5.0) -> Tensor:
    """Flow-GRPO's advantages (B, G): (r − per-prompt mean) / (std of all rewards, ddof 0, + eps), clipped ±clip.

    Flow-GRPO's PerPromptStatTracker with global_std=True groups by prompt string; here row b is prompt b.
    """
    rewards = _check_rewards(rewards)  # (B, G)
    if rewards.numel() == 0:
        return rewards.clone()
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (B, G)
    std = rewards.std(correction=0)  # () global, as np.std
    return (centred / (std + eps)).clamp(-clip, clip)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Schulman's k3 estimate of KL(π_θ ‖ π_ref) per element: exp(ref−θ) − (ref−θ) − 1 (TRL's per_token_kl).

    Non-negative, exactly 0 where logp == ref_logp, unbiased when logp are samples from π_θ.
    """
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def _masked_stats(ratio: Tensor, clipped: Tensor, active: Tensor, kl: Tensor | None) -> dict[str, float]:
    """Logging stats over active elements only. With no active element ratios read 1.0 (nothing moved)."""
    with torch.no_grad():
        n = int(active.sum().item())
        if n == 0:
            return {"clip_fraction": 0.0, "ratio_mean": 1.0, "ratio_min": 1.0, "ratio_max": 1.0, "kl": 0.0}
        r = ratio[active]
        return {
            "clip_fraction": clipped[active].float().mean().item(),
            "ratio_mean": r.mean().item(),
            "ratio_min": r.min().item(),
            "ratio_max": r.max().item(),
            "kl": kl[active].mean().item() if kl is not None else 0.0,
        }


def policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, eps_low: float = 0.2,
                eps_high: float | None = None, loss_type: str = "dapo", ref_logp: Tensor | None = None,
                beta: float = 0.0, max_completion_length: int | None = None, delta: float | None = None,
                num_items_in_batch: float | Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """TRL's clipped GRPO loss → (scalar loss, stats). Shapes: logp, old_logp, mask, ref_logp (B, T); advantages (B,).

    Per token: ρ = exp(logp − old_logp), loss = −min(ρ·A, clip(ρ, 1−eps_low, 1+eps_high)·A), plus β·k3 when
    beta > 0 and ref_logp is given. `delta` caps ρ from above in the unclipped branch (TRL's two-sided
    clipping, from INTELLECT-2); it must exceed 1 + eps_high.
    Aggregation over the mask (padding and tokens after EOS must be 0):
    - "grpo": token mean per sequence, then mean over sequences (long answers weigh less per token);
    - "bnpo": masked sum / active tokens of this batch;
    - "dr_grpo": masked sum / (B · max_completion_length), max_completion_length defaulting to T;
    - "dapo": masked sum / num_items_in_batch, default the active tokens of this batch. Across grad-accum
      micro-batches pass the active-token count of the whole generation batch (under DDP divided by the world size,
      as TRL does): then summing micro-batch losses equals the loss of the whole batch, however it is split.
    Stats (floats, over active tokens): clip_fraction = share where the clipped branch was taken (ρ < 1−eps_low
    with A < 0, or ρ > 1+eps_high with A > 0; TRL's low + high clip ratio), ratio_mean/min/max of the raw ρ, and
    kl = mean k3, computed whenever ref_logp is given (even at beta = 0, for logging), else 0.0.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if logp.ndim != 2 or old_logp.shape != logp.shape or mask.shape != logp.shape:
        raise ValueError(f"logp, old_logp and mask must share one (B, T) shape, got {tuple(logp.shape)}, "
                         f"{tuple(old_logp.shape)}, {tuple(mask.shape)}")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must be (B,) = {tuple(logp.shape[:1])}, got {tuple(advantages.shape)}")
    eps_high = eps_low if eps_high is None else eps_high
    if delta is not None and delta <= 1 + eps_high:
        raise ValueError(f"delta must exceed 1 + eps_high = {1 + eps_high}, got {delta}")
    batch, length = logp.shape
    adv = advantages.to(logp.dtype).unsqueeze(1)  # (B, 1)
    weight = mask.to(logp.dtype)  # (B, T)
    active = mask.bool()  # (B, T)

    ratio = torch.exp(logp - old_logp.detach())  # (B, T)
    clipped_ratio = ratio.clamp(1 - eps_low, 1 + eps_high)  # (B, T)
    unclipped_ratio = ratio.clamp(max=delta) if delta is not None else ratio
    per_token = -torch.min(unclipped_ratio * adv, clipped_ratio * adv)  # (B, T)
    kl = None
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp.detach())  # (B, T)
        if beta != 0.0:
            per_token = per_token + beta * kl

    masked_sum = (per_token * weight).sum()
    if loss_type == "grpo":
        loss = ((per_token * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)).mean()
    elif loss_type == "dr_grpo":
        loss = masked_sum / (batch * (max_completion_length or length))
    elif loss_type == "dapo" and num_items_in_batch is not None:
        loss = masked_sum / num_items_in_batch
    else:  # bnpo, and dapo on a single (not split) batch
        loss = masked_sum / weight.sum().clamp(min=1.0)

    clipped = ((ratio < 1 - eps_low) & (adv < 0)) | ((ratio > 1 + eps_high) & (adv > 0))  # (B, T)
    return loss, _masked_stats(ratio, clipped, active, kl)


def flow_policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, clip_range: float = 1e-4,
                     adv_clip: float = 5.0) -> tuple[Tensor, dict[str, float]]:
    """Flow-GRPO's loss for one denoising step → (scalar, stats); logp, old_logp, advantages are (B,).

    mean(max(−A·ρ, −A·clip(ρ, 1 ± clip_range))) with A clipped to ±adv_clip (train_sd3.py). This is
    `policy_loss` with T = 1 and a symmetric clip, so the stats keys and clip_fraction mean the same thing
    (clipped branch taken; Flow-GRPO's own logged clipfrac counts |ρ − 1| > clip_range whatever the sign of A).
    kl is 0.0: the Flow-GRPO KL is a latent-mean distance, see flow_sde.sde_kl.
    """
    if logp.ndim != 1 or old_logp.shape != logp.shape or advantages.shape != logp.shape:
        raise ValueError(f"logp, old_logp and advantages must all be (B,), got {tuple(logp.shape)}, "
                         f"{tuple(old_logp.shape)}, {tuple(advantages.shape)}")
    adv = advantages.clamp(-adv_clip, adv_clip)
    ones = torch.ones_like(logp).unsqueeze(1)  # (B, 1)
    return policy_loss(logp.unsqueeze(1), old_logp.unsqueeze(1), adv, ones, eps_low=clip_range,
                       eps_high=clip_range, loss_type="grpo")
