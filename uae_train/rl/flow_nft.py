"""DiffusionNFT's policy loss (Zheng et al. 2025, arXiv 2509.16117), stage 2's alternative to Flow-GRPO.

Flow-GRPO learns from the log-probabilities of SDE steps: each sample's gradient points along the Gaussian
noise that step drew, so the update is a noisy estimate in latent space, and the within-group spread that
the starting latent causes cannot be credited at all. DiffusionNFT learns on the forward process instead:
every clean painting x0 is re-noised (x_t = (1 − σ)·x0 + σ·ε) and the policy's velocity is regressed
towards it when the painting scored above its group and away from it when below, through an implicit
positive policy v⁺ = β·v_θ + (1 − β)·v_old and an implicit negative one v⁻ = (1 + β)·v_old − β·v_θ:

    loss = [r·‖x̂(v⁺) − x0‖² / w⁺ + (1 − r)·‖x̂(v⁻) − x0‖² / w⁻] / β,   x̂(v) = x_t − σ·v,

with r = clip(A / A_max, −1, 1) / 2 + 1/2 ∈ [0, 1] from the group advantage A, and w = mean |x̂ − x0| (detached)
as the paper's adaptive weight. At θ = θ_old the gradient is 2σ(1 − 2r)(x̂_old − x0)/w: plain flow matching on
the painting, signed by its advantage, so r = 1/2 (a constant reward) gives exactly zero. Rollouts need no
log-probabilities, so any sampler paints them (stage 2 uses the eval's ODE sampler). No library ships this
loss for our decoders; the formulas follow the paper and its public training script.
"""
from __future__ import annotations

import torch
from torch import Tensor


def optimality(advantages: Tensor, adv_clip: float) -> Tensor:
    """Advantages (N,) → DiffusionNFT's optimality r ∈ [0, 1]: 1/2 at the group mean, 0 / 1 at ∓adv_clip."""
    if adv_clip <= 0:
        raise ValueError(f"adv_clip must be > 0, got {adv_clip}")
    return (advantages.clamp(-adv_clip, adv_clip) / adv_clip / 2 + 0.5).clamp(0, 1)


def nft_loss(v: Tensor, v_old: Tensor, x_t: Tensor, x0: Tensor, sigma: Tensor, r: Tensor,
             beta: float = 1.0) -> Tensor:
    """Per-sample DiffusionNFT loss (N,). v: policy velocity with grad; v_old: the painting policy's velocity at
    the same x_t (no grad); x_t, x0: (N, C, h, w); sigma (N,) noise levels of x_t; r (N,) optimality."""
    if beta <= 0:
        raise ValueError(f"nft beta must be > 0, got {beta}")
    dims = tuple(range(1, x0.ndim))
    s = sigma.reshape(-1, *([1] * (x0.ndim - 1)))
    v_old = v_old.detach()
    positive, negative = beta * v + (1 - beta) * v_old, (1 + beta) * v_old - beta * v

    def weighted(pred: Tensor) -> Tensor:
        x0_hat = x_t - s * pred
        w = (x0_hat.detach() - x0).abs().mean(dim=dims, keepdim=True).clamp_min(1e-5)
        return ((x0_hat - x0) ** 2 / w).mean(dim=dims)

    return (r * weighted(positive) + (1 - r) * weighted(negative)) / beta
