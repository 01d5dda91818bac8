"""Gains of stage 1 from the web-caption encoder over seeds, beside each control, from run.sh's results.txt.

usage: python experiments/web_captions/summarize.py OUT/results.txt
Prints, per metric: the web encoder's value, each reward's after (mean over seeds) and gain with its 95% t CI,
and the true reward's paired per-seed difference from the shuffled-image and length rewards with its CI.
"""
import json
import sys
from collections import defaultdict

sys.path.insert(0, ".")
from uae_train.demo.stats import paired_gain  # noqa: E402

METRICS = ("object_recall", "attribute_precision", "words_per_caption", "mmt_caption_reader", "cell_attributes")


def fmt(g: dict) -> str:
    ci = g.get("ci95")
    return f"{g['mean']:+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def main(path: str) -> None:
    init, runs = None, defaultdict(dict)
    for line in open(path):
        if not line.startswith("RESULT "):
            continue
        head, _, body = line[len("RESULT "):].partition("{")
        row = json.loads("{" + body)
        if not head.strip():
            init = row if row["run"].endswith("/init") else init
            continue
        ctrl, seed = head.split()
        runs[ctrl][int(seed.split("=")[1])] = row
    seeds = sorted(set.intersection(*(set(v) for v in runs.values())))
    print(f"seeds {seeds}; web encoder = {init['run']}")
    for m in METRICS:
        print(f"\n{m}: web encoder {init[m]:.3f}")
        after = {c: [runs[c][s][m] for s in seeds] for c in runs}
        for c, vals in after.items():
            print(f"  {c:9s} after {sum(vals) / len(vals):.3f}  gain {fmt(paired_gain(init[m], vals))}")
        for c in ("shuffled", "length"):
            if c in after and "true" in after:
                print(f"  true - {c}: {fmt(paired_gain(after[c], after['true']))}")


if __name__ == "__main__":
    main(sys.argv[1])
