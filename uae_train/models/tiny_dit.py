"""A tiny SD3 MMDiT (+ optional tiny VAE) built from configs, with DiT's from-scratch init.

`Decoder.tiny` builds on this; tests and the scene world train it on CPU (facts/tiny_models.md).
"""
from __future__ import annotations

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from torch import nn


def build_tiny_dit(image_size: int = 32, latent: str = "pixel", patch_size: int = 2, num_layers: int = 4,
                   position_spacing: float = 8.0, init: str = "dit") -> tuple[SD3Transformer2DModel, AutoencoderKL | None]:
    """(transformer, vae or None); see `Decoder.tiny` for the arguments.

    Draws its weights from torch's global RNG, so the caller seeds it (and keeps drawing from the same
    stream for the connector: `Decoder.tiny` builds both inside one fork_rng).
    """
    if latent not in ("pixel", "vae"):
        raise ValueError(f"latent {latent!r}: expected pixel or vae")
    if init not in ("dit", "torch"):
        raise ValueError(f"init {init!r}: expected dit or torch")
    vae = None
    channels, factor = 3, 1
    if latent == "vae":
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            layers_per_block=1, norm_num_groups=4, sample_size=image_size,
                            scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                            use_post_quant_conv=False)
        channels, factor = 4, 2
    size = image_size // factor
    grid = size // patch_size
    transformer = SD3Transformer2DModel(
        sample_size=size, patch_size=patch_size, in_channels=channels, out_channels=channels, num_layers=num_layers,
        attention_head_dim=32, num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=128,
        pooled_projection_dim=64, pos_embed_max_size=grid)
    spread_positions(transformer, grid, position_spacing)
    if init == "dit":
        dit_init(transformer)
    return transformer, vae


def dit_init(transformer: SD3Transformer2DModel) -> None:
    """DiT's from-scratch init (Peebles & Xie 2023, `initialize_weights`) on diffusers' SD3 MMDiT.

    Xavier-uniform linears and patch projection, N(0, 0.02) timestep/pooled embedders, zero adaLN modulation
    (every block starts as the identity) and a zero final layer. diffusers builds the model for loading
    pretrained weights and keeps PyTorch's layer defaults; trained from scratch with those, the tiny DiT
    learnt to use a condition far more slowly (experiments/conditioning_probe/conditioning_probe.py: 16 labelled images from noise,
    0.95 of the mean-image loss after 150 steps with PyTorch's init vs 0.75 with this one, 0.57 after 400).
    """
    for module in transformer.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    weight = transformer.pos_embed.proj.weight
    nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
    nn.init.zeros_(transformer.pos_embed.proj.bias)
    for module in transformer.time_text_embed.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
    for block in transformer.transformer_blocks:
        for norm in (block.norm1, block.norm1_context):
            if getattr(norm, "linear", None) is not None:
                nn.init.zeros_(norm.linear.weight)
                nn.init.zeros_(norm.linear.bias)
    for layer in (transformer.norm_out.linear, transformer.proj_out):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def spread_positions(transformer: SD3Transformer2DModel, grid: int, spacing: float) -> None:
    """Give a small token grid sin-cos positions `spacing` apart (the buffer is saved with the weights).

    diffusers' PatchEmbed spreads positions 0..base_size over its whole pos_embed_max_size grid and crops the
    middle, so a tiny grid got positions ~0.1 apart: the 9 tokens of a 48 px image with 16 px patches had
    position embeddings with cosine similarity > 0.999, and the DiT could not tell one cell from another
    (it painted the same whatever its caption said). SD3 itself spaces positions 1/3 apart over 64
    tokens per side, where the high frequencies separate them; a 3-token side needs wider spacing.
    """
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    pe = transformer.pos_embed
    emb = get_2d_sincos_pos_embed(pe.proj.out_channels, grid, base_size=grid, interpolation_scale=1.0 / spacing,
                                  output_type="pt")
    with torch.no_grad():
        pe.pos_embed.copy_(torch.as_tensor(emb, dtype=pe.pos_embed.dtype).reshape(pe.pos_embed.shape))
