"""Stage 1's policy update moves probability the way the advantages say: rewarding the sampled captions that
hold one token raises that token's log-probability, penalising them lowers it (tiny encoder, one update)."""
from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch

from uae_data.scenes import render, sample_scene
from uae_train.rl import grpo
from uae_train.models.encoder import Encoder
from uae_train.stages.gen_for_und import Stage1Config, update

pytestmark = pytest.mark.unit

G = 4  # captions per image


@pytest.fixture(scope="module")
def rollout():
    """A tiny encoder, 2 images, G sampled captions each, and the token found in some captions but not all."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine
    enc = Encoder.tiny(image_size=32, seed=0)
    images = [render(sample_scene(i), 32) for i in range(2)]
    samples = enc.sample_captions(images, n=G, sample=True, max_new_tokens=8, seed=0)
    counts = Counter(t for ids in samples.token_ids for t in set(ids))
    stops = set(enc.stop_token_ids)
    count, token = max((c, t) for t, c in counts.items() if 0 < c < len(samples.token_ids) and t not in stops)
    holds = torch.tensor([float(token in ids) for ids in samples.token_ids])  # (B·G,)
    yield enc, [im for im in images for _ in range(G)], samples.token_ids, token, holds
    torch.set_num_threads(before)


def token_logprob(enc: Encoder, images, token_ids, token: int) -> float:
    """Mean log π(token) over the positions where the sampled captions hold it."""
    with torch.no_grad():
        logp, mask = enc.completion_logprobs(images, token_ids)  # (B·G, T)
    ids = torch.full_like(logp, -1, dtype=torch.long)
    for i, row in enumerate(token_ids):
        ids[i, :len(row)] = torch.tensor(row)
    return float(logp[(ids == token) & mask].mean())


def one_update(enc: Encoder, images, token_ids, advantages: torch.Tensor) -> Encoder:
    policy = copy.deepcopy(enc)
    cfg = Stage1Config(lr=1e-3, micro_batch=16)
    params = policy.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    policy.train()
    stats = update(cfg, policy, None, images, token_ids, advantages, optimizer, params)
    policy.eval()
    assert stats["first_ratio_min"] == pytest.approx(1.0, abs=1e-5)  # fresh rollouts: ρ = 1 on the first pass
    return policy


def test_a_positive_advantage_raises_the_rewarded_token_and_a_negative_one_lowers_it(rollout):
    enc, images, token_ids, token, holds = rollout
    adv = grpo.group_advantages(holds.view(-1, G), scale="group").flatten()  # reward = caption holds the token
    assert (adv[holds == 1] > 0).all() and (adv[holds == 0] <= 0).all()
    before = token_logprob(enc, images, token_ids, token)
    favoured = token_logprob(one_update(enc, images, token_ids, adv), images, token_ids, token)
    penalised = token_logprob(one_update(enc, images, token_ids, -adv), images, token_ids, token)
    assert favoured > before + 0.05
    assert penalised < before - 0.05
