"""Flow-GRPO SDE step against numbers worked by hand, plus its sampling statistics."""
from __future__ import annotations

import math

import pytest
import torch

from uae_train.rl.flow_sde import SDEStep, noise_scale, ode_step, sde_kl, sde_step, step_noise_std

pytestmark = pytest.mark.unit

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# σ = 0.5 → σ_next = 0.4, a = 0.7: σ_t = 0.7·√(0.5/0.5) = 0.7, Δt = −0.1, s = 0.7·√0.1
# mean = x·(1 + 0.49/(2·0.5)·(−0.1)) + v·(1 + 0.49·0.5/(2·0.5))·(−0.1) = 0.951·x − 0.1245·v
S_MID = 0.7 * math.sqrt(0.1)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def close(a: torch.Tensor, b, tol: float = 1e-6) -> None:
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype).expand_as(a), atol=tol, rtol=0)


def test_mean_and_std_hand_values_mid_schedule():
    x, v = torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 2.0)
    step = sde_step(v, x, 0.5, 0.4, generator=gen())
    assert isinstance(step, SDEStep)
    close(step.mean, 0.951 - 0.1245 * 2)  # 0.702
    close(step.std, 0.7)
    close(step_noise_std(step.std, 0.5, 0.4), S_MID)


def test_first_step_replaces_the_pole_by_sigma_max_or_sigma_next():
    x, v = torch.full((1, 1, 1, 1), 1.0), torch.full((1, 1, 1, 1), 2.0)
    # σ = 1, σ_next = 0.9, no sigma_max: σ_t = 0.7·√(1/0.1), σ_t² = 4.9; mean = x·(1 − 4.9/2·0.1) − 0.1·v
    step = sde_step(v, x, 1.0, 0.9, generator=gen())
    close(step.std, 0.7 * math.sqrt(10), tol=1e-5)
    close(step.mean, 0.755 - 0.2, tol=1e-6)
    # sigma_max = 0.95: σ_t² = 0.49·20 = 9.8; mean = x·(1 − 0.49) − 0.1·v
    step = sde_step(v, x, 1.0, 0.9, sigma_max=0.95, generator=gen())
    close(step.std, 0.7 * math.sqrt(20), tol=1e-5)
    close(step.mean, 0.51 - 0.2, tol=1e-6)
    assert torch.isfinite(step.log_prob).all()


def test_noise_level_zero_is_the_ode_step_with_zero_log_prob():
    torch.manual_seed(0)
    x, v = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    step = sde_step(v, x, 0.6, 0.45, noise_level=0.0, generator=gen())
    ode = ode_step(v, x, 0.6, 0.45)
    torch.testing.assert_close(step.mean, ode, atol=0, rtol=0)
    torch.testing.assert_close(step.prev_sample, ode, atol=0, rtol=0)
    close(step.log_prob, 0.0)
    close(ode, x + v * (0.45 - 0.6), tol=1e-6)


def test_log_prob_is_the_gaussian_density_by_hand():
    # x = 1, v = 2 → mean 0.702 (see above); score x' = 0.8 and x' = 0.5 on two batch elements
    x, v = torch.ones(2, 1, 1, 1), torch.full((2, 1, 1, 1), 2.0)
    stored = torch.tensor([0.8, 0.5]).view(2, 1, 1, 1)
    step = sde_step(v, x, 0.5, 0.4, prev_sample=stored)
    hand = [-(xp - 0.702) ** 2 / (2 * S_MID**2) - math.log(S_MID) - HALF_LOG_2PI for xp in (0.8, 0.5)]
    close(step.log_prob, torch.tensor(hand), tol=1e-5)
    assert step.log_prob.shape == (2,) and step.log_prob.dtype == torch.float32


def test_log_prob_averages_over_elements():
    # one sample with two elements: x' = mean + (0, 2s) → (−0 −2)/2 = −1 plus the constants
    x, v = torch.ones(1, 1, 1, 2), torch.full((1, 1, 1, 2), 2.0)
    stored = torch.tensor([0.702, 0.702 + 2 * S_MID]).view(1, 1, 1, 2)
    step = sde_step(v, x, 0.5, 0.4, prev_sample=stored)
    close(step.log_prob, -1.0 - math.log(S_MID) - HALF_LOG_2PI, tol=1e-5)


def test_samples_match_the_formula_mean_and_std():
    n = 20_000
    x, v = torch.full((n, 1, 1, 1), 1.0), torch.full((n, 1, 1, 1), 2.0)
    step = sde_step(v, x, 0.5, 0.4, generator=gen(3))
    samples = step.prev_sample.flatten()
    # standard errors: s/√n ≈ 0.0016 for the mean, s/√(2n) ≈ 0.0011 for the std
    assert abs(samples.mean().item() - 0.702) < 0.008
    assert abs(samples.std().item() - S_MID) < 0.006


def test_mean_log_prob_at_fresh_samples():
    # facts §5.5: E[log π] = −½ − log s − ½·log 2π, here with 10k elements per sample
    torch.manual_seed(0)
    x, v = torch.randn(4, 4, 50, 50), torch.randn(4, 4, 50, 50)
    step = sde_step(v, x, 0.5, 0.4, generator=gen(1))
    close(step.log_prob, -0.5 - math.log(S_MID) - HALF_LOG_2PI, tol=0.03)


def test_rescoring_a_stored_sample_returns_the_stored_log_prob_exactly():
    torch.manual_seed(0)
    sigma, sigma_next = torch.tensor([1.0, 0.7]), torch.tensor([0.8, 0.5])  # per-sample σ, one at the pole
    for dtype in (torch.float32, torch.bfloat16):
        x, v = torch.randn(2, 3, 8, 8).to(dtype), torch.randn(2, 3, 8, 8).to(dtype)
        fresh = sde_step(v, x, sigma, sigma_next, sigma_max=0.8, generator=gen(5))
        again = sde_step(v, x, sigma, sigma_next, sigma_max=0.8, prev_sample=fresh.prev_sample)
        assert fresh.prev_sample.dtype == dtype
        torch.testing.assert_close(again.log_prob, fresh.log_prob, atol=0, rtol=0)
        torch.testing.assert_close(again.prev_sample, fresh.prev_sample, atol=0, rtol=0)


def test_per_sample_sigmas_equal_one_step_per_sample():
    torch.manual_seed(0)
    x, v = torch.randn(2, 2, 4, 4), torch.randn(2, 2, 4, 4)
    stored = torch.randn(2, 2, 4, 4)
    batched = sde_step(v, x, torch.tensor([0.9, 0.3]), torch.tensor([0.7, 0.2]), prev_sample=stored)
    for i, (s, sn) in enumerate([(0.9, 0.7), (0.3, 0.2)]):
        one = sde_step(v[i:i + 1], x[i:i + 1], s, sn, prev_sample=stored[i:i + 1])
        torch.testing.assert_close(batched.log_prob[i:i + 1], one.log_prob)
        torch.testing.assert_close(batched.mean[i:i + 1], one.mean)
    assert batched.std.shape == (2, 1, 1, 1)


def test_same_seed_same_sample_and_per_sample_generators():
    x, v = torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)
    a = sde_step(v, x, 0.5, 0.4, generator=gen(7)).prev_sample
    b = sde_step(v, x, 0.5, 0.4, generator=gen(7)).prev_sample
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    # a list of generators: sample i depends only on its own seed
    pair = sde_step(v, x, 0.5, 0.4, generator=[gen(1), gen(2)]).prev_sample
    alone = sde_step(v[1:], x[1:], 0.5, 0.4, generator=[gen(2)]).prev_sample
    torch.testing.assert_close(pair[1:], alone, atol=0, rtol=0)


def test_gradient_flows_from_log_prob_to_v_through_the_mean():
    torch.manual_seed(0)
    x = torch.randn(2, 2, 4, 4)
    v = torch.randn(2, 2, 4, 4, requires_grad=True)
    with torch.no_grad():
        stored = sde_step(v, x, 0.5, 0.4, generator=gen()).prev_sample
    step = sde_step(v, x, 0.5, 0.4, prev_sample=stored)
    step.log_prob.sum().backward()
    # d/dv of mean over N elements of −(x' − μ)²/(2s²) = (x' − μ)/(s²·N) · dμ/dv, dμ/dv = −0.1245
    expected = (stored - step.mean.detach()) / (S_MID**2 * 32) * -0.1245
    torch.testing.assert_close(v.grad, expected, atol=1e-5, rtol=1e-4)


def test_sde_kl_divides_by_sigma_t_squared_without_dt():
    mean = torch.full((2, 1, 2, 2), 0.3)
    ref = torch.zeros(2, 1, 2, 2)
    close(sde_kl(mean, ref, torch.tensor(0.5)), 0.09 / (2 * 0.25))  # 0.18
    per_sample = torch.tensor([0.5, 1.0]).view(2, 1, 1, 1)
    close(sde_kl(mean, ref, per_sample), torch.tensor([0.18, 0.045]))
    step = sde_step(torch.ones(2, 1, 2, 2), torch.ones(2, 1, 2, 2), 0.5, 0.4, generator=gen())
    close(sde_kl(step.mean, step.mean, step.std), 0.0)


def test_noise_scale_hand_values():
    close(noise_scale(0.5, 0.4), 0.7)
    close(noise_scale(0.8, 0.6, noise_level=1.0), 2.0)  # √(0.8/0.2)
    close(noise_scale(1.0, 0.75, noise_level=1.0), 2.0)  # pole: √(1/0.25)


def test_sigma_next_above_sigma_is_an_error():
    with pytest.raises(ValueError, match="sigma_next must not exceed sigma"):
        sde_step(torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1), 0.4, 0.5)
