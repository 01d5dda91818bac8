"""Paired gains over RL seeds from RESULT lines: per GenEval-scene tag (measure_decoder.py), or per encoder metric
(measure_encoder.py: cell attributes, exact scenes, MMT-scene; the base is its RESULT of the starting encoder).
usage: python experiments/rl_stages/gains.py BASE.log RUN_SEED0.log RUN_SEED1.log ...   (from the repository root)
BASE.log: the measurement of the starting model (for a decoder: same eval seed and images per prompt)."""
import json, sys
sys.path.insert(0, ".")
from uae_train.demo.stats import paired_gain


def result(path: str) -> dict:
    lines = [line for line in open(path, encoding="utf-8", errors="replace").read().replace("\r", "\n").splitlines()
             if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{path}: no RESULT line")
    return json.loads(lines[-1][len("RESULT "):])


base, runs = result(sys.argv[1]), [result(p) for p in sys.argv[2:]]
keys = [k for k in base if k.startswith("geneval_")] or \
    [k for k in base if isinstance(base[k], (int, float)) and all(isinstance(r.get(k), (int, float)) for r in runs)]
for key in keys:
    g = paired_gain(base[key], [r[key] for r in runs])
    ci = "" if g["ci95"] is None else f" 95% CI [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"
    print(f"{key.removeprefix('geneval_'):22s} {base[key]:.3f} -> {' / '.join(f'{r[key]:.3f}' for r in runs)}   gain {g['mean']:+.3f}{ci}")
