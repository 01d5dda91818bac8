"""Sharded training of the decoder's DiT with FSDP2 (`torch.distributed.fsdp.fully_shard`), for DiTs whose
weights, gradients and AdamW state do not fit one device (SD3.5-Large: 8.1B parameters × 16 bytes).

Each transformer block is one shard group, then the root. FSDP reduce-scatters gradients as a mean over
ranks (a SUM with divide factor 1 would need PREMUL_SUM, which gloo lacks), so the decoder phase scales its
rank-share loss by the world size: the sharded gradients are then the global sum uae_data.distributed's
losses expect, and the replicated modules (the connector) are averaged by `Dist.sync_grads(average=True)`.
The numbers equal the unsharded run's. Checkpoints hold full tensors in the ordinary layout (any number of processes, sharded
or not, can resume from them); at the end of the phase the DiT is gathered back into a plain module so it
saves and samples as usual.
"""
from __future__ import annotations

import torch
from torch import nn


def is_sharded(p: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(p, DTensor)


def shard_dit(transformer: nn.Module) -> nn.Module:
    """fully_shard every transformer block, then the whole DiT (in place); returns it."""
    from torch.distributed.fsdp import fully_shard

    for block in transformer.transformer_blocks:
        fully_shard(block)
    fully_shard(transformer)
    return transformer


def full_tensor(p: torch.Tensor) -> torch.Tensor:
    """The whole tensor (a collective for a sharded one: every rank must call it, in the same order)."""
    return p.full_tensor() if is_sharded(p) else p


def like(full: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`full` laid out as `ref` (this rank's shard of it when `ref` is sharded)."""
    if not is_sharded(ref):
        return full.to(ref.device, ref.dtype)
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full.to(ref.device, ref.dtype), ref.device_mesh, ref.placements, src_data_rank=None)


def clip_grad_norm(params: list[nn.Parameter], max_norm: float) -> float:
    """torch's clip_grad_norm_ (coefficient max_norm / (norm + 1e-6), at most 1) over sharded and replicated
    gradients together; the sharded part's squared norm is summed over ranks."""
    sharded = torch.zeros((), dtype=torch.float64)
    plain = torch.zeros((), dtype=torch.float64)
    for p in params:
        if p.grad is None:
            continue
        if is_sharded(p.grad):
            sharded += p.grad.to_local().double().pow(2).sum().cpu()
        else:
            plain += p.grad.double().pow(2).sum().cpu()
    torch.distributed.all_reduce(sharded)
    total = float((sharded + plain).sqrt())
    coef = min(1.0, max_norm / (total + 1e-6))
    if coef < 1.0:
        for p in params:
            if p.grad is not None:
                p.grad.mul_(coef)
    return total


def full_optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """optimizer.state_dict() with every sharded state tensor gathered (collective: all ranks call it)."""
    sd = optimizer.state_dict()  # its per-parameter dicts are the live state: copy before replacing
    sd["state"] = {i: {k: v.full_tensor() if torch.is_tensor(v) and is_sharded(v) else v for k, v in st.items()}
                   for i, st in sd["state"].items()}
    return sd


def shard_optimizer_state(sd: dict, optimizer: torch.optim.Optimizer) -> dict:
    """A full optimizer state laid out like this optimizer's (sharded) parameters."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, state in sd["state"].items():
        ref = params[int(i)]
        for k, v in list(state.items()):
            if torch.is_tensor(v) and v.shape == ref.shape and is_sharded(ref):
                state[k] = like(v, ref)
    return sd


def unshard_dit(decoder, transformer: nn.Module) -> None:
    """Put a plain (unsharded) copy of the trained DiT back into the decoder, on every rank: the gathered
    parameters, every buffer as it is (FSDP leaves buffers whole; non-persistent ones such as re-spaced
    position tables are copied too) and the decoder's attention processor."""
    from uae_train.models.dit_attention import MaskedJointAttnProcessor

    full = {n: full_tensor(p).detach().clone() for n, p in transformer.named_parameters()}
    buffers = {n: b.detach().clone() for n, b in transformer.named_buffers()}
    plain = type(transformer).from_config(transformer.config)
    plain.to(next(iter(full.values())).device)
    with torch.no_grad():
        for n, t in list(full.items()) + list(buffers.items()):
            owner, _, leaf = n.rpartition(".")
            target = plain.get_submodule(owner) if owner else plain
            getattr(target, leaf).copy_(t)
    plain.set_attn_processor(MaskedJointAttnProcessor())
    for p, q in zip(plain.parameters(), transformer.parameters()):
        p.requires_grad_(q.requires_grad)
    decoder.transformer = plain
