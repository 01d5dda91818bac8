"""GenEval's own detector, the mmdet 2.x Mask2Former Swin-S checkpoint, in plain PyTorch (no mmcv, no mmdet).

GenEval scores with `mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth` run by
mmdet 2.x, which needs mmcv-full 1.7: the part of GenEval its users most often fail to install. The network
is the same Mask2Former that transformers ships (Swin backbone, multi-scale deformable-attention pixel
decoder, 9-layer masked-attention decoder), so this module reads the official file with
`torch.load(weights_only=True)`, renames its mmdet keys to `Mask2FormerForUniversalSegmentation`'s (every key
used, none left over), and copies mmdet's test pipeline and post-processing around it:

- preprocessing (the config's test pipeline): keep-ratio resize into 1333 x 800 with OpenCV bilinear on the
  uint8 image (mmcv `imrescale`), ImageNet mean/std on RGB (`Normalize`), then zero padding to a multiple of
  32 (`Pad` comes after `Normalize`, so the padding is 0 in normalised units);
- post-processing: mask logits upsampled to the padded input, cropped to the resized image, resized to the
  original size, then mmdet's `instance_postprocess` (`detect.mask_instances`).

Only the renaming is written here: mmdet's `PatchMerging` gathers each 2 x 2 patch with `nn.Unfold`
(channel-major), transformers' concatenates the four corners (corner-major), so the merge's reduction and
norm weights are permuted (`unfold_order`), as transformers' own Swin/UperNet converter does.

The architecture (widths, depths, heads, window, classes, queries, layer counts) is read from the
checkpoint's shapes, so a small random checkpoint in the same key layout (tests) loads through the same code.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from uae_data.detection import Detection
from uae_data.shards import file_sha256
from uae_data.core.errors import InputError
from uae_data.core.device import default_device
from uae_eval.geneval.detect import DETECTORS, label_namer, mask_instances, upright_rgb

OFFICIAL_FILE = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth"
# OpenMMLab names each published checkpoint after the first 8 hex digits of its sha256 (mmdet's
# publish_model); the full hash is not published, so this prefix is what a file can be checked against.
OFFICIAL_SHA256_PREFIX = "743b7d99"
OFFICIAL_URL = ("https://download.openmmlab.com/mmdetection/v2.0/mask2former/"
                "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco/" + OFFICIAL_FILE)
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)  # RGB, the config's img_norm_cfg
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
SCALE = (1333, 800)  # (long edge, short edge) limits of the keep-ratio Resize
SIZE_DIVISOR = 32
# mmdet's COCO class order (CocoDataset.CLASSES), which is GenEval's object_names.txt order
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush")


@dataclass(frozen=True)
class Architecture:
    """What the checkpoint's shapes say about the network (the official file: Swin-S, 80 classes)."""

    embed_dim: int
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    window: int
    num_classes: int
    num_queries: int
    hidden: int
    encoder_layers: int
    encoder_ffn: int
    decoder_layers: int
    decoder_ffn: int
    levels: int
    points: int
    attention_heads: int


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The mmdet checkpoint's state dict, read with weights_only=True (no code runs while reading).

    mmdet checkpoints are {"meta": {...}, "state_dict": {...}}, meta normally of strings, numbers, tuples and
    dicts; no extra type is allow-listed, so a file that needs one is refused in one line naming it (the official
    file could not be downloaded where this was written, so that its meta loads is not yet confirmed).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: detector checkpoint not found; download {OFFICIAL_FILE} ({OFFICIAL_URL}) "
                         f"and pass it with detector.checkpoint=PATH")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError, zip errors, truncated files: all one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: cannot read this checkpoint with torch.load(weights_only=True) ({first}); "
                         f"expected {OFFICIAL_FILE}") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: not an MMDetection checkpoint (no state_dict of tensors); expected {OFFICIAL_FILE}")
    if any(k.startswith("panoptic_head.transformer_decoder.layers.0.cross_attn") for k in state):
        raise InputError(f"{path}: this is the MMDetection 3.x conversion of the checkpoint (…c9d0c4f2.pth), which "
                         f"GenEval's MMDetection 2.x cannot load either; use {OFFICIAL_FILE}")
    if "panoptic_head.cls_embed.weight" not in state or "backbone.patch_embed.projection.weight" not in state:
        raise InputError(f"{path}: not an MMDetection 2.x Mask2Former Swin checkpoint (no panoptic_head.cls_embed / "
                         f"backbone.patch_embed keys); expected {OFFICIAL_FILE}")
    return state


def architecture(state: dict[str, torch.Tensor]) -> Architecture:
    """Read widths, depths and counts off the key layout and tensor shapes."""
    def count(pattern: str) -> int:
        found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
        return max(found) + 1 if found else 0

    stages = count(r"backbone\.stages\.(\d+)\.")
    depths = tuple(count(rf"backbone\.stages\.{i}\.blocks\.(\d+)\.") for i in range(stages))
    tables = [state[f"backbone.stages.{i}.blocks.0.attn.w_msa.relative_position_bias_table"] for i in range(stages)]
    side = int(round(tables[0].shape[0] ** 0.5))
    head = "panoptic_head."
    offsets = state[f"{head}pixel_decoder.encoder.layers.0.attentions.0.sampling_offsets.weight"]
    weights = state[f"{head}pixel_decoder.encoder.layers.0.attentions.0.attention_weights.weight"]
    levels = state[f"{head}level_embed.weight"].shape[0]
    attention_heads = 8  # mmdet config: num_heads 8 in both transformers (not recoverable from shapes alone)
    points = weights.shape[0] // (attention_heads * levels)
    if offsets.shape[0] != attention_heads * levels * points * 2:
        raise InputError("checkpoint: deformable attention shapes do not fit 8 heads; not GenEval's Mask2Former")
    return Architecture(
        embed_dim=state["backbone.patch_embed.projection.weight"].shape[0], depths=depths,
        heads=tuple(t.shape[1] for t in tables), window=(side + 1) // 2,
        num_classes=state[f"{head}cls_embed.weight"].shape[0] - 1,
        num_queries=state[f"{head}query_embed.weight"].shape[0],
        hidden=state[f"{head}query_embed.weight"].shape[1],
        encoder_layers=count(rf"{re.escape(head)}pixel_decoder\.encoder\.layers\.(\d+)\."),
        encoder_ffn=state[f"{head}pixel_decoder.encoder.layers.0.ffns.0.layers.0.0.weight"].shape[0],
        decoder_layers=count(rf"{re.escape(head)}transformer_decoder\.layers\.(\d+)\."),
        decoder_ffn=state[f"{head}transformer_decoder.layers.0.ffns.0.layers.0.0.weight"].shape[0],
        levels=levels, points=points, attention_heads=attention_heads)


def hf_config(arch: Architecture, class_names: tuple[str, ...] | None = None):
    """The transformers Mask2FormerConfig of the same network."""
    from transformers import Mask2FormerConfig, SwinConfig

    names = class_names or (COCO_CLASSES if arch.num_classes == len(COCO_CLASSES)
                            else tuple(f"class_{i}" for i in range(arch.num_classes)))
    stages = [f"stage{i + 1}" for i in range(len(arch.depths))]
    backbone = SwinConfig(embed_dim=arch.embed_dim, depths=list(arch.depths), num_heads=list(arch.heads),
                          window_size=arch.window, mlp_ratio=4.0, qkv_bias=True, drop_path_rate=0.0,
                          out_features=stages)
    return Mask2FormerConfig(
        backbone_config=backbone, use_pretrained_backbone=False, num_labels=arch.num_classes,
        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        num_queries=arch.num_queries, hidden_dim=arch.hidden, feature_size=arch.hidden,
        mask_feature_size=arch.hidden, encoder_layers=arch.encoder_layers,
        encoder_feedforward_dim=arch.encoder_ffn, decoder_layers=arch.decoder_layers + 1,  # HF counts the
        dim_feedforward=arch.decoder_ffn, num_attention_heads=arch.attention_heads,  # initial prediction
        feature_strides=[4 * 2 ** i for i in range(len(arch.depths))], common_stride=4,
        enforce_input_projection=False, pre_norm=False, dropout=0.0)


def unfold_order(channels: int) -> torch.Tensor:
    """Index i of transformers' merged patch vector → its index in mmdet's nn.Unfold vector.

    transformers: [x(0,0), x(1,0), x(0,1), x(1,1)] each of C channels (corner-major, (row, col) offsets);
    mmdet: nn.Unfold(2, stride 2) gives channel-major c*4 + k with k = 2*row + col.
    """
    unfold_k = torch.tensor([0, 2, 1, 3])  # (0,0) (1,0) (0,1) (1,1) as unfold kernel positions
    corner = torch.arange(4 * channels) // channels
    c = torch.arange(4 * channels) % channels
    return c * 4 + unfold_k[corner]


def relative_position_index(window: int) -> torch.Tensor:
    """Swin's (W², W²) relative position index, as mmdet's WindowMSA builds and saves it."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def convert(state: dict[str, torch.Tensor], arch: Architecture) -> dict[str, torch.Tensor]:
    """mmdet 2.x keys → transformers Mask2FormerForUniversalSegmentation keys. Every mmdet key is used."""
    src = dict(state)
    out: dict[str, torch.Tensor] = {}

    def take(key: str) -> torch.Tensor:
        try:
            return src.pop(key)
        except KeyError:
            raise InputError(f"checkpoint: key {key!r} missing; not GenEval's Mask2Former layout") from None

    def move(dst: str, key: str) -> None:
        out[dst] = take(key)

    def linear(dst: str, key: str, bias: bool = True) -> None:
        move(f"{dst}.weight", f"{key}.weight")
        if bias:
            move(f"{dst}.bias", f"{key}.bias")

    def split_qkv(dst: str, weight: str, bias: str, names=("q_proj", "k_proj", "v_proj")) -> None:
        for name, w, b in zip(names, take(weight).chunk(3, 0), take(bias).chunk(3, 0)):
            out[f"{dst}.{name}.weight"], out[f"{dst}.{name}.bias"] = w.contiguous(), b.contiguous()

    swin, bb = "model.pixel_level_module.encoder", "backbone"
    linear(f"{swin}.swin.embeddings.patch_embeddings.projection", f"{bb}.patch_embed.projection")
    linear(f"{swin}.swin.embeddings.norm", f"{bb}.patch_embed.norm")
    for i, depth in enumerate(arch.depths):
        for j in range(depth):
            s, d = f"{bb}.stages.{i}.blocks.{j}", f"{swin}.swin.encoder.layers.{i}.blocks.{j}"
            linear(f"{d}.layernorm_before", f"{s}.norm1")
            linear(f"{d}.layernorm_after", f"{s}.norm2")
            split_qkv(f"{d}.attention", f"{s}.attn.w_msa.qkv.weight", f"{s}.attn.w_msa.qkv.bias")
            linear(f"{d}.attention.o_proj", f"{s}.attn.w_msa.proj")
            move(f"{d}.attention.relative_position_bias.relative_position_bias_table",
                 f"{s}.attn.w_msa.relative_position_bias_table")
            index = src.pop(f"{s}.attn.w_msa.relative_position_index", None)  # a saved buffer: must be Swin's
            if index is not None and not torch.equal(index.long(), relative_position_index(arch.window)):
                raise InputError(f"checkpoint: {s}.attn.w_msa.relative_position_index is not Swin's index")
            linear(f"{d}.mlp.fc1", f"{s}.ffn.layers.0.0")
            linear(f"{d}.mlp.fc2", f"{s}.ffn.layers.1")
        if i < len(arch.depths) - 1:
            order = unfold_order(arch.embed_dim * 2 ** i)
            s, d = f"{bb}.stages.{i}.downsample", f"{swin}.swin.encoder.layers.{i}.downsample"
            out[f"{d}.reduction.weight"] = take(f"{s}.reduction.weight")[:, order].contiguous()
            out[f"{d}.norm.weight"] = take(f"{s}.norm.weight")[order].contiguous()
            out[f"{d}.norm.bias"] = take(f"{s}.norm.bias")[order].contiguous()
        linear(f"{swin}.hidden_states_norms.stage{i + 1}", f"{bb}.norm{i}")
    last = arch.embed_dim * 2 ** (len(arch.depths) - 1)  # transformers' final Swin norm: unused by the backbone
    out[f"{swin}.swin.layernorm.weight"], out[f"{swin}.swin.layernorm.bias"] = torch.ones(last), torch.zeros(last)

    ph, pd = "panoptic_head.pixel_decoder", "model.pixel_level_module.decoder"
    for i in range(arch.levels):  # input_convs[0] reads the coarsest level in both
        linear(f"{pd}.input_projections.{i}.0", f"{ph}.input_convs.{i}.conv")
        linear(f"{pd}.input_projections.{i}.1", f"{ph}.input_convs.{i}.gn")
    for layer in range(arch.encoder_layers):
        s, d = f"{ph}.encoder.layers.{layer}", f"{pd}.encoder.layers.{layer}"
        for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj"):
            linear(f"{d}.self_attn.{name}", f"{s}.attentions.0.{name}")
        linear(f"{d}.self_attn_layer_norm", f"{s}.norms.0")
        linear(f"{d}.fc1", f"{s}.ffns.0.layers.0.0")
        linear(f"{d}.fc2", f"{s}.ffns.0.layers.1")
        linear(f"{d}.final_layer_norm", f"{s}.norms.1")
    move(f"{pd}.level_embed", f"{ph}.level_encoding.weight")
    move(f"{pd}.adapter_1.0.weight", f"{ph}.lateral_convs.0.conv.weight")  # ConvModule + GN: no conv bias
    linear(f"{pd}.adapter_1.1", f"{ph}.lateral_convs.0.gn")
    move(f"{pd}.layer_1.0.weight", f"{ph}.output_convs.0.conv.weight")
    linear(f"{pd}.layer_1.1", f"{ph}.output_convs.0.gn")
    linear(f"{pd}.mask_projection", f"{ph}.mask_feature")

    th, td = "panoptic_head.transformer_decoder", "model.transformer_module.decoder"
    for layer in range(arch.decoder_layers):  # mmdet operation_order: cross_attn, norm, self_attn, norm, ffn, norm
        s, d = f"{th}.layers.{layer}", f"{td}.layers.{layer}"
        move(f"{d}.cross_attn.in_proj_weight", f"{s}.attentions.0.attn.in_proj_weight")
        move(f"{d}.cross_attn.in_proj_bias", f"{s}.attentions.0.attn.in_proj_bias")
        linear(f"{d}.cross_attn.out_proj", f"{s}.attentions.0.attn.out_proj")
        split_qkv(f"{d}.self_attn", f"{s}.attentions.1.attn.in_proj_weight", f"{s}.attentions.1.attn.in_proj_bias")
        linear(f"{d}.self_attn.out_proj", f"{s}.attentions.1.attn.out_proj")
        linear(f"{d}.cross_attn_layer_norm", f"{s}.norms.0")
        linear(f"{d}.self_attn_layer_norm", f"{s}.norms.1")
        linear(f"{d}.final_layer_norm", f"{s}.norms.2")
        linear(f"{d}.fc1", f"{s}.ffns.0.layers.0.0")
        linear(f"{d}.fc2", f"{s}.ffns.0.layers.1")
    linear(f"{td}.layernorm", f"{th}.post_norm")
    for i, k in enumerate((0, 2, 4)):
        linear(f"{td}.mask_predictor.mask_embedder.{i}.0", f"panoptic_head.mask_embed.{k}")
    move("model.transformer_module.queries_embedder.weight", "panoptic_head.query_embed.weight")  # query pos
    move("model.transformer_module.queries_features.weight", "panoptic_head.query_feat.weight")
    move("model.transformer_module.level_embed.weight", "panoptic_head.level_embed.weight")
    linear("class_predictor", "panoptic_head.cls_embed")
    if src:
        raise InputError(f"checkpoint: {len(src)} keys this port does not know (e.g. {sorted(src)[0]!r}); "
                         f"not GenEval's Mask2Former layout")
    return out


def build_model(state: dict[str, torch.Tensor]):
    """(Mask2FormerForUniversalSegmentation in eval mode, Architecture) from an mmdet state dict."""
    from transformers import Mask2FormerForUniversalSegmentation

    arch = architecture(state)
    converted = convert(state, arch)
    model = Mask2FormerForUniversalSegmentation(hf_config(arch)).eval()
    expected = model.state_dict()
    converted["criterion.empty_weight"] = expected["criterion.empty_weight"]  # training loss only
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    if missing or extra:  # a transformers release that renamed a module: say so, do not run half-loaded
        raise RuntimeError(f"MMDetection → transformers key map is out of date: missing {missing[:3]}, extra {extra[:3]}")
    for k, v in converted.items():
        if v.shape != expected[k].shape:
            raise InputError(f"checkpoint: {k} has shape {tuple(v.shape)}, the network needs {tuple(expected[k].shape)}")
    model.load_state_dict(converted, strict=True)
    return model, arch


def preprocess(image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
    """mmdet's test pipeline: (3, H_pad, W_pad) float32 and the resized image's (h, w) inside it."""
    try:
        import cv2
    except ImportError:
        raise InputError("geneval-mask2former needs OpenCV for MMDetection's exact resize: "
                         "pip install opencv-python-headless") from None
    rgb = np.asarray(upright_rgb(image), dtype=np.uint8)
    h, w = rgb.shape[:2]
    factor = min(max(SCALE) / max(h, w), min(SCALE) / min(h, w))  # mmcv.rescale_size
    new_w, new_h = int(w * factor + 0.5), int(h * factor + 0.5)
    resized = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_LINEAR)  # uint8 in, uint8 out (as mmcv)
    normed = (resized.astype(np.float32) - MEAN) / STD
    pad_h, pad_w = -(-new_h // SIZE_DIVISOR) * SIZE_DIVISOR, -(-new_w // SIZE_DIVISOR) * SIZE_DIVISOR
    padded = np.zeros((pad_h, pad_w, 3), dtype=np.float32)
    padded[:new_h, :new_w] = normed
    return torch.from_numpy(padded).permute(2, 0, 1).contiguous(), (new_h, new_w)


@DETECTORS.register("geneval-mask2former")
class OfficialMask2FormerDetector:
    """GenEval's official detector from its mmdet checkpoint file, run by transformers' Mask2Former.

    checkpoint      path to mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth
                    (GenEval's download_models.sh saves it as mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth)
    device          "cuda" | "cpu" | ...; default cuda when available
    dtype           "float32" (default, the official precision) | "bfloat16" | "float16"
    max_detections  top (query, class) pairs kept per image (the config's max_per_image: 100)
    min_score       drop detections scoring below this (default 0: keep all; the GenEval rules filter)

    One image per forward pass, so an image's padding (and so its detections) never depends on its batch.
    """

    def __init__(self, checkpoint: str | None = None, device: str | None = None, dtype: str = "float32",
                 max_detections: int = 100, min_score: float = 0.0) -> None:
        if not checkpoint:
            raise InputError(f"detector geneval-mask2former needs detector.checkpoint=PATH to {OFFICIAL_FILE} "
                             f"({OFFICIAL_URL})")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise InputError(f"geneval-mask2former: dtype must be float32, bfloat16 or float16, got {dtype!r}")
        self.path = Path(checkpoint)
        state = read_checkpoint(self.path)
        self.sha256 = file_sha256(self.path)
        self.device = device or default_device()
        self.dtype = getattr(torch, dtype)
        self.max_detections, self.min_score = max_detections, min_score
        self.model, self.arch = build_model(state)
        self.model.to(self.device, self.dtype)
        self.label_name = label_namer(self.model.config.id2label)

    @torch.inference_mode()
    def forward(self, image: Image.Image) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int], tuple[int, int]]:
        """Raw outputs for one image: class logits (Q, K+1), mask logits (Q, H/4, W/4), input and resized size."""
        pixels, valid = preprocess(image)
        out = self.model(pixel_values=pixels[None].to(self.device, self.dtype))
        return out.class_queries_logits[0].float(), out.masks_queries_logits[0].float(), tuple(pixels.shape[-2:]), valid

    def __call__(self, images: list[Image.Image]) -> list[list[Detection]]:
        results = []
        for image in images:
            image = upright_rgb(image)
            classes, masks, input_size, valid = self.forward(image)
            results.append(mask_instances(classes, masks, input_size, valid, (image.height, image.width),
                                          self.label_name, self.max_detections, self.min_score))
        return results

    def class_names(self) -> list[str]:
        """The checkpoint's classes as GenEval names, in class-id order (object_names.txt for the official file)."""
        return [self.label_name(i) for i in range(self.arch.num_classes)]

    def provenance(self) -> dict:
        official = (self.sha256.startswith(OFFICIAL_SHA256_PREFIX) and self.arch.num_classes == 80
                    and self.dtype == torch.float32)
        return {
            "backend": "geneval-mask2former",
            "checkpoint": str(self.path),
            "checkpoint_sha256": self.sha256,
            "official_sha256_prefix": OFFICIAL_SHA256_PREFIX,
            # true when the file's sha256 starts with the 8 digits OpenMMLab published in its name (the full
            # hash is not published) and it runs in float32 as GenEval does
            "official_compatible": bool(official),
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "max_detections": self.max_detections,
            "min_score": self.min_score,
            "preprocessing": {"resize": "keep ratio within 1333x800, OpenCV bilinear on uint8",
                              "mean": MEAN.tolist(), "std": STD.tolist(), "pad": "zeros after normalising, "
                              f"to a multiple of {SIZE_DIVISOR}"},
            "architecture": asdict(self.arch),
        }
