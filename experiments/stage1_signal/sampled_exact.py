"""Share of sampled captions (temperature 1, 4 a scene, 256 held-out scenes) that parse to the exact scene, for
each encoder folder given: does stage 1 sharpen what the encoder samples even where its greedy caption stays put?
usage: python experiments/stage1_signal/sampled_exact.py ENCODER_DIR...   (from the repository root)"""
import sys

import torch

torch.set_num_threads(1)
sys.path.insert(0, ".")
sys.path.insert(0, "tools")
from ship_scene_models import heldout_scenes  # noqa: E402

from uae_eval.scene_captions import score_caption  # noqa: E402
from uae_train.models.encoder import Encoder  # noqa: E402


images, truths = heldout_scenes(256)
for path in sys.argv[1:]:
    enc = Encoder.from_pretrained(path, device="cpu").eval()
    s = enc.sample_captions(images, n=4, sample=True, temperature=1.0, max_new_tokens=192, seed=5)
    right = sum(score_caption(t, truths[k // 4])["exact"] for k, t in enumerate(s.texts))
    print(path, "held-out sampled (T=1, 4 per scene) exact", round(right / len(s.texts), 4), flush=True)
