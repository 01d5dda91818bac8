"""DiffusionNFT's loss (uae_train/rl/flow_nft.py): a constant reward gives no gradient, a painting above its group
pulls the policy's denoised guess towards it and one below pushes it away."""
from __future__ import annotations

import pytest
import torch

from uae_train.rl.flow_nft import nft_loss, optimality


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(4, 3, 6, 6, generator=g), torch.randn(4, 3, 6, 6, generator=g)
    sigma = torch.tensor([0.9, 0.7, 0.5, 0.2])
    x_t = (1 - sigma.view(-1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1) * eps
    v_old = torch.randn(4, 3, 6, 6, generator=g)  # a policy that does not yet paint x0
    return x0, x_t, sigma, v_old


@pytest.mark.unit
def test_optimality_maps_advantages_to_zero_half_one():
    r = optimality(torch.tensor([-9.0, -5.0, 0.0, 2.5, 5.0, 9.0]), adv_clip=5.0)
    assert r.tolist() == pytest.approx([0.0, 0.0, 0.5, 0.75, 1.0, 1.0])
    with pytest.raises(ValueError):
        optimality(torch.zeros(2), adv_clip=0.0)


def grad_at_old(r: float, beta: float) -> torch.Tensor:
    x0, x_t, sigma, v_old = batch()
    v = v_old.clone().requires_grad_(True)
    nft_loss(v, v_old, x_t, x0, sigma, torch.full((4,), r), beta).sum().backward()
    return v.grad


@pytest.mark.unit
def test_a_constant_reward_gives_no_gradient_at_the_painting_policy():
    assert float(grad_at_old(0.5, 1.0).abs().max()) == 0.0  # β = 1 (stage 2's default): exactly
    # β < 1 mixes v and v_old in floating point: zero up to rounding, against a real advantage's gradient
    assert float(grad_at_old(0.5, 0.1).abs().max()) < 1e-5 * float(grad_at_old(1.0, 0.1).abs().max())


@pytest.mark.unit
@pytest.mark.parametrize("r, closer", [(1.0, True), (0.0, False)])
def test_the_advantage_sign_decides_whether_the_policy_moves_towards_the_painting(r, closer):
    x0, x_t, sigma, v_old = batch(1)
    v = v_old.clone().requires_grad_(True)
    nft_loss(v, v_old, x_t, x0, sigma, torch.full((4,), r)).sum().backward()
    stepped = v_old - 0.01 * v.grad
    s = sigma.view(-1, 1, 1, 1)
    before = ((x_t - s * v_old) - x0).pow(2).mean(dim=(1, 2, 3))
    after = ((x_t - s * stepped) - x0).pow(2).mean(dim=(1, 2, 3))
    assert bool((after < before).all()) if closer else bool((after > before).all())


@pytest.mark.unit
def test_beta_must_be_positive():
    x0, x_t, sigma, v_old = batch()
    with pytest.raises(ValueError, match="beta"):
        nft_loss(v_old, v_old, x_t, x0, sigma, torch.full((4,), 0.5), beta=0.0)
