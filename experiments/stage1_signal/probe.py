"""Can stage 1's reward fix the shipped encoder's mistakes? For held-out scenes whose greedy caption is wrong:
(1) does the frozen decoder's repainting reward the true caption above the greedy one (same phrasing, same noise)?
(2) how often does sampling at temperature T produce a caption that parses to the true scene?
It also prints what the greedy captions get wrong, and their shape errors by object size (a missed object counts
as a wrong shape).
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
from uae_eval.scene_captions import score_caption  # noqa: E402
from uae_train.models.decoder import Decoder  # noqa: E402
from uae_train.models.encoder import Encoder  # noqa: E402
from uae_train.models.painting import paint  # noqa: E402
from uae_train.rl.rewards import build_reward  # noqa: E402

n, G, T = (int(sys.argv[1]) if len(sys.argv) > 1 else 256), (int(sys.argv[2]) if len(sys.argv) > 2 else 8), \
    (float(sys.argv[3]) if len(sys.argv) > 3 else 1.0)
init = Path("out/shipped-init")
if not (init / "decoder").exists():
    from uae_train.demo.run import install_shipped
    install_shipped(init)
images, truths = heldout_scenes(n)
enc = Encoder.from_pretrained(init / "encoder", device="cpu").eval()
dec = Decoder.from_pretrained(init / "decoder", device="cpu").eval()
reader = dec.reader(enc)
reward = build_reward({"scene-soft": 1.0})
greedy = enc.caption(images, n=1, sample=False, max_new_tokens=192, batch_size=32)


def exact(texts, truth) -> list[bool]:
    return [score_caption(t, truth)["exact"] for t in texts]


def scene_of(text):
    try:
        return parse_caption(text)
    except ValueError:
        return None


said = [scene_of(t) for t in greedy]
wrong = [i for i, s in enumerate(said) if s != truths[i]]
print(f"greedy wrong on {len(wrong)}/{n} scenes")
conf, objects, shape_wrong = Counter(), Counter(), Counter()
for i, (p, s) in enumerate(zip(said, truths)):
    got = {(o.row, o.col): o for o in p.objects} if p is not None else {}
    for o in s.objects:
        g = got.get((o.row, o.col))
        objects[o.size] += 1
        shape_wrong[o.size] += g is None or g.shape != o.shape
        if p is not None and p != s:  # what a parseable wrong caption got wrong
            if g is None:
                conf["missed object"] += 1
            else:
                conf.update(f"{a}: {getattr(o, a)}->{getattr(g, a)}" for a in ("color", "shape", "size")
                            if getattr(g, a) != getattr(o, a))
    if p is None:
        conf["unparseable"] += 1
    elif p != s:
        conf["extra objects"] += max(0, len(got) - len(s.objects))
print("errors:", conf.most_common(20))
print("greedy shape errors by size (wrong, objects, rate):",
      {k: (shape_wrong[k], objects[k], round(shape_wrong[k] / objects[k], 3)) for k in objects})
# (1) reward of true vs greedy scene, same phrasing seed, 4 noise seeds
wins = ties = losses = 0
gaps = []
seeds = [1000 + k for k in range(4)]
for i in wrong:
    if said[i] is None:
        continue
    rec = paint(reader, dec, [write_caption(truths[i], 7)] * 4 + [write_caption(said[i], 7)] * 4, seeds + seeds,
                8, 8.0, 192)
    r, _ = reward([images[i]] * 8, rec, [truths[i]] * 8)
    rt, rg = float(r[:4].mean()), float(r[4:].mean())
    gaps.append(rt - rg)
    wins += rt > rg + 1e-6
    losses += rg > rt + 1e-6
    ties += abs(rt - rg) <= 1e-6
print(f"reward true vs greedy-scene caption: wins {wins} ties {ties} losses {losses}; "
      f"mean gap {sum(gaps) / max(1, len(gaps)):.3f}")
# (2) sampling: does any of G samples parse to the truth?
samples = enc.sample_captions([images[i] for i in wrong], n=G, sample=True, temperature=T, max_new_tokens=192, seed=0)
ok = [exact(samples.texts[k * G:(k + 1) * G], truths[i]) for k, i in enumerate(wrong)]
print(f"T={T} G={G}: wrong scenes with a correct sample {sum(map(any, ok))}/{len(wrong)}; "
      f"correct samples {sum(map(sum, ok))}/{len(wrong) * G}")
# and on all scenes: groups whose samples are not all the same scene
allsamp = enc.sample_captions(images[:64], n=G, sample=True, temperature=T, max_new_tokens=192, seed=1)
groups = [allsamp.texts[k * G:(k + 1) * G] for k in range(64)]
diverse = sum(len({repr(scene_of(t)) for t in g}) > 1 for g in groups)
right = sum(sum(exact(g, truths[k])) for k, g in enumerate(groups))
print(f"on 64 scenes: groups with >1 distinct parsed scene {diverse}/64; samples exactly right {right}/{64 * G}")
