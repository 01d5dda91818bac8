"""GenEval scoring throughput (images/s): detector + colour classifier + official rules.

Paths, all in one run on the same images:
  scene      the scene world's exact detector + exact colour (CPU)
  tiny       a tiny transformers Mask2Former + tiny open_clip from config (random weights)
  real       (CUDA only, or --real) Mask2Former with a Swin-S backbone at the real size (GenEval's
             detector architecture) + open_clip ViT-L-14, random weights, images 512x512, in fp32
             and with the detector in bf16; the ratio bf16/fp32 is quoted.
  port       (--port) GenEval's own checkpoint format: uae's geneval-mask2former (the mmdet 2.x file, a random
             one in the official Swin-S layout, mmdet preprocessing with OpenCV, one image per pass as
             GenEval) vs the same weights saved as a transformers folder and run by the `mask2former`
             backend (transformers' image processor at the same 1333x800 input size, batched); detector
             only, 512x512 photos; the ratio port/transformers is quoted.
Random weights give arbitrary detections, so `real` times the forward passes plus colouring of
whatever passes the thresholds (min_score=0 forces colouring of the top-16 per class of a class set).

Usage: python benchmarks/geneval_scoring.py [--n 64] [--real] [--port [--port-n 8]]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from uae_eval.geneval import rules
from uae_eval.geneval.colour import build_colourer
from uae_eval.geneval.detectors import build_detector
from uae_eval.geneval.generators import build_generator
from uae_eval.geneval.prompts import load_metadata, scene_metadata_path


def score(detector, colourer, metas, images, batch: int) -> float:
    """Images/s for detect -> colour -> rules over all images (after one warm-up batch)."""
    detector(images[:batch])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        found = detector(images[i:i + batch])
        for meta, im, dets in zip(metas[i:i + batch], images[i:i + batch], found):
            colourer(im, dets)
            rules.evaluate(meta, rules.filter_detections(meta, dets))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - t)


def real_size_models(tmp: Path) -> Path:
    """Mask2Former Swin-S (GenEval's detector architecture) from config, random weights."""
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor, SwinConfig

    from uae_eval.geneval.prompts import load_class_names, official_class_names_path

    names = dict(enumerate(load_class_names(official_class_names_path())))
    swin_s = SwinConfig(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7,
                        out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = Mask2FormerConfig(backbone_config=swin_s, num_queries=100, id2label=names, label2id={v: k for k, v in names.items()})
    Mask2FormerForUniversalSegmentation(cfg).save_pretrained(tmp / "m2f")
    Mask2FormerImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333}).save_pretrained(tmp / "m2f")
    return tmp / "m2f"


def detect_rate(detector, images, batch: int) -> float:
    """Detector-only images/s (after one warm-up batch)."""
    detector(images[:batch])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(images), batch):
        detector(images[i:i + batch])
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - t)


def port_vs_transformers(tmp: Path, n: int, device: str) -> dict[str, float]:
    """The ported official detector vs transformers' own Mask2Former path on identical weights."""
    import numpy as np
    import skimage.data as sd
    from PIL import Image
    from transformers import Mask2FormerImageProcessor

    from uae_eval.geneval import official_layout, official_mask2former as port

    ckpt = tmp / "official.pth"
    official_layout.save_checkpoint(ckpt)
    det_port = build_detector("geneval-mask2former", checkpoint=str(ckpt), device=device)
    det_port.model.save_pretrained(tmp / "hf")  # the same network and weights as a transformers folder
    Mask2FormerImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333}).save_pretrained(tmp / "hf")
    det_hf = build_detector("mask2former", model=str(tmp / "hf"), device=device)
    photos = [sd.astronaut(), sd.immunohistochemistry(), np.repeat(sd.camera()[..., None], 3, 2)]
    images = [Image.fromarray(photos[i % 3]) for i in range(n)]
    out = {f"port: geneval-mask2former (checkpoint file), 512px, batch 1": detect_rate(det_port, images, 1),
           f"transformers: mask2former backend, same weights, 800px, batch 4": detect_rate(det_hf, images, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--real", action="store_true", help="run the real-size path even without CUDA (slow)")
    ap.add_argument("--port", action="store_true", help="time the ported official detector vs transformers' own")
    ap.add_argument("--port-n", type=int, default=8, help="images for --port")
    args = ap.parse_args()
    from tiny_geneval_models import tiny_clip, tiny_mask2former  # beside this script (tests import it too)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    metas = load_metadata(scene_metadata_path())
    metas = (metas * (args.n // len(metas) + 1))[: args.n]
    images = build_generator("oracle", image_size=64)(metas, list(range(args.n)))
    out = {}
    out["scene"] = score(build_detector("scene"), build_colourer("scene"), metas, images, 16)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        det = build_detector("mask2former", model=str(tiny_mask2former(tmp / "tm")), device=device)
        col = build_colourer("clip", model=str(tiny_clip(tmp / "tc")), pretrained=None, device=device)
        out["tiny mask2former + tiny clip"] = score(det, col, metas, images, 16)
        if device == "cuda" or args.real:
            big = [im.resize((512, 512)) for im in images]
            path = real_size_models(tmp)
            clip = build_colourer("clip", model="ViT-L-14", pretrained=None, device=device, min_score=0.0)
            for dtype in ("float32", "bfloat16"):
                det = build_detector("mask2former", model=str(path), device=device, dtype=dtype)
                out[f"real-size Swin-S Mask2Former ({dtype}) + ViT-L-14, 512px"] = score(det, clip, metas, big, 16)
                if device == "cuda":
                    out[f"  peak GPU memory GiB ({dtype})"] = torch.cuda.max_memory_allocated() / 2**30
        if args.port:
            ported = port_vs_transformers(tmp, args.port_n, device)
            out.update(ported)
    print(f"GenEval scoring, {args.n} images, device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'})")
    for k, v in out.items():
        print(f"  {k:60s} {v:9.2f}" + ("" if "memory" in k else " images/s"))
    f32 = [v for k, v in out.items() if "float32" in k and "memory" not in k]
    b16 = [v for k, v in out.items() if "bfloat16" in k and "memory" not in k]
    if f32 and b16:
        print(f"  ratio bf16/fp32 detector throughput: {b16[0] / f32[0]:.2f}")
    if args.port:
        a, b = list(ported.values())
        print(f"  ratio port/transformers detector throughput ({args.port_n} images): {a / b:.2f}")
    print(f"  ratio scene/tiny-model path: {out['scene'] / out['tiny mask2former + tiny clip']:.2f}")


if __name__ == "__main__":
    main()
