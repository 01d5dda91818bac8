"""Paired gains over RL seeds, per GenEval-scene tag, from the RESULT lines that measure_decoder.py prints.
usage: python experiments/rl_stages/gains.py BASE.log RUN_SEED0.log RUN_SEED1.log ...   (from the repository root)
BASE.log: the measurement of the starting decoder with the same eval seed and images per prompt."""
import json, sys
sys.path.insert(0, ".")
from uae_train.demo_stats import paired_gain


def result(path: str) -> dict:
    lines = [line for line in open(path, encoding="utf-8", errors="replace").read().replace("\r", "\n").splitlines()
             if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{path}: no RESULT line")
    return json.loads(lines[-1][len("RESULT "):])


base, runs = result(sys.argv[1]), [result(p) for p in sys.argv[2:]]
for key in [k for k in base if k.startswith("geneval_")]:
    g = paired_gain(base[key], [r[key] for r in runs])
    ci = "" if g["ci95"] is None else f" 95% CI [{g['ci95'][0]:+.3f}, {g['ci95'][1]:+.3f}]"
    print(f"{key[8:]:22s} {base[key]:.3f} -> {' / '.join(f'{r[key]:.3f}' for r in runs)}   gain {g['mean']:+.3f}{ci}")
