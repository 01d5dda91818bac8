"""Can stage 1's reward fix the shipped encoder's mistakes? For held-out scenes whose greedy caption is wrong:
(1) does the frozen decoder's repainting reward the true caption above the greedy one (same phrasing, same noise)?
(2) how often does sampling at temperature T produce a caption that parses to the true scene?
usage: python experiments/stage1_signal/probe.py [N_SCENES] [G] [T]   (from the repository root)"""
import sys
from collections import Counter
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, ".")
sys.path.insert(0, "tools")
from ship_scene_models import heldout_scenes  # noqa: E402

from uae_data.scenes import parse_caption, write_caption  # noqa: E402
from uae_train.models.decoder import Decoder  # noqa: E402
from uae_train.models.encoder import Encoder  # noqa: E402
from uae_train.models.painting import paint  # noqa: E402
from uae_train.rewards import build_reward  # noqa: E402

n, G, T = (int(sys.argv[1]) if len(sys.argv) > 1 else 256), (int(sys.argv[2]) if len(sys.argv) > 2 else 8), \
    (float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
init = Path("out/shipped-init")
if not (init / "decoder").exists():
    from uae_train.demo import install_shipped
    install_shipped(init)
images, truths = heldout_scenes(n)
enc = Encoder.from_pretrained(init / "encoder", device="cpu").eval()
dec = Decoder.from_pretrained(init / "decoder", device="cpu").eval()
reader = dec.reader(enc)
reward = build_reward({"scene-soft": 1.0})
greedy = enc.caption(images, n=1, sample=False, max_new_tokens=192, batch_size=32)


def parsed(t):
    try:
        return parse_caption(t)
    except Exception:  # noqa: BLE001
        return None


wrong = [i for i, t in enumerate(greedy) if parsed(t) != truths[i]]
print(f"greedy wrong on {len(wrong)}/{n} scenes")
conf = Counter()
for i in wrong:
    p, s = parsed(greedy[i]), truths[i]
    if p is None:
        conf["unparseable"] += 1
        continue
    got = {(o.row, o.col): o for o in p.objects}
    for o in s.objects:
        g = got.get((o.row, o.col))
        if g is None:
            conf["missed object"] += 1
            continue
        for a in ("color", "shape", "size"):
            if getattr(g, a) != getattr(o, a):
                conf[f"{a}: {getattr(o, a)}->{getattr(g, a)}"] += 1
    conf["extra objects"] += max(0, len(p.objects) - len(s.objects))
print("errors:", conf.most_common(20))
# (1) reward of true vs greedy scene, same phrasing seed, 4 noise seeds
pairs = [(i, parsed(greedy[i])) for i in wrong if parsed(greedy[i]) is not None]
wins = ties = losses = 0
gaps = []
for i, p in pairs:
    tt = write_caption(truths[i], 7)
    gt = write_caption(p, 7)
    seeds = [1000 + k for k in range(4)]
    rec = paint(reader, dec, [tt] * 4 + [gt] * 4, seeds + seeds, 8, 8.0, 192)
    r, _ = reward([images[i]] * 8, rec, [truths[i]] * 8)
    rt, rg = float(r[:4].mean()), float(r[4:].mean())
    gaps.append(rt - rg)
    wins += rt > rg + 1e-6
    losses += rg > rt + 1e-6
    ties += abs(rt - rg) <= 1e-6
print(f"reward true vs greedy-scene caption: wins {wins} ties {ties} losses {losses}; "
      f"mean gap {sum(gaps) / max(1, len(gaps)):.3f}")
# (2) sampling: does any of G samples parse to the truth?
sub = [images[i] for i in wrong]
samples = enc.sample_captions(sub, n=G, sample=True, temperature=T, max_new_tokens=192, seed=0)
hit = correct = 0
for k, i in enumerate(wrong):
    ok = [parsed(t) == truths[i] for t in samples.texts[k * G:(k + 1) * G]]
    hit += any(ok)
    correct += sum(ok)
print(f"T={T} G={G}: wrong scenes with a correct sample {hit}/{len(wrong)}; correct samples {correct}/{len(wrong) * G}")
# and on all scenes: fraction of groups that are not all identical in parsed scene
allsamp = enc.sample_captions(images[:64], n=G, sample=True, temperature=T, max_new_tokens=192, seed=1)
diverse = sum(len({repr(parsed(t)) for t in allsamp.texts[k * G:(k + 1) * G]}) > 1 for k in range(64))
right = sum(parsed(t) == truths[k // G] for k, t in enumerate(allsamp.texts))
print(f"on 64 scenes: groups with >1 distinct parsed scene {diverse}/64; samples exactly right {right}/{64 * G}")
