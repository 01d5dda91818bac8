"""The key layout of GenEval's mmdet 2.x Mask2Former checkpoint, written out with shapes.

Why: the official file cannot be downloaded where uae's tests run, so tests and `tools/geneval_detector_parity.py`
build random checkpoints in the same layout. The layout is listed here independently of the converter
(`official_mask2former.convert`), so a key the converter forgets or invents fails the "every key used, none
left over" check instead of passing by construction. Defaults are the official Swin-S network.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Layout:
    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 18, 2)
    heads: tuple[int, ...] = (3, 6, 12, 24)
    window: int = 7
    num_classes: int = 80
    num_queries: int = 100
    hidden: int = 256
    encoder_layers: int = 6
    encoder_ffn: int = 1024
    decoder_layers: int = 9
    decoder_ffn: int = 2048
    levels: int = 3
    points: int = 4
    attention_heads: int = 8


def shapes(layout: Layout = Layout()) -> dict[str, tuple[int, ...]]:
    """Every key of the checkpoint's state_dict → its shape (mmdet 2.x names)."""
    out: dict[str, tuple[int, ...]] = {}

    def lin(key: str, o: int, i: int, bias: bool = True) -> None:
        out[f"{key}.weight"] = (o, i)
        if bias:
            out[f"{key}.bias"] = (o,)

    def norm(key: str, c: int) -> None:
        out[f"{key}.weight"], out[f"{key}.bias"] = (c,), (c,)

    c, w = layout.embed_dim, layout.window
    out["backbone.patch_embed.projection.weight"], out["backbone.patch_embed.projection.bias"] = (c, 3, 4, 4), (c,)
    norm("backbone.patch_embed.norm", c)
    for i, (depth, heads) in enumerate(zip(layout.depths, layout.heads)):
        width = c * 2 ** i
        for j in range(depth):
            b = f"backbone.stages.{i}.blocks.{j}"
            norm(f"{b}.norm1", width)
            out[f"{b}.attn.w_msa.relative_position_bias_table"] = ((2 * w - 1) ** 2, heads)
            out[f"{b}.attn.w_msa.relative_position_index"] = (w * w, w * w)
            lin(f"{b}.attn.w_msa.qkv", 3 * width, width)
            lin(f"{b}.attn.w_msa.proj", width, width)
            norm(f"{b}.norm2", width)
            lin(f"{b}.ffn.layers.0.0", 4 * width, width)
            lin(f"{b}.ffn.layers.1", width, 4 * width)
        if i < len(layout.depths) - 1:
            norm(f"backbone.stages.{i}.downsample.norm", 4 * width)
            lin(f"backbone.stages.{i}.downsample.reduction", 2 * width, 4 * width, bias=False)
        norm(f"backbone.norm{i}", width)
    h, p = layout.hidden, "panoptic_head.pixel_decoder"
    widths = [c * 2 ** i for i in range(len(layout.depths))]
    for i in range(layout.levels):
        out[f"{p}.input_convs.{i}.conv.weight"], out[f"{p}.input_convs.{i}.conv.bias"] = (h, widths[-1 - i], 1, 1), (h,)
        norm(f"{p}.input_convs.{i}.gn", h)
    for layer in range(layout.encoder_layers):
        e = f"{p}.encoder.layers.{layer}"
        n = layout.attention_heads * layout.levels * layout.points
        lin(f"{e}.attentions.0.sampling_offsets", 2 * n, h)
        lin(f"{e}.attentions.0.attention_weights", n, h)
        lin(f"{e}.attentions.0.value_proj", h, h)
        lin(f"{e}.attentions.0.output_proj", h, h)
        lin(f"{e}.ffns.0.layers.0.0", layout.encoder_ffn, h)
        lin(f"{e}.ffns.0.layers.1", h, layout.encoder_ffn)
        norm(f"{e}.norms.0", h)
        norm(f"{e}.norms.1", h)
    out[f"{p}.level_encoding.weight"] = (layout.levels, h)
    out[f"{p}.lateral_convs.0.conv.weight"] = (h, widths[0], 1, 1)
    norm(f"{p}.lateral_convs.0.gn", h)
    out[f"{p}.output_convs.0.conv.weight"] = (h, h, 3, 3)
    norm(f"{p}.output_convs.0.gn", h)
    out[f"{p}.mask_feature.weight"], out[f"{p}.mask_feature.bias"] = (h, h, 1, 1), (h,)
    t = "panoptic_head.transformer_decoder"
    for layer in range(layout.decoder_layers):
        d = f"{t}.layers.{layer}"
        for a in (0, 1):
            out[f"{d}.attentions.{a}.attn.in_proj_weight"], out[f"{d}.attentions.{a}.attn.in_proj_bias"] = (3 * h, h), (3 * h,)
            lin(f"{d}.attentions.{a}.attn.out_proj", h, h)
        lin(f"{d}.ffns.0.layers.0.0", layout.decoder_ffn, h)
        lin(f"{d}.ffns.0.layers.1", h, layout.decoder_ffn)
        for k in range(3):
            norm(f"{d}.norms.{k}", h)
    norm(f"{t}.post_norm", h)
    out["panoptic_head.query_embed.weight"] = (layout.num_queries, h)
    out["panoptic_head.query_feat.weight"] = (layout.num_queries, h)
    out["panoptic_head.level_embed.weight"] = (layout.levels, h)
    lin("panoptic_head.cls_embed", layout.num_classes + 1, h)
    for k in (0, 2, 4):
        lin(f"panoptic_head.mask_embed.{k}", h, h)
    return out


# logits of a unit-scale query times this: sharp enough that some detections pass GenEval's 0.3 bar and a
# few its 0.9 counting bar, without every query being certain
CLASS_HEAD_STD = 0.3
# the decoder's residual branches (attention out_proj, FFN fc2) start small, so each query keeps its own
# identity through the 9 layers (with unit branches all 100 queries converge to one state and one class)
DECODER_BRANCH_SCALE = 0.2


def random_state(layout: Layout = Layout(), seed: int = 0) -> dict[str, torch.Tensor]:
    """A random state dict in the layout, scaled so that the network's outputs are not degenerate: the class
    head is sharp enough that some detections pass GenEval's 0.3 bar, norms are near 1, and the saved
    relative_position_index buffers are Swin's."""
    from uae_eval.geneval.official_mask2former import relative_position_index

    g = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape in shapes(layout).items():
        if key.endswith("relative_position_index"):
            state[key] = relative_position_index(layout.window)
            continue
        is_norm = any(s in key for s in ("norm", ".gn.", "norms."))
        if is_norm and key.endswith(".weight"):
            value = 1 + 0.1 * torch.randn(shape, generator=g)
        elif key == "panoptic_head.cls_embed.weight":
            value = CLASS_HEAD_STD * torch.randn(shape, generator=g)
        elif key.endswith(".bias"):
            value = 0.02 * torch.randn(shape, generator=g)
        elif key.endswith("relative_position_bias_table"):
            value = 0.02 * torch.randn(shape, generator=g)
        elif any(key.startswith(f"panoptic_head.{e}") for e in ("query_embed", "query_feat", "level_embed")) \
                or key.endswith("level_encoding.weight"):
            value = torch.randn(shape, generator=g)  # embeddings: unit scale, as trained ones roughly are
        else:  # linear and conv weights: variance-preserving (1 / fan_in)
            fan_in = int(torch.tensor(shape[1:]).prod())
            value = torch.randn(shape, generator=g) / fan_in ** 0.5
            if key.startswith("panoptic_head.transformer_decoder") and (".out_proj." in key or "layers.1." in key):
                value = value * DECODER_BRANCH_SCALE
        state[key] = value.float()
    return state


def save_checkpoint(path, layout: Layout = Layout(), seed: int = 0) -> None:
    """Write a random checkpoint as mmdet saves one: {"meta": {...builtins...}, "state_dict": {...}}."""
    meta = {"mmdet_version": "2.x (random weights, uae test layout)", "CLASSES": None, "seed": seed}
    torch.save({"meta": meta, "state_dict": random_state(layout, seed)}, path)
