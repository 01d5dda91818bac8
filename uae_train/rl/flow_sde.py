"""Stochastic rectified-flow sampling with log-probabilities, for GRPO on the DiT (Flow-GRPO).

Convention (diffusers' FlowMatchEulerDiscreteScheduler, Decoder.sigmas): σ runs 1 (noise) → 0 (data),
x_σ = (1−σ)·x0 + σ·ε and the model predicts v = ε − x0. The ODE (Euler) step is x' = x + v·(σ_next − σ).

Flow-GRPO (yifan123/flow_grpo, flow_grpo/diffusers_patch/sd3_sde_with_logprob.py; arXiv 2505.05470) replaces it by
the marginal-preserving SDE dx = [v + σ_t²/(2t)·(x + (1−t)v)]dt + σ_t dw, σ_t = a·√(t/(1−t)), a = noise_level.
One Euler–Maruyama step is Gaussian, so each step has a tractable log π(x' | x) for the policy ratio.
All math runs in float32, as Flow-GRPO casts model_output and sample to float first.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class SDEStep(NamedTuple):
    """One SDE step. prev_sample: x' in x's dtype (B, C, H, W); log_prob: (B,) float32, mean over elements of
    log N(x' | mean, s²); mean: float32 (B, C, H, W); std: σ_t = noise_level·√(σ/(1−σ)), Flow-GRPO's
    `std_dev_t`, scalar or (B, 1, 1, 1). The step's per-element noise std is s = std·√(σ − σ_next), see
    `step_noise_std`."""
    prev_sample: Tensor
    log_prob: Tensor
    mean: Tensor
    std: Tensor


def _sigma(value: float | Tensor, like: Tensor) -> Tensor:
    """float32 on like's device: a 0-d tensor for one σ, (B, 1, 1, 1) for a per-sample σ."""
    t = torch.as_tensor(value, dtype=torch.float32, device=like.device)
    return t if t.ndim == 0 else t.reshape(-1, *([1] * (like.ndim - 1)))


def noise_scale(sigma: float | Tensor, sigma_next: float | Tensor, noise_level: float = 0.7,
                sigma_max: float | Tensor | None = None) -> Tensor:
    """Flow-GRPO's std_dev_t = noise_level·√(σ/(1−σ')), σ' = σ except at σ == 1, where the pole is replaced by
    sigma_max (Flow-GRPO passes sigmas[1], the second σ of the schedule); sigma_max=None uses sigma_next there."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    sigma_next = torch.as_tensor(sigma_next, dtype=torch.float32, device=sigma.device)
    at_pole = sigma_next if sigma_max is None else torch.as_tensor(sigma_max, dtype=torch.float32,
                                                                   device=sigma.device)
    denom = 1 - torch.where(sigma == 1, at_pole, sigma)
    return torch.sqrt(sigma / denom) * noise_level


def step_noise_std(std: Tensor, sigma: float | Tensor, sigma_next: float | Tensor) -> Tensor:
    """s = std_dev_t·√|Δt|: the standard deviation of x' given x (what log_prob's Gaussian uses)."""
    dt = _sigma(sigma_next, std) - _sigma(sigma, std)
    return std * torch.sqrt(-dt)


def _noise(shape: torch.Size, generator: torch.Generator | Sequence[torch.Generator] | None,
           device: torch.device) -> Tensor:
    """Standard normal float32 drawn on CPU then moved, so a seed gives the same sample on every device.
    A list of generators draws sample i from generator i (its noise then depends only on its own seed)."""
    if isinstance(generator, Sequence):
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {shape[0]}; pass one per sample")
        z = torch.stack([torch.randn(shape[1:], generator=g, dtype=torch.float32) for g in generator])
    else:
        z = torch.randn(shape, generator=generator, dtype=torch.float32)
    return z.to(device)


def sde_step(v: Tensor, x: Tensor, sigma: float | Tensor, sigma_next: float | Tensor, noise_level: float = 0.7, *,
             sigma_max: float | Tensor | None = None,
             generator: torch.Generator | Sequence[torch.Generator] | None = None,
             prev_sample: Tensor | None = None) -> SDEStep:
    """One Flow-GRPO SDE step from σ to σ_next < σ (sd3_sde_with_logprob). v, x: (B, C, H, W); σ's: float or (B,).

    mean = x·(1 + σ_t²/(2σ)·Δt) + v·(1 + σ_t²(1−σ)/(2σ))·Δt with Δt = σ_next − σ < 0; s = σ_t·√(−Δt); x' = mean +
    s·z. Pass `prev_sample` to re-score a stored step instead of sampling: with the same v, x and σ's its log_prob
    equals the stored one bit for bit (the fresh path scores x' after casting it to x's dtype). log_prob uses
    x'.detach(), so gradients reach v (and x) through the mean only; prev_sample itself keeps the graph of mean as
    in Flow-GRPO (sample under torch.no_grad()). With noise_level = 0 (or σ = 0) s = 0: x' is the ODE step and
    log_prob is 0 for those samples (a point mass has no density; there is nothing to train).
    """
    if v.shape != x.shape:
        raise ValueError(f"v and x must have the same shape, got {tuple(v.shape)} and {tuple(x.shape)}")
    sig, sig_next = _sigma(sigma, x), _sigma(sigma_next, x)
    dt = sig_next - sig  # () or (B, 1, 1, 1), < 0
    if bool((dt > 0).any()):
        raise ValueError(f"sigma_next must not exceed sigma (σ runs 1 → 0), got sigma={sigma}, "
                         f"sigma_next={sigma_next}")
    max_ = None if sigma_max is None else _sigma(sigma_max, x)
    std = noise_scale(sig, sig_next, noise_level, max_)  # σ_t: () or (B, 1, 1, 1)
    v32, x32 = v.float(), x.float()
    safe_sig = torch.where(sig > 0, sig, torch.ones_like(sig))  # σ = 0 has std 0 anyway
    mean = (x32 * (1 + std**2 / (2 * safe_sig) * dt)
            + v32 * (1 + std**2 * (1 - sig) / (2 * safe_sig)) * dt)  # (B, C, H, W) float32
    s = std * torch.sqrt(-dt)  # () or (B, 1, 1, 1)
    if prev_sample is None:
        prev_sample = (mean + s * _noise(x.shape, generator, x.device)).to(x.dtype)
    elif prev_sample.shape != x.shape:
        raise ValueError(f"prev_sample must match x's shape {tuple(x.shape)}, got {tuple(prev_sample.shape)}")
    positive = s > 0
    safe_s = torch.where(positive, s, torch.ones_like(s))
    density = (-((prev_sample.detach().float() - mean) ** 2) / (2 * safe_s**2)
               - torch.log(safe_s) - _HALF_LOG_2PI)  # (B, C, H, W)
    density = torch.where(positive, density, torch.zeros_like(density))
    log_prob = density.mean(dim=tuple(range(1, density.ndim)))  # (B,)
    return SDEStep(prev_sample, log_prob, mean, std)


def sde_kl(mean: Tensor, ref_mean: Tensor, std: Tensor) -> Tensor:
    """Flow-GRPO's per-step KL to the reference policy (train_sd3.py) → (B,).

    mean over non-batch dims of (mean − ref_mean)² / (2·std²), where std is SDEStep.std = σ_t (`std_dev_t`), NOT
    the step's noise std s = σ_t·√|Δt|: Flow-GRPO's code has no |Δt| factor (the exact Gaussian KL would divide
    by s²). std must be > 0 (noise_level > 0); it may be a scalar or (B, 1, 1, 1).
    """
    sq = ((mean.float() - ref_mean.float()) ** 2).mean(dim=tuple(range(1, mean.ndim)))  # (B,)
    return sq / (2 * std.float().reshape(-1) ** 2)


def ode_step(v: Tensor, x: Tensor, sigma: float | Tensor, sigma_next: float | Tensor) -> Tensor:
    """Euler step x + v·(σ_next − σ) in float32, returned in x's dtype (as FlowMatchEulerDiscreteScheduler)."""
    dt = _sigma(sigma_next, x) - _sigma(sigma, x)
    return (x.float() + v.float() * dt).to(x.dtype)
