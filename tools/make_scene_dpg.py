"""Write Scene-DPG: a dpg_bench.csv in the official columns and a prompts/ folder, from seeded scenes.

    python tools/make_scene_dpg.py --seed 0 --n 100 [--out manifests/dpg_scene]

Item i is the scene `sample_scene(seed * 1_000_003 + i)`; its prompt is `write_caption(scene, same seed)`, a
dense caption naming every object's size, colour, shape and cell; its questions come from
uae_eval.dpg_bench.scene_dpg.questions (existence questions are the parents of the others). Rerunning with the
same arguments writes the same bytes (tests/test_dpg_bench.py checks the shipped copy).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import pandas as pd

from uae_data.scenes import sample_scene, write_caption
from uae_eval.dpg_bench.data import COLUMNS
from uae_eval.dpg_bench.scene_dpg import csv_rows

ROOT = Path(__file__).resolve().parents[1]


def make(out: Path, seed: int = 0, n: int = 100) -> Path:
    """Write out/dpg_bench.csv and out/prompts/<item_id>.txt (replacing an older prompts folder); returns the CSV."""
    rows, prompts = [], {}
    for i in range(n):
        s = seed * 1_000_003 + i
        scene = sample_scene(s)
        item_id = f"scene{i:04d}"
        caption = write_caption(scene, s)
        prompts[item_id] = caption
        rows += csv_rows(item_id, scene, caption)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "prompts").is_dir():
        shutil.rmtree(out / "prompts")
    (out / "prompts").mkdir()
    for item_id, text in prompts.items():
        (out / "prompts" / f"{item_id}.txt").write_text(text + "\n", encoding="utf-8")
    pd.DataFrame(rows, columns=list(COLUMNS)).to_csv(out / "dpg_bench.csv", index=False, lineterminator="\n")
    return out / "dpg_bench.csv"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--out", type=Path, default=ROOT / "manifests" / "dpg_scene")
    a = p.parse_args()
    print(f"wrote {make(a.out, a.seed, a.n)}")


if __name__ == "__main__":
    main()
