"""Parity of uae's mmdet-mask2former port against an independent implementation of GenEval's detector.

The official weights cannot be downloaded here, so both implementations run the same random checkpoint in
the official mmdet 2.x key layout (`uae_eval.geneval.official_layout`, Swin-S, seed 0) on the same inputs:
skimage photos (square, landscape, portrait, grey) and scene renders. The reference is jax-geneval
(github.com/PeppaKing8/jax-geneval, a JAX port that loads the same .pth and was checked against mmdet
itself); it runs in its own Python with JAX (`--reference-python`), reading the weights as numpy arrays.

Compared per image: class logits (Q, 81), mask logits (Q, H/4, W/4), the detections that mmdet's
post-processing makes from each (labels, scores, boxes), and the GenEval decisions of every official prompt
that needs no colour classifier (single object, two objects, counting, position: 359 prompts). Inputs are
uae's preprocessing; jax-geneval's own preprocessing is compared separately inside the resized image (it pads
before normalising where mmdet pads after, which only changes the padding of non-square inputs).

Not part of CI (it needs the fetched reference and JAX). It writes `--fixture`: the reference's outputs for
three of the images, which `tests/test_official_mask2former.py` compares against on every run.

usage:
  python -m venv jaxenv && jaxenv/bin/pip install jax numpy pillow opencv-python-headless
  python tools/geneval_detector_parity.py --reference-src JAX_GENEVAL/src --reference-python jaxenv/bin/python \
      --work /tmp/parity [--fixture tests/fixtures/geneval_detector_parity.npz]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

FIXTURE_IMAGES = ("astronaut", "coffee", "scene-64")  # square, landscape, scene render
MASK_SAMPLES = 2048  # (query, y, x) positions of the mask logits kept in the fixture
NON_COLOUR_TAGS = ("single_object", "two_object", "counting", "position")


def parity_images() -> dict[str, "np.ndarray"]:
    """name → uint8 RGB array: 9 skimage photos and 3 scene renders (deterministic, offline)."""
    import skimage.data as sd

    from uae_data import scenes

    photos = {name: getattr(sd, name)() for name in (
        "astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry", "hubble_deep_field",
        "colorwheel", "coins")}
    out = {}
    for name, arr in photos.items():
        arr = np.asarray(arr)
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        out[name] = np.ascontiguousarray(arr[..., :3]).astype(np.uint8)
    out["rocket-portrait"] = np.ascontiguousarray(out.pop("rocket").transpose(1, 0, 2))  # a portrait input
    for size in (48, 64, 256):
        out[f"scene-{size}"] = np.asarray(scenes.render(scenes.sample_scene(size), size).convert("RGB"))
    return out


# ---------------------------------------------------------------- reference side (JAX, no torch, no uae)
def run_reference(work: Path, src: str) -> None:
    sys.path.insert(0, src)
    import jax
    import jax.numpy as jnp
    from jax_geneval.convert import convert_mask2former_detector_state_dict
    from jax_geneval.mask2former_head import mask2former_head_forward
    from jax_geneval.preprocess import preprocess_image
    from jax_geneval.swin import swin_transformer_forward

    state = dict(np.load(work / "state.npz"))
    if os.environ.get("JAX_ENABLE_X64") == "1":
        # jax-geneval builds its sine position encodings and reference points with jnp.float32; in float64 mode
        # they are built in float64 too, so that what is left is a difference of implementation
        from jax_geneval import pixel_decoder

        class Float64Numpy:
            float32 = jnp.float64

            def __getattr__(self, name):
                return getattr(jnp, name)

        pixel_decoder.jnp = Float64Numpy()
        state = {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in state.items()}
    params = convert_mask2former_detector_state_dict(state)
    inputs = np.load(work / "inputs.npz")
    forward = jax.jit(lambda x, p: (lambda c, m: (c[-1], m[-1]))(*mask2former_head_forward(
        swin_transformer_forward(x, p["backbone"]), p["head"])))
    out = {}
    for name in inputs.files:
        x = inputs[name].transpose(1, 2, 0)[None]  # (1, H, W, 3) normalised, padded
        if os.environ.get("JAX_ENABLE_X64") == "1":
            x = x.astype(np.float64)
        start = time.time()
        cls, masks = forward(jnp.asarray(x), params)
        out[f"{name}/cls"], out[f"{name}/masks"] = np.asarray(cls[0]), np.asarray(masks[0])
        h, w = x.shape[1:3]
        arr, meta = preprocess_image(str(work / "images" / f"{name}.png"), (h, w))
        out[f"{name}/pre"], out[f"{name}/pre_shape"] = arr.transpose(2, 0, 1), np.array(meta.img_shape)
        print(f"reference {name}: {x.shape[1]}x{x.shape[2]} in {time.time() - start:.1f} s", flush=True)
    np.savez(work / "reference.npz", **out)


# ---------------------------------------------------------------- uae side
def decisions(detections, metadata) -> list[bool]:
    from uae_eval.geneval import rules

    out = []
    for meta in metadata:
        by_class = rules.filter_detections(meta, detections)
        out.append(bool(rules.evaluate(meta, by_class)[0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("role", nargs="?", default="compare", choices=("compare", "reference"))
    ap.add_argument("--reference-src", required=True, help="jax-geneval's src/ folder")
    ap.add_argument("--reference-python", default=sys.executable, help="a Python with jax, numpy, pillow, cv2")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--fixture", type=Path, help="write the CI fixture here")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--float64", action="store_true", help="run both implementations in float64: what is left "
                    "is implementation difference, not float32 rounding")
    ap.add_argument("--images", nargs="*", help="only these image names")
    args = ap.parse_args()
    if args.role == "reference":
        return run_reference(args.work, args.reference_src)

    import torch
    from PIL import Image

    from uae_eval.geneval import official_layout, official_mask2former as port
    from uae_eval.geneval.detect import mask_instances
    from uae_eval.geneval.prompts import load_metadata, official_metadata_path

    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = args.work
    (work / "images").mkdir(parents=True, exist_ok=True)
    state = official_layout.random_state(official_layout.Layout(), args.seed)
    np.savez(work / "state.npz", **{k: v.numpy() for k, v in state.items()})
    images = parity_images()
    if args.images:
        images = {k: v for k, v in images.items() if k in args.images}
    inputs, valid = {}, {}
    for name, arr in images.items():
        Image.fromarray(arr).save(work / "images" / f"{name}.png")
        pixels, valid[name] = port.preprocess(Image.fromarray(arr))
        inputs[name] = pixels.numpy()
    np.savez(work / "inputs.npz", **inputs)
    start = time.time()
    subprocess.run([args.reference_python, __file__, "reference", "--reference-src", args.reference_src,
                    "--work", str(work)], check=True, env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin",
                                                          "JAX_ENABLE_X64": "1" if args.float64 else "0"})
    print(f"reference done in {time.time() - start:.0f} s")
    ref = np.load(work / "reference.npz")
    model, _ = port.build_model(dict(state))
    if args.float64:
        model = model.double()
    name_of = port.label_namer(model.config.id2label)
    metadata = [m for m in load_metadata(official_metadata_path()) if m["tag"] in NON_COLOUR_TAGS]
    rows, fixture = [], {}
    for name, arr in images.items():
        with torch.inference_mode():
            out = model(pixel_values=torch.from_numpy(inputs[name])[None].to(model.dtype))
        cls, masks = out.class_queries_logits[0], out.masks_queries_logits[0]
        r_cls, r_masks = torch.from_numpy(ref[f"{name}/cls"]).to(cls.dtype), torch.from_numpy(ref[f"{name}/masks"]).to(cls.dtype)
        size, hw = tuple(inputs[name].shape[-2:]), arr.shape[:2]
        ours = mask_instances(cls, masks, size, valid[name], hw, name_of)
        theirs = mask_instances(r_cls, r_masks, size, valid[name], hw, name_of)
        d_ours, d_theirs = decisions(ours, metadata), decisions(theirs, metadata)
        pre_h, pre_w = (int(v) for v in ref[f"{name}/pre_shape"])
        pre_diff = float(np.abs(ref[f"{name}/pre"][:, :pre_h, :pre_w] - inputs[name][:, :pre_h, :pre_w]).max())
        row = {
            "image": name, "size": f"{hw[1]}x{hw[0]}", "input": f"{size[1]}x{size[0]}",
            "class_logit_max_diff": float((cls - r_cls).abs().max()),
            "mask_logit_max_diff": float((masks - r_masks).abs().max()),
            "same_labels_top100": [d.label for d in ours] == [d.label for d in theirs],
            "score_max_diff": max(abs(a.score - b.score) for a, b in zip(ours, theirs)),
            "box_max_diff": max(max(abs(x - y) for x, y in zip(a.box, b.box)) for a, b in zip(ours, theirs)),
            "detections_over_0.3": sum(d.score > 0.3 for d in ours),
            "prompts_true": sum(d_ours), "decisions_equal": d_ours == d_theirs,
            "preprocess_max_diff_inside_image": pre_diff, "reference_pre_shape_equal": (pre_h, pre_w) == valid[name],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        if name in FIXTURE_IMAGES:
            g = torch.Generator().manual_seed(1)
            q, h, w = r_masks.shape
            idx = torch.stack([torch.randint(0, n, (MASK_SAMPLES,), generator=g) for n in (q, h, w)], 1)
            fixture[f"{name}/cls"] = ref[f"{name}/cls"]
            fixture[f"{name}/mask_index"] = idx.numpy().astype(np.int32)
            fixture[f"{name}/mask_values"] = r_masks[idx[:, 0], idx[:, 1], idx[:, 2]].numpy()
            fixture[f"{name}/top_labels"] = np.array([d.label for d in theirs[:20]])
            fixture[f"{name}/top_scores"] = np.array([d.score for d in theirs[:20]], dtype=np.float32)
            fixture[f"{name}/top_boxes"] = np.array([d.box for d in theirs[:20]], dtype=np.float32)
            fixture[f"{name}/decisions"] = np.array(d_theirs)
    summary = {
        "images": len(rows), "seed": args.seed,
        "class_logit_max_diff": max(r["class_logit_max_diff"] for r in rows),
        "mask_logit_max_diff": max(r["mask_logit_max_diff"] for r in rows),
        "all_decisions_equal": all(r["decisions_equal"] for r in rows),
        "all_top100_labels_equal": all(r["same_labels_top100"] for r in rows),
        "prompts_compared": len(metadata) * len(rows),
    }
    print("SUMMARY", json.dumps(summary))
    (work / "parity.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    if args.fixture:
        args.fixture.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.fixture, **fixture, meta=np.array(json.dumps(
            {"seed": args.seed, "reference": "PeppaKing8/jax-geneval @309d81f (JAX, CPU)",
             "dtype": "float64" if args.float64 else "float32", "summary": summary})))
        print(f"fixture → {args.fixture} ({args.fixture.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
