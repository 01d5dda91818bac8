"""Greedy shape errors of the shipped encoder by object size on the 256 held-out scenes: (wrong, objects, rate).
A missed object counts as a wrong shape.
usage: python experiments/stage1_signal/errors_by_size.py   (from the repository root; out/shipped-init from probe.py)"""
import sys
from collections import Counter

import torch

torch.set_num_threads(1)
sys.path.insert(0, ".")
sys.path.insert(0, "tools")
from ship_scene_models import heldout_scenes  # noqa: E402

from uae_data.scenes import parse_caption  # noqa: E402
from uae_train.models.encoder import Encoder  # noqa: E402

images, truths = heldout_scenes(256)
enc = Encoder.from_pretrained("out/shipped-init/encoder", device="cpu").eval()
greedy = enc.caption(images, n=1, sample=False, max_new_tokens=192, batch_size=32)
total, wrong = Counter(), Counter()
for text, scene in zip(greedy, truths):
    got = {(o.row, o.col): o for o in parse_caption(text).objects}
    for o in scene.objects:
        total[o.size] += 1
        g = got.get((o.row, o.col))
        wrong[o.size] += g is None or g.shape != o.shape
print({k: (wrong[k], total[k], round(wrong[k] / total[k], 3)) for k in total})
