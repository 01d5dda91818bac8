"""Write a scene-world MMT-Bench TSV in the official layout (plus scene/qtype/target columns).

    python tools/make_scene_mmt.py --seed 0 --n 600 [--out manifests/mmt_bench/scene_mmt.tsv]
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import random
from pathlib import Path

import pandas as pd

from uae_data.scenes import render, sample_scene
from uae_eval.mmt_bench.answerers import L2, pool, question_text, solve

QTYPES = ("count", "colour", "shape", "position", "relation")


def make_rows(seed: int, n: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        scene = sample_scene(seed * 1_000_003 + i)
        qtype = QTYPES[i % len(QTYPES)]
        objs = scene.objects
        unique = [o for o in objs if sum((p.color, p.shape) == (o.color, o.shape) for p in objs) == 1]
        pairs = [(a, b) for a in unique for b in unique
                 if a is not b and (a.row == b.row or a.col == b.col)]
        if qtype == "relation" and not pairs:
            qtype = "position"  # no same-row/column pair in this scene
        if qtype == "position" and not unique:
            qtype = "count"  # every object has a twin: no unambiguous name
        if qtype == "relation":
            a, b = rng.choice(pairs)
            target = f"{a.color} {a.shape}|{b.color} {b.shape}"
        elif qtype == "position":
            o = rng.choice(unique)
            target = f"{o.color} {o.shape}"
        else:
            o = rng.choice(objs)
            target = "" if qtype == "count" else f"{o.row},{o.col}"
        correct = solve(scene, qtype, target)
        options = rng.sample([p for p in pool(qtype) if p != correct], 3)
        options.insert(i // len(QTYPES) % 4, correct)  # answers spread evenly over A-D
        buf = io.BytesIO()
        render(scene, 64).save(buf, format="PNG")
        rows.append({"index": i, "image": base64.b64encode(buf.getvalue()).decode(),
                     "question": question_text(scene, qtype, target), **dict(zip("ABCD", options)),
                     "answer": "ABCD"[options.index(correct)], "category": qtype, "l2-category": L2[qtype],
                     "split": "val", "scene": json.dumps(scene.to_dict()), "qtype": qtype, "target": target})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--out", default="manifests/mmt_bench/scene_mmt.tsv")
    a = p.parse_args()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(make_rows(a.seed, a.n)).to_csv(a.out, sep="\t", index=False)
    print(f"wrote {a.n} questions to {a.out}")


if __name__ == "__main__":
    main()
