"""Measure a pretrained scene run (and its blind twin) and ship it as uae_train/scene_models/ with a model card.

usage: python tools/ship_scene_models.py --run RUN --blind BLIND_RUN --corpus CORPUS --command "..." [--minutes M]
  RUN       `uae train pretrain manifests/train/pretrain-scene.yaml ...` output (encoder/, decoder/)
  BLIND_RUN the same recipe with blind_encoder=true model=encoder (encoder/ only)
Writes uae_train/scene_models/{encoder,decoder,blind-encoder}/, provenance.json and MODEL_CARD.md, and
prints the metrics. `--out DIR` measures only (writes DIR/metrics.json), e.g. to check a reproduction.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHIP = ROOT / "uae_train" / "scene_models"
GUIDANCE = 8.0  # the demo's CFG (manifests/demo/scene-cpu.yaml)


def heldout_scenes(n_scenes: int = 256):
    """The held-out scenes every measurement reads: a stream no corpus seed draws, at 48 px."""
    from uae_train.training.data import heldout

    return heldout("", n_scenes, 2024, 48)


def eval_cfg() -> SimpleNamespace:
    """The demo's eval settings (uae_train.demo.evals reads these fields): all MMT rows, 1 GenEval image per prompt."""
    return SimpleNamespace(image_size=48, geneval_images_per_prompt=1, geneval_limit=None, seed=0, mmt_limit=None,
                           caption_tokens=192, sampling_steps=10, guidance=GUIDANCE)


def encoder_metrics(enc, images, truths, work: Path, prefix: str, name: str, path: Path) -> dict:
    """Greedy-caption cell attributes on the held-out scenes and the MMT-scene caption-reader of one encoder."""
    from uae_eval import scene_captions
    from uae_train.demo import evals as ev
    from uae_train.evaluation.autoencoder import image_to_text

    r = scene_captions.run(images, truths, image_to_text(enc, max_new_tokens=192, batch_size=32),
                           work / f"{prefix}scene-captions", model={"name": name, "path": str(path)})
    out = {k: round(v, 4) for k, v in r.metrics.items()}
    ev.mmt(eval_cfg(), enc, work / f"{prefix}mmt-bench", name)
    out["mmt_caption_reader"] = round(json.loads((work / f"{prefix}mmt-bench/results.json").read_text())
                                      ["metrics"]["overall"], 4)
    return out


def measure(run: Path, blind: Path | None, work: Path, n_scenes: int = 256) -> dict:
    import torch

    from uae_train.demo import evals as ev
    from uae_train.evaluation.autoencoder import text_to_image
    from uae_train.evaluation.caption_reliance import caption_reliance
    from uae_train.models.decoder import Decoder
    from uae_train.models.encoder import Encoder

    torch.manual_seed(0)
    cfg = eval_cfg()
    images, truths = heldout_scenes(n_scenes)
    metrics: dict = {}
    enc = Encoder.from_pretrained(run / "encoder", device="cpu").eval()
    metrics["encoder"] = encoder_metrics(enc, images, truths, work, "", "scene encoder", run / "encoder")
    if blind is not None:
        benc = Encoder.from_pretrained(blind / "encoder", device="cpu").eval()
        metrics["blind_encoder"] = encoder_metrics(benc, images, truths, work, "blind-", "blind encoder", blind)
    if (run / "decoder").is_dir():
        dec = Decoder.from_pretrained(run / "decoder", text_hidden_size=enc.hidden_size).eval()
        from uae_data import scenes

        caps = [scenes.write_caption(s, i) for i, s in enumerate(truths[:64])]
        rel = caption_reliance(dec, enc, images[:64], caps)
        g = ev.geneval(cfg, work / "geneval", generate=text_to_image(enc, dec, steps=10, guidance=GUIDANCE),
                       model={"name": "scene decoder", "path": str(run / "decoder")})
        gm = json.loads((g / "results.json").read_text())["metrics"]
        metrics["decoder"] = {"caption_reliance": round(rel["relative_gain"], 4),
                              **{f"geneval_{k}": round(v, 4) for k, v in gm.items()}}
    return metrics


CARD = """# Scene-world models shipped with uae

`uae demo` starts from these two models (and uses the blind encoder as a control). They are tiny models
of the real classes, trained on the synthetic scene world (coloured shapes on a 3 × 3 grid, exact long
captions), so every command runs offline and the demo's RL stages start from models that see and paint.

| folder | what | class |
|---|---|---|
| `encoder/` | image → long caption | `Qwen2_5_VLForConditionalGeneration` (text 64 wide, 2 layers; vision 32 wide) + a learned cell embedding (`cell_embedding.safetensors`) |
| `decoder/` | caption → image | SD3 `SD3Transformer2DModel` (48 px, 16 px patches) + connector with its own word table, one context token per caption sentence |
| `blind-encoder/` | control: the same recipe on a constant grey image | as `encoder/` |

## How they were made
```
{command}
```
git {git}, seed {seed}, {minutes} on {where}. Manifest: `manifests/train/pretrain-scene.yaml` (copied into
`provenance.json` with every resolved field).

## What they score (held-out scenes the corpus never drew; greedy captions; command `tools/ship_scene_models.py`)
{table}

Chance: colour 0.10, shape 0.14, size 0.33 (cell attributes 0.19); MMT-scene 0.25 (four options).
GenEval-scene: 553 prompts, 1 image each, 10 ODE steps, CFG 8 (the demo's settings); `random` scenes 0.11,
object-free images 0.00.

## What they do not do
{limits}
"""


def table(m: dict) -> str:
    rows = ["| model | metric | value |", "|---|---|---|"]
    for part, vals in m.items():
        for k, v in vals.items():
            rows.append(f"| {part} | {k} | {v} |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--blind", type=Path)
    ap.add_argument("--command", default="")
    ap.add_argument("--minutes", default="?")
    ap.add_argument("--where", default="2 CPU cores")
    ap.add_argument("--limits", default="")
    ap.add_argument("--out", type=Path, help="measure only: write metrics.json here, ship nothing")
    a = ap.parse_args()
    work = (a.out or Path("/tmp/uae-ship-measure"))
    if work.exists() and not a.out:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    metrics = measure(a.run, a.blind, work)
    print(json.dumps(metrics, indent=2))
    (work / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    if a.out:
        return
    if SHIP.exists():
        shutil.rmtree(SHIP)
    SHIP.mkdir(parents=True)
    shutil.copytree(a.run / "encoder", SHIP / "encoder")
    shutil.copytree(a.run / "decoder", SHIP / "decoder")
    if a.blind:
        shutil.copytree(a.blind / "encoder", SHIP / "blind-encoder")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    import yaml

    config = yaml.safe_load((a.run / "config.yaml").read_text())
    prov = {"command": a.command, "git_hash": git, "seed": config.get("seed"), "config": config,
            "wall_minutes": a.minutes, "where": a.where, "metrics": metrics}
    (SHIP / "provenance.json").write_text(json.dumps(prov, indent=2) + "\n")
    (SHIP / "MODEL_CARD.md").write_text(CARD.format(command=a.command, git=git, seed=config.get("seed"),
                                                    minutes=a.minutes, where=a.where, table=table(metrics),
                                                    limits=a.limits or "-"))
    shutil.rmtree(work)
    print(f"shipped to {SHIP}")


if __name__ == "__main__":
    main()
