"""Decoder-only measurement (the decoder half of tools/ship_scene_models.measure): caption reliance + GenEval-scene.
usage: python experiments/measure_decoder/measure_decoder.py DECODER_DIR WORK [guidance] [steps] [sampler shift] [norel|rel]
       [eval seed] [images per prompt]
(the encoder whose tokenizer it reads is the shipped one; norel skips caption reliance; eval seed 0 and 1 image per
prompt unless given)"""
import json, sys
from pathlib import Path
from types import SimpleNamespace
import torch
torch.set_num_threads(1)
sys.path.insert(0, ".")
from uae_data import scenes
from uae_train.demo import evals as ev
from uae_train.evaluation.autoencoder import text_to_image
from uae_train.evaluation.caption_reliance import caption_reliance
from uae_train.models.decoder import Decoder
from uae_train.models.encoder import Encoder
from uae_train.training.data import heldout

dec_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
guidance = float(sys.argv[3]) if len(sys.argv) > 3 else 5.0
steps = int(sys.argv[4]) if len(sys.argv) > 4 else 10
torch.manual_seed(0)
cfg = SimpleNamespace(image_size=48, geneval_images_per_prompt=int(sys.argv[8]) if len(sys.argv) > 8 else 1,
                      geneval_limit=None, seed=int(sys.argv[7]) if len(sys.argv) > 7 else 0, mmt_limit=None,
                      caption_tokens=192, sampling_steps=steps, guidance=guidance)
images, truths = heldout("", 256, 2024, 48)
enc = Encoder.from_pretrained("uae_train/scene_models/encoder", device="cpu").eval()
dec = Decoder.from_pretrained(dec_dir, text_hidden_size=enc.hidden_size).eval()
shift = float(sys.argv[5]) if len(sys.argv) > 5 else None
if shift is not None:
    from diffusers import FlowMatchEulerDiscreteScheduler
    dec.scheduler = FlowMatchEulerDiscreteScheduler.from_config(dec.scheduler.config, shift=shift)
skip_rel = len(sys.argv) > 6 and sys.argv[6] == "norel"
caps = [scenes.write_caption(s, i) for i, s in enumerate(truths[:64])]
rel = {"relative_gain": float("nan")} if skip_rel else caption_reliance(dec, enc, images[:64], caps)
g = ev.geneval(cfg, work / "geneval", generate=text_to_image(enc, dec, steps=steps, guidance=guidance),
               model={"name": "scene decoder", "path": str(dec_dir)})
gm = json.loads((g / "results.json").read_text())["metrics"]
out = {"decoder": str(dec_dir), "guidance": guidance, "steps": steps, "shift": shift, "caption_reliance": round(rel["relative_gain"], 4),
       **{f"geneval_{k}": round(v, 4) for k, v in gm.items()}}
print("RESULT", json.dumps(out), flush=True)
