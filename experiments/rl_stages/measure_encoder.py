"""An encoder run's cell attributes (256 held-out scenes, greedy captions) and MMT-scene caption-reader (all 600
rows), measured as tools/ship_scene_models.py measures the shipped encoder.
usage: python experiments/rl_stages/measure_encoder.py RUN WORK   (RUN holds encoder/; from the repository root)"""
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, ".")
sys.path.insert(0, "tools")
from ship_scene_models import encoder_metrics, heldout_scenes  # noqa: E402

from uae_train.models.encoder import Encoder  # noqa: E402

run, work = Path(sys.argv[1]), Path(sys.argv[2])
images, truths = heldout_scenes()
enc = Encoder.from_pretrained(run / "encoder", device="cpu").eval()
m = encoder_metrics(enc, images, truths, work, "", "encoder", run / "encoder")
print("RESULT", json.dumps({"run": str(run), **m}), flush=True)
