"""An encoder run's cell attributes (256 held-out scenes, greedy captions) and MMT-scene caption-reader (all 600 rows
unless LIMIT). usage: python experiments/rl_stages/measure_encoder.py RUN WORK [LIMIT]   (RUN holds encoder/)"""
import json, sys
from pathlib import Path
from types import SimpleNamespace
import torch
torch.set_num_threads(1)
sys.path.insert(0, ".")
from uae_eval import scene_captions
from uae_train import demo_evals as ev
from uae_train.evaluation.autoencoder import image_to_text
from uae_train.models.encoder import Encoder
from uae_train.training.data import heldout
run, work, limit = Path(sys.argv[1]), Path(sys.argv[2]), (int(sys.argv[3]) if len(sys.argv) > 3 else None)
cfg = SimpleNamespace(image_size=48, seed=0, mmt_limit=limit, caption_tokens=192)
images, truths = heldout("", 256, 2024, 48)
enc = Encoder.from_pretrained(run / "encoder", device="cpu").eval()
r = scene_captions.run(images, truths, image_to_text(enc, max_new_tokens=192, batch_size=32), work / "sc", model={"name": "x", "path": str(run)})
ev.mmt(cfg, enc, work / "mmt", "x")
m = json.loads((work / "mmt/results.json").read_text())["metrics"]
print("RESULT", json.dumps({"run": str(run), "cell_attributes": round(r.metrics["cell_attributes"], 4), "exact": round(r.metrics["exact_scene"], 4), **{f"mmt_{k}": round(v, 4) for k, v in m.items()}}), flush=True)
