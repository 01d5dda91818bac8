"""Scene-soft of Flow-GRPO SDE rollouts vs ODE paintings from the shipped decoder on 16 exact long captions of
held-out scenes, across CFG, noise level a and steps; writes out/sde_grid.png (originals, then one row per setting).
usage: python experiments/rl_stages/sde_probe.py   (from the repository root)"""
import os, sys, torch
os.makedirs('out', exist_ok=True)
torch.set_num_threads(1)
sys.path.insert(0, '.')
from types import SimpleNamespace
from uae_train.models.decoder import Decoder
from uae_train.models.encoder import Encoder
from uae_train.stages.und_for_gen import rollout
from uae_train.models.painting import paint
from uae_train.training.data import heldout
from uae_train.rl.rewards import build_reward
from uae_data import scenes
from PIL import Image
enc = Encoder.from_pretrained('uae_train/scene_models/encoder', device='cpu').eval()
dec = Decoder.from_pretrained('uae_train/scene_models/decoder', text_hidden_size=enc.hidden_size).eval()
images, truths = heldout('', 16, 2024, 48)
caps = [scenes.write_caption(s, i) for i, s in enumerate(truths)]
rw = build_reward({'scene-soft': 1.0})
reader = dec.reader(enc)
hidden, mask = reader.encode_text(caps, max_length=256)
rows = []
for g in (1.0, 4.0, 8.0):
    for a in (0.7, 0.3, 0.1):
        for K in (6, 10):
            cfg = SimpleNamespace(rollout_steps=K, guidance=g, noise_level=a)
            with torch.no_grad():
                ctx = dec.context(hidden.float(), mask)
            _, _, _, ims = rollout(cfg, dec, ctx, list(range(16)))
            r, _ = rw(images, ims, truths)
            print(f'sde g={g} a={a} K={K} reward={float(r.mean()):.3f}', flush=True)
            rows.append(ims[:8])
    ims = paint(reader, dec, caps, list(range(16)), 10, g, 256)
    r, _ = rw(images, ims, truths)
    print(f'ode g={g} K=10 reward={float(r.mean()):.3f}', flush=True)
    rows.append(ims[:8])
W = Image.new('RGB', (48*8, 48*(len(rows)+1)))
for j, im in enumerate(images[:8]): W.paste(im, (48*j, 0))
for i, r in enumerate(rows):
    for j, im in enumerate(r): W.paste(im.resize((48,48)), (48*j, 48*(i+1)))
W.resize((W.width*2, W.height*2), Image.NEAREST).save('out/sde_grid.png')
