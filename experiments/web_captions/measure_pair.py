"""Recon scene F1 (held-out scenes: the encoder's greedy caption -> the decoder's painting) and GenEval-scene (553
prompts, 1 image each) of one run folder holding encoder/ and decoder/, with the demo's eval settings.
usage: python experiments/web_captions/measure_pair.py RUN WORK HELDOUT_CORPUS [LABEL]   (from the repository root)"""
import json
import sys
from pathlib import Path

import torch

torch.set_num_threads(1)
sys.path.insert(0, ".")
sys.path.insert(0, "tools")
from ship_scene_models import eval_cfg  # noqa: E402

from uae_train.demo import evals as ev  # noqa: E402

run, work, heldout = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
label = sys.argv[4] if len(sys.argv) > 4 else run.name
cfg = eval_cfg()
cfg.recon_limit = 128
ev.evaluate_run(cfg, run, label, work, heldout, lambda m: None, parts=("recon", "geneval"), reliance=False)
recon = json.loads((work / "recon" / "results.json").read_text())["metrics"]
geneval = json.loads((work / "geneval" / "results.json").read_text())["metrics"]
print("RESULT", label, json.dumps({"run": str(run), "recon_scene_f1": recon["scene"],
                                   "recon_scene_soft": recon.get("scene-soft"),
                                   "geneval_overall": geneval["overall"]}), flush=True)
