"""Stage 2's policy updates on stored rollouts: Flow-GRPO's clipped objective on the SDE transitions
(`update`) and DiffusionNFT's advantage-signed flow matching on the clean paintings (`update_nft`).

Both add β·KL to the reference decoder to the policy term and take one optimizer step per iteration; in a
multi-process run, weights are over the global batch and gradients are summed across ranks.
"""
from __future__ import annotations

from typing import Any

import torch

from uae_train.rl import flow_nft, flow_sde, grpo

Stage2Config = Any  # und_for_gen.Stage2Config; not imported, as und_for_gen imports this module


def trained_steps(cfg: Stage2Config) -> int:
    """How many of a rollout's first steps the update trains (timestep_fraction of them, at least one)."""
    return max(1, int(cfg.rollout_steps * cfg.timestep_fraction))


def chunks_of(n: int, size: int) -> list[slice]:
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def update(cfg: Stage2Config, decoder, reference, hidden, mask, traj, old_logps, sigmas, adv, optimizer, params,
           dist=None) -> dict:
    """Clipped objective + β·KL over the trained steps of every trajectory; one optimizer step per iteration.
    Multi-process (`dist`): weights are over the global batch and gradients are summed across ranks."""
    from uae_data import distributed

    dist = dist or distributed.current()
    n_local = traj.shape[1]
    n = int(dist.sum(n_local)[0])
    trained = trained_steps(cfg)
    chunks = chunks_of(n_local, cfg.micro_batch)
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


def update_nft(cfg: Stage2Config, decoder, reference, hidden, mask, x0, sigmas, adv, optimizer, params, dist=None,
               seed: int = 0) -> dict:
    """DiffusionNFT over `trained_steps` noise levels per painting, drawn from the rollout's σ grid, each with
    fresh noise; v_old is the painting policy (the weights before this step; DiffusionNFT's soft update of
    v_old is not used); + β·‖v − v_ref‖² to the reference decoder. One optimizer step per iteration."""
    from uae_data import distributed

    dist = dist or distributed.current()
    n_local = x0.shape[0]
    n = int(dist.sum(n_local)[0])
    trained, chunks = trained_steps(cfg), chunks_of(n_local, cfg.micro_batch)
    r = flow_nft.optimality(adv, cfg.adv_clip)
    gen = torch.Generator().manual_seed(int(seed) % (2**62))
    grid = sigmas[:-1]  # σ > 0 of the rollout
    draws = []  # (σ (N,), x_t, v_old) per trained level, fixed across iterations
    with torch.no_grad():
        for _ in range(trained):
            sig = grid[torch.randint(len(grid), (n_local,), generator=gen)].to(x0.device)
            eps = torch.randn(x0.shape, generator=gen).to(x0.device)
            x_t = (1 - sig.view(-1, 1, 1, 1)) * x0 + sig.view(-1, 1, 1, 1) * eps
            v_old = torch.cat([decoder.velocity_from_context(x_t[c], sig[c], decoder.context(hidden[c], mask[c]),
                                                             cfg.guidance) for c in chunks])
            draws.append((sig, x_t, v_old))
    stats: dict = {}
    for _ in range(cfg.num_iterations):
        optimizer.zero_grad(set_to_none=True)
        acc = {"loss": 0.0, "kl": 0.0, "r_mean": float(r.sum()) / n}  # summed over ranks below
        for sig, x_t, v_old in draws:
            for c in chunks:
                w = (c.stop - c.start) / n / trained
                v = decoder.velocity_from_context(x_t[c], sig[c], decoder.context(hidden[c], mask[c]), cfg.guidance)
                loss = flow_nft.nft_loss(v, v_old[c], x_t[c], x0[c], sig[c], r[c], cfg.nft_beta).mean()
                if cfg.beta > 0:
                    with torch.no_grad(), reference() as ref:
                        v_ref = ref.velocity_from_context(x_t[c], sig[c], ref.context(hidden[c], mask[c]),
                                                          cfg.guidance)
                    kl = ((v - v_ref) ** 2).mean()
                    loss = loss + cfg.beta * kl
                    acc["kl"] += w * float(kl.detach())
                (loss * w).backward()
                acc["loss"] += w * float(loss.detach())
        dist.sync_grads(params)
        acc = dict(zip(acc, dist.sum(*acc.values())))
        if cfg.grad_clip > 0:
            acc["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
        optimizer.step()
        stats.update(acc)
    return stats
