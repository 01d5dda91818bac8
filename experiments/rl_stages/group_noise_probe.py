"""How much of a stage-2 group's reward spread can the policy gradient attribute to its own SDE steps?
Rolls out G paintings of each of 32 held-out GenEval-form prompts from the shipped decoder, with the group's
starting latent independent (each painting its own) or shared (DanceGRPO's init_same_noise), at several noise
levels; prints mean reward, mean within-group reward sd and the share of groups whose rewards differ.
usage: python experiments/rl_stages/group_noise_probe.py [G]   (from the repository root)"""
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, '.')
from types import SimpleNamespace
from uae_train.models.decoder import Decoder
from uae_train.models.encoder import Encoder
from uae_train.stages.und_for_gen import rollout
from uae_train.training.data import heldout_prompts
from uae_train.rl.rewards import build_reward

G = int(sys.argv[1]) if len(sys.argv) > 1 else 8
enc = Encoder.from_pretrained('uae_train/scene_models/encoder', device='cpu').eval()
dec = Decoder.from_pretrained('uae_train/scene_models/decoder', text_hidden_size=enc.hidden_size).eval()
images, truths, prompts = heldout_prompts(32, 11, 48)
rw = build_reward({'geneval-partial': 1.0})
hidden, mask = dec.reader(enc).encode_text(prompts, max_length=64)
hidden, mask = hidden.float().repeat_interleave(G, 0), mask.repeat_interleave(G, 0)
with torch.no_grad():
    ctx = dec.context(hidden, mask)
rep = lambda xs: [x for x in xs for _ in range(G)]
seeds = list(range(len(prompts) * G))
for a in (0.3, 0.5, 0.7, 1.0):
    for mode, tf, tail in (('independent', 0.5, False), ('shared', 0.5, False), ('shared', 0.5, True),
                           ('shared', 0.2, True)):
        cfg = SimpleNamespace(rollout_steps=10, guidance=8.0, noise_level=a, timestep_fraction=tf,
                              ode_after_trained=tail)
        noise = seeds if mode == 'independent' else [1000 + i // G for i in seeds]
        mode = f'{mode} trained {int(10 * tf)}' + (', ODE after' if tail else '')
        _, _, _, ims = rollout(cfg, dec, ctx, seeds, noise)
        r, _ = rw(rep(images), ims, rep(truths), rep(prompts))
        r = r.view(len(prompts), G)
        sd = r.std(1)
        print(f'a={a} {mode:32s} reward={float(r.mean()):.3f} within-group sd={float(sd.mean()):.3f} '
              f'groups with spread={float((sd > 1e-6).float().mean()):.2f}', flush=True)
