"""GRPO math against numbers worked by hand (TRL and Flow-GRPO conventions)."""
from __future__ import annotations

import math

import pytest
import torch

from uae_train.rl.grpo import (STAT_KEYS, flow_grpo_advantages, flow_policy_loss, group_advantages, k3_kl,
                            policy_loss, zero_std_fraction)

pytestmark = pytest.mark.unit

REWARDS = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])  # means 2 and 0


def close(a: torch.Tensor, b, tol: float = 1e-6) -> None:
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=a.dtype), atol=tol, rtol=0)


def one_token(ratios: list[float], advantages: list[float], **kw):
    """policy_loss on B sequences of one token each with the given ratios; loss_type grpo = plain mean."""
    logp = torch.log(torch.tensor(ratios, dtype=torch.float64)).unsqueeze(1)
    adv = torch.tensor(advantages, dtype=torch.float64)
    return policy_loss(logp, torch.zeros_like(logp), adv, torch.ones_like(logp), loss_type="grpo", **kw)


# --- advantages -------------------------------------------------------------------------------------------------

def test_group_scale_divides_by_each_groups_unbiased_std():
    # group 1: deviations −1, 0, 1; unbiased var = (1 + 0 + 1)/2 = 1 → std 1. Group 2: all zero.
    a = 1 / (1 + 1e-4)
    close(group_advantages(REWARDS), [[-a, 0.0, a], [0.0, 0.0, 0.0]])


def test_batch_scale_uses_group_means_and_the_std_of_all_rewards():
    # all six rewards: mean 1, squared deviations 0+1+4+1+1+1 = 8, unbiased var 8/5 = 1.6
    a = 1 / (math.sqrt(1.6) + 1e-4)
    close(group_advantages(REWARDS, scale="batch"), [[-a, 0.0, a], [0.0, 0.0, 0.0]])


def test_none_scale_is_dr_grpo_centring_only():
    close(group_advantages(torch.tensor([[1.0, 2.0, 6.0]]), scale="none"), [[-2.0, -1.0, 3.0]])


def test_advantages_sum_to_zero_per_group():
    r = torch.tensor([[0.3, 0.9, 0.1, 0.5], [2.0, -1.0, 4.0, 0.0]])
    for scale in ("group", "batch", "none"):
        close(group_advantages(r, scale=scale).sum(dim=1), [0.0, 0.0], tol=1e-5)


def test_zero_std_groups_get_zero_advantages():
    r = torch.tensor([[0.7, 0.7, 0.7], [1.0, 1.0, 1.0]])
    for scale in ("group", "batch", "none"):
        adv = group_advantages(r, scale=scale)
        assert torch.isfinite(adv).all()
        close(adv, torch.zeros(2, 3))
    close(flow_grpo_advantages(r), torch.zeros(2, 3))


def test_group_of_one_gives_zeros_not_nan():
    r = torch.tensor([[1.0], [5.0]])
    for scale in ("group", "batch", "none"):
        close(group_advantages(r, scale=scale), torch.zeros(2, 1))


def test_integer_rewards_are_accepted():
    close(group_advantages(torch.tensor([[0, 2]]), scale="none"), [[-1.0, 1.0]])


def test_unknown_scale_is_a_one_line_error():
    with pytest.raises(ValueError, match="scale must be one of"):
        group_advantages(REWARDS, scale="global")


def test_zero_std_fraction_counts_flat_groups():
    assert zero_std_fraction(REWARDS) == 0.5
    assert zero_std_fraction(torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 1.0], [3.0, 3.0]])) == 0.75
    assert zero_std_fraction(torch.tensor([[1.0], [2.0]])) == 1.0


def test_flow_grpo_advantages_use_global_population_std_and_clip():
    # global: mean 1, squared deviations sum 8, ddof 0 → var 8/6
    a = 1 / (math.sqrt(8 / 6) + 1e-4)
    close(flow_grpo_advantages(REWARDS), [[-a, 0.0, a], [0.0, 0.0, 0.0]])
    # [[0, 10], [0, 0]]: deviations ±5 in row 0; global mean 2.5, var (6.25·3 + 56.25)/4 = 18.75 → A = ±5/4.3302
    r = torch.tensor([[0.0, 10.0], [0.0, 0.0]])
    b = 5 / (math.sqrt(18.75) + 1e-4)
    close(flow_grpo_advantages(r), [[-b, b], [0.0, 0.0]])
    close(flow_grpo_advantages(r, clip=1.0), [[-1.0, 1.0], [0.0, 0.0]])


# --- k3 ----------------------------------------------------------------------------------------------------------

def test_k3_is_zero_at_equal_inputs_and_positive_elsewhere():
    logp = torch.linspace(-3, 0, 7)
    close(k3_kl(logp, logp), torch.zeros(7))
    ref = logp.flip(0)
    kl = k3_kl(logp, ref)
    assert (kl >= 0).all() and (kl[logp != ref] > 0).all()


def test_k3_hand_values():
    # d = ref − θ: d = −1 → e⁻¹ + 1 − 1 = 0.3678794; d = +1 → e − 2 = 0.7182818
    close(k3_kl(torch.tensor([0.0, 0.0]), torch.tensor([-1.0, 1.0])), [math.exp(-1), math.e - 2])


# --- clipped loss ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio, adv, loss, clipped", [
    (1.1, 1.0, -1.1, 0.0),   # inside the range: unclipped
    (1.2, 1.0, -1.2, 0.0),   # at 1+ε: both branches equal, not counted as clipped
    (1.5, 1.0, -1.2, 1.0),   # above, A>0: gain capped at 1+ε
    (0.5, 1.0, -0.5, 0.0),   # below, A>0: min keeps the worse (unclipped) term
    (0.9, -1.0, 0.9, 0.0),   # inside, A<0
    (0.8, -1.0, 0.8, 0.0),   # at 1−ε, A<0
    (0.5, -1.0, 0.8, 1.0),   # below, A<0: clipped at 1−ε
    (1.5, -1.0, 1.5, 0.0),   # above, A<0: the pessimistic unclipped term stays
    (1.5, 2.0, -2.4, 1.0),   # A scales the clipped term: −1.2·2
])
def test_clipped_objective_per_token(ratio, adv, loss, clipped):
    value, stats = one_token([ratio], [adv])
    close(value, loss, tol=1e-9)
    assert stats["clip_fraction"] == clipped
    assert stats["ratio_mean"] == pytest.approx(ratio)


def test_eps_high_widens_only_the_upper_side():
    value, stats = one_token([1.25, 1.5, 0.7], [1.0, 1.0, -1.0], eps_low=0.2, eps_high=0.28)
    # −1.25 (inside), −1.28 (clipped high), +0.8 (clipped low) → mean (−1.25 − 1.28 + 0.8)/3
    close(value, (-1.25 - 1.28 + 0.8) / 3, tol=1e-9)
    assert stats["clip_fraction"] == pytest.approx(2 / 3)
    assert (stats["ratio_min"], stats["ratio_max"]) == (pytest.approx(0.7), pytest.approx(1.5))


def test_delta_caps_the_ratio_for_negative_advantages():
    # ρ = 3, A = −1: without delta −min(−3, −1.2) = 3; delta = 2 caps the unclipped branch → 2
    close(one_token([3.0], [-1.0])[0], 3.0, tol=1e-9)
    close(one_token([3.0], [-1.0], delta=2.0)[0], 2.0, tol=1e-9)
    with pytest.raises(ValueError, match="delta"):
        one_token([3.0], [-1.0], delta=1.1)


def test_fresh_rollouts_have_ratio_one_and_no_clipping():
    torch.manual_seed(0)
    logp = -torch.rand(3, 5) * 4
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]])
    loss, stats = policy_loss(logp, logp.detach(), torch.tensor([0.5, -1.0, 2.0]), mask)
    assert stats["ratio_mean"] == stats["ratio_min"] == stats["ratio_max"] == 1.0
    assert stats["clip_fraction"] == 0.0 and stats["kl"] == 0.0
    assert set(stats) == set(STAT_KEYS)
    # ρ ≡ 1 → per-token loss −A; dapo = (−0.5·5 + 1·2 − 2·1) / 8 = −2.5/8
    close(loss, -2.5 / 8)


# --- aggregation on a ragged mask --------------------------------------------------------------------------------
# B=2, T=3, mask [[1,1,1],[1,0,0]], ρ = 1 on active tokens, A = [1, −2]
# → active per-token losses [−1, −1, −1] and [2].
# Masked positions hold a huge log-ratio: they must not leak into the loss or the stats.
LOGP = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, 9.0, 9.0]])
OLD = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -3.0, -3.0]])
ADV = torch.tensor([1.0, -2.0])
MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])


@pytest.mark.parametrize("loss_type, kw, expected", [
    ("grpo", {}, (-1.0 + 2.0) / 2),                         # row means −1 and 2, then their mean
    ("bnpo", {}, (-3.0 + 2.0) / 4),                         # sum / 4 active tokens
    ("dr_grpo", {}, (-3.0 + 2.0) / (2 * 3)),                # sum / (B·T)
    ("dr_grpo", {"max_completion_length": 5}, -1.0 / 10),  # sum / (B·L)
    ("dapo", {}, (-3.0 + 2.0) / 4),                         # sum / local active tokens
    ("dapo", {"num_items_in_batch": 10}, -1.0 / 10),       # sum / global active tokens
])
def test_aggregations_on_a_ragged_mask(loss_type, kw, expected):
    loss, stats = policy_loss(LOGP, OLD, ADV, MASK, loss_type=loss_type, **kw)
    close(loss, expected)
    assert stats["ratio_max"] == 1.0 and stats["clip_fraction"] == 0.0


def test_bool_mask_equals_int_mask():
    a, _ = policy_loss(LOGP, OLD, ADV, MASK.bool(), loss_type="grpo")
    b, _ = policy_loss(LOGP, OLD, ADV, MASK.float(), loss_type="grpo")
    close(a, b.item())


def test_dapo_is_invariant_to_splitting_into_micro_batches():
    torch.manual_seed(1)
    logp = (-torch.rand(4, 6) * 3).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(4, 6)
    adv = torch.tensor([1.0, -0.5, 2.0, -1.5])
    mask = torch.tensor([[1] * 6, [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]])
    n = int(mask.sum())
    full, _ = policy_loss(logp, old, adv, mask)
    (g_full,) = torch.autograd.grad(full, logp)
    parts = [policy_loss(logp[s], old[s], adv[s], mask[s], num_items_in_batch=n)[0]
             for s in (slice(0, 1), slice(1, 4))]
    (g_split,) = torch.autograd.grad(sum(parts), logp)
    close(sum(parts), full.item())
    torch.testing.assert_close(g_split, g_full)


def test_kl_term_is_added_with_beta_and_logged_without():
    logp = torch.zeros(1, 2)
    ref = torch.tensor([[-1.0, 1.0]])
    k = (math.exp(-1) + math.e - 2) / 2  # mean k3 of the two tokens
    mask = torch.ones(1, 2)
    loss, stats = policy_loss(logp, logp, torch.zeros(1), mask, ref_logp=ref, beta=0.1)
    close(loss, 0.1 * k)  # A = 0: only the KL term remains
    assert stats["kl"] == pytest.approx(k)
    loss, stats = policy_loss(logp, logp, torch.zeros(1), mask, ref_logp=ref)
    close(loss, 0.0)
    assert stats["kl"] == pytest.approx(k)


def test_gradient_of_the_unclipped_loss_is_minus_a_times_ratio():
    logp = torch.log(torch.tensor([[1.1]])).requires_grad_()
    loss, _ = policy_loss(logp, torch.zeros(1, 1), torch.tensor([2.0]), torch.ones(1, 1))
    loss.backward()
    close(logp.grad, [[-2.0 * 1.1]], tol=1e-6)  # d(−Aρ)/dlogp = −Aρ
    logp = torch.log(torch.tensor([[1.5]])).requires_grad_()
    policy_loss(logp, torch.zeros(1, 1), torch.tensor([2.0]), torch.ones(1, 1))[0].backward()
    close(logp.grad, [[0.0]])  # clipped branch: no gradient


def test_empty_mask_gives_zero_loss_and_neutral_stats():
    loss, stats = policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2), torch.zeros(2, 3))
    close(loss, 0.0)
    assert stats == {"clip_fraction": 0.0, "ratio_mean": 1.0, "ratio_min": 1.0, "ratio_max": 1.0, "kl": 0.0}


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="loss_type"):
        policy_loss(LOGP, OLD, ADV, MASK, loss_type="ppo")
    with pytest.raises(ValueError, match=r"advantages must be \(B,\)"):
        policy_loss(LOGP, OLD, ADV.unsqueeze(1), MASK)


# --- Flow-GRPO loss ----------------------------------------------------------------------------------------------

def test_flow_policy_loss_hand_values():
    # clip_range 0.1; A = [1, −1, 10→5]; ρ = [1.5, 1.5, 1]:
    # max(−1.5, −1.1) = −1.1 (clipped); max(1.5, 1.1) = 1.5; max(−5, −5) = −5 → mean −4.6/3
    logp = torch.log(torch.tensor([1.5, 1.5, 1.0], dtype=torch.float64))
    loss, stats = flow_policy_loss(logp, torch.zeros(3, dtype=torch.float64),
                                   torch.tensor([1.0, -1.0, 10.0], dtype=torch.float64), clip_range=0.1)
    close(loss, -4.6 / 3, tol=1e-9)
    assert stats["clip_fraction"] == pytest.approx(1 / 3)
    assert set(stats) == set(STAT_KEYS) and stats["kl"] == 0.0


def test_flow_policy_loss_at_fresh_samples_is_minus_mean_advantage():
    logp = torch.tensor([-1.0, -2.0, -3.0, -4.0])
    loss, stats = flow_policy_loss(logp, logp, torch.tensor([1.0, -3.0, 0.5, 7.0]))
    close(loss, -(1.0 - 3.0 + 0.5 + 5.0) / 4)  # 7 clipped to 5
    assert stats["ratio_mean"] == 1.0 and stats["clip_fraction"] == 0.0
