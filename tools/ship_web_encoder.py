"""Measure a web-caption encoder run and ship it as uae_train/scene_models/web-encoder/ with its provenance.

usage: python tools/ship_web_encoder.py --run RUN_WEB [--minutes M] [--out DIR]
  RUN_WEB  `uae train pretrain manifests/train/pretrain-scene-web.yaml --corpus CORPUS_WEB --out RUN_WEB`
           (CORPUS_WEB: `uae build-corpus manifests/corpus/scenes-web.yaml source.n=6000 --out CORPUS_WEB`)
Writes web-encoder/ and the `web_encoder` entry of provenance.json (command, git hash, resolved config, metrics
on the 256 held-out scenes and all 600 MMT-scene rows). `--out DIR` measures only (DIR/metrics.json), e.g. to
check a reproduction.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
SHIP = ROOT / "uae_train" / "scene_models"
COMMAND = ("uae build-corpus manifests/corpus/scenes-web.yaml source.n=6000 --out CORPUS_WEB && "
           "uae train pretrain manifests/train/pretrain-scene-web.yaml --corpus CORPUS_WEB --out RUN_WEB")


def main() -> int:
    import torch

    from ship_scene_models import encoder_metrics, heldout_scenes
    from uae_data.core.versions import git_hash
    from uae_train.models.encoder import Encoder

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    images, truths = heldout_scenes()
    work = a.out or (a.run / "ship-measure")
    enc = Encoder.from_pretrained(a.run / "encoder", device="cpu").eval()
    metrics = encoder_metrics(enc, images, truths, work, "", "web-caption encoder", a.run / "encoder")
    print(json.dumps(metrics, indent=2))
    if a.out:
        (a.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        return 0
    if (SHIP / "web-encoder").exists():
        shutil.rmtree(SHIP / "web-encoder")
    shutil.copytree(a.run / "encoder", SHIP / "web-encoder")
    prov_path = SHIP / "provenance.json"
    prov = json.loads(prov_path.read_text())
    prov["web_encoder"] = {"command": COMMAND, "git_hash": git_hash(), "seed": 0,
                           "config": yaml.safe_load((a.run / "config.yaml").read_text()),
                           "wall_minutes": a.minutes, "metrics": metrics}
    prov_path.write_text(json.dumps(prov, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
