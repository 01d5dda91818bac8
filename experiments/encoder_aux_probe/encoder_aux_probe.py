"""Encoder probe: caption SFT of Encoder.tiny(cell_embedding=True) on a scene corpus (corpus=DIR; in memory,
random batches; AdamW, warmup + cosine, clip 1.0, as pretrain.py), with optional auxiliary losses; greedy captions
of held-out scenes (training.data.heldout("", n, 2024, size)) scored by uae_eval.scene_captions every `every` steps.

usage: python experiments/encoder_aux_probe/encoder_aux_probe.py corpus=DIR out=DIR key=value ...
  (the scene corpus of the recipe: uae build-corpus manifests/corpus/scenes.yaml --out DIR --limit 3000 source.n=3000 image_size=48)
  steps, batch, lr, warmup, every, n_eval, minutes, seed
  ls=E       label smoothing of the per-cell heads' CE
  cell=W     per-cell linear heads on the 9 merged image tokens (LM input) -> colour/shape/size (+empty), weight W
  word=W     LM logits (own lm_head) at each image position -> CE to the cell's size, colour, shape words
             (empty cell: 'empty'), weight W
  pos=W      (with word) also CE at each image position to the words of its cell's name ("top left"), weight W
  up=K       caption CE on shape/size word tokens weighted K (mean over tokens otherwise unchanged)
  size_px=S  render size fed to the processor (48: the corpus images; 84: scenes re-rendered natively)
  blind=1    every training image constant grey (128,128,128); eval on the real images
"""
import json, math, random, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
from PIL import Image
from uae_data import scenes
from uae_data.shards import corpus_dataset
from uae_eval import scene_captions
from uae_train.models.encoder import Encoder
from uae_train.training.data import heldout, scene_of

args = dict(steps=3000, batch=16, lr=3e-3, warmup=40, every=500, n_eval=128, minutes=8.0, seed=0,
            cell=0.0, ls=0.0, word=0.0, pos=0.0, up=1.0, size_px=48, blind=0, tag="run", sched_steps=0, corpus="out/c48", out="out/encoder-probes")
for a in sys.argv[1:]:
    k, v = a.split("=", 1)
    args[k] = type(args[k])(v)
print(json.dumps(args), flush=True)
torch.manual_seed(args["seed"])
S = args["size_px"]
enc = Encoder.tiny(image_size=48, seed=args["seed"], cell_embedding=True, device="cpu")
core = enc._core()
tok = enc.tokenizer
C, SH, SZ = list(scenes.COLORS), list(scenes.SHAPES), list(scenes.SIZES)

# ---- data
t0 = time.time()
train = []
for s in corpus_dataset(Path(args["corpus"])):
    sc = scene_of(s)
    img = s["image"].convert("RGB").resize((48, 48)) if S == 48 else scenes.render(sc, S)
    train.append((img, s["caption"], sc))
ev_imgs, ev_scenes = heldout("", args["n_eval"], 2024, S)
print(f"loaded {len(train)} train scenes in {time.time()-t0:.0f}s", flush=True)
grey = Image.new("RGB", (S, S), (128, 128, 128))


def cell_labels(batch_scenes):
    """(B*9,) colour / shape / size indices, 0 = empty, row-major cells."""
    yc, ys, yz = [], [], []
    for sc in batch_scenes:
        cell = {o.row * 3 + o.col: o for o in sc.objects}
        for k in range(9):
            o = cell.get(k)
            yc.append(C.index(o.color) + 1 if o else 0)
            ys.append(SH.index(o.shape) + 1 if o else 0)
            yz.append(SZ.index(o.size) + 1 if o else 0)
    return torch.tensor(yc), torch.tensor(ys), torch.tensor(yz)


word_id = {w: tok.convert_tokens_to_ids(w) for w in [*C, *SH, *SZ, "empty"]}
assert all(isinstance(i, int) and i != tok.unk_token_id for i in word_id.values()), word_id
color_ids = torch.tensor([word_id["empty"]] + [word_id[c] for c in C])
shape_ids = torch.tensor([word_id["empty"]] + [word_id[c] for c in SH])
size_ids = torch.tensor([word_id["empty"]] + [word_id[c] for c in SZ])
# cell k's name words (center: 1 word; others 2), flattened: pos_tok_cell[j] is the cell of word j
_names = [scenes.POSITIONS[k // 3][k % 3].split() for k in range(9)]
pos_tok_cell = torch.tensor([k for k in range(9) for _ in _names[k]])
pos_tok_ids = torch.tensor([tok.convert_tokens_to_ids(w) for k in range(9) for w in _names[k]])
up_ids = torch.tensor(sorted({word_id[w] for w in (*SH, *SZ)} |
                             {tok.convert_tokens_to_ids(scenes._plural(w, 2)) for w in SH}))

# ---- capture the merged image tokens (after the cell embedding hook, i.e. what the LM reads)
captured = {}
def grab(module, args_, kwargs, output):
    captured["tok"] = output.pooler_output if hasattr(output, "pooler_output") else output
core.model.visual.register_forward_hook(grab, with_kwargs=True)
D = enc.hidden_size if hasattr(enc, "hidden_size") else 64
heads = torch.nn.ModuleDict({"c": torch.nn.Linear(D, len(C) + 1), "s": torch.nn.Linear(D, len(SH) + 1),
                             "z": torch.nn.Linear(D, len(SZ) + 1)})
image_token = core.config.image_token_id


def losses(images, captions, batch_scenes):
    completions = enc._completion_ids(captions, add_end=True)
    inputs = enc._prompt_inputs(images, None)
    prompt_ids = inputs["input_ids"]
    B, P = prompt_ids.shape
    T = max(len(c) for c in completions)
    ids = torch.full((B, T), tok.pad_token_id, dtype=prompt_ids.dtype)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for i, c in enumerate(completions):
        ids[i, :len(c)] = torch.tensor(c); mask[i, :len(c)] = True
    for key, value in list(inputs.items()):
        if torch.is_tensor(value) and value.shape == (B, P):
            tail = ids if key == "input_ids" else mask if key == "attention_mask" else torch.zeros_like(ids)
            inputs[key] = torch.cat([value, tail.to(value.dtype)], dim=1)
    need_img = args["word"] > 0
    logits = core(**inputs, **({} if need_img else {"logits_to_keep": T + 1})).logits
    cap = logits[:, -(T + 1):-1]
    sup = torch.tensor(enc.suppressed_token_ids)
    cap = cap.index_fill(-1, sup, float("-inf"))
    ce = F.cross_entropy(cap.float().flatten(0, 1), ids.flatten(), reduction="none").view(B, T)
    w = torch.where(torch.isin(ids, up_ids), args["up"], 1.0) * mask
    out = {"cap": (ce * w).sum() / mask.sum()}
    with torch.no_grad():
        out["acc"] = (cap.argmax(-1) == ids)[mask].float().mean()
    yc, ys, yz = cell_labels(batch_scenes)
    if args["cell"] > 0:
        t = captured["tok"].float()
        ce_ = lambda z, y: F.cross_entropy(z, y, label_smoothing=args["ls"])
        out["cellaux"] = args["cell"] * (ce_(heads["c"](t), yc) + ce_(heads["s"](t), ys) + ce_(heads["z"](t), yz))
        out["tok_norm"] = t.detach().norm(dim=-1).mean()
        with torch.no_grad():
            occ = ys > 0
            out["cell_shape_acc"] = (heads["s"](t).argmax(-1) == ys)[occ].float().mean()
    if need_img:
        il = logits[inputs["input_ids"] == image_token].float()  # (B*9, V)
        assert il.shape[0] == B * 9, il.shape
        il = il.index_fill(-1, sup, float("-inf"))
        lp = il.log_softmax(-1)
        occ = ys > 0
        wl = -(lp.gather(1, color_ids[yc][:, None]) + lp.gather(1, shape_ids[ys][:, None])
               + lp.gather(1, size_ids[yz][:, None])).squeeze(1)
        wl = torch.where(occ, wl, -lp.gather(1, color_ids[yc][:, None]).squeeze(1))  # empty: 'empty' once
        out["wordaux"] = args["word"] * wl.mean()
        if args["pos"] > 0:
            pl = -(lp.view(B, 9, -1)[:, pos_tok_cell, pos_tok_ids]).sum(-1) / 9  # (B,): per-cell mean of its name words' CE
            out["posaux"] = args["pos"] * pl.mean()
        with torch.no_grad():
            out["word_shape_acc"] = (il[:, shape_ids[1:]].argmax(-1) + 1 == ys)[occ].float().mean()
    return out


def evaluate():
    enc.eval()
    t = time.time()
    texts = []
    for i in range(0, len(ev_imgs), 32):
        texts += enc.caption(ev_imgs[i:i + 32], sample=False, max_new_tokens=192, seed=i)
    enc.train()
    m = scene_captions.aggregate([scene_captions.score_caption(x, s) for x, s in zip(texts, ev_scenes)])
    with torch.no_grad():  # teacher-forced caption CE on held-out scenes (true images), and on a training batch
        m["ho_cap"] = float(losses(ev_imgs[:64], [scenes.write_caption(x, i) for i, x in enumerate(ev_scenes[:64])],
                                   ev_scenes[:64])["cap"])
        m["tr_cap"] = float(losses([x[0] for x in train[:64]], [x[1] for x in train[:64]],
                                   [x[2] for x in train[:64]])["cap"])
    m = {k: round(v, 3) for k, v in m.items()}
    m["eval_s"] = round(time.time() - t)
    return m, texts[0]


params = list(enc.trainable_parameters()) + (list(heads.parameters()) if args["cell"] > 0 else [])
opt = torch.optim.AdamW(params, lr=args["lr"], weight_decay=0.0)
total = args["sched_steps"] or args["steps"]
def lam(s):
    if s < args["warmup"]:
        return (s + 1) / args["warmup"]
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (s - args["warmup"]) / max(1, total - args["warmup"]))))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lam)
rng = random.Random(args["seed"])
enc.train()
t0 = time.time(); step = 0; hist = []; run_avg = {}
while step < args["steps"]:
    b = rng.sample(train, args["batch"])
    imgs = [grey if args["blind"] else x[0] for x in b]
    out = losses(imgs, [x[1] for x in b], [x[2] for x in b])
    loss = out["cap"] + out.get("cellaux", 0) + out.get("wordaux", 0) + out.get("posaux", 0)
    opt.zero_grad(set_to_none=True); loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step(); sched.step(); step += 1
    for k, v in out.items():
        run_avg[k] = 0.9 * run_avg.get(k, float(v)) + 0.1 * float(v)
    if step % 50 == 0:
        print(f"step {step} " + " ".join(f"{k} {v:.3f}" for k, v in run_avg.items()) + f" t {time.time()-t0:.0f}s", flush=True)
    last = step == args["steps"] or time.time() - t0 > args["minutes"] * 60
    if step % args["every"] == 0 or last:
        train_s = time.time() - t0
        m, sample = evaluate()
        t0 += m["eval_s"]  # wall budget counts training only
        row = {"step": step, "train_s": round(train_s), **m, **{k: round(v, 3) for k, v in run_avg.items()}}
        hist.append(row)
        print("EVAL", json.dumps(row), flush=True)
        print("  sample:", sample[:220], flush=True)
    if last:
        break
print("RESULT", json.dumps({**args, "history": hist}), flush=True)
Path(args["out"]).mkdir(parents=True, exist_ok=True)
Path(args["out"], f"{args['tag']}.json").write_text(json.dumps({**args, "history": hist}, indent=1))
