"""GRPO step time and peak memory: our stage-1 update versus TRL's GRPOTrainer, same tiny Qwen2.5-VL policy.

Both sides train `Encoder.tiny(image_size=32, seed=0)` (the real Qwen2_5_VLForConditionalGeneration class from a
tiny config, word-level scene tokenizer, Qwen2-VL processor) on the same B scene renders, G captions per image,
at most L new tokens, loss_type dapo, beta 0, num_iterations 1, temperature 1.0, top-k/top-p off, fp32,
torch.optim.AdamW with a constant lr, gradient clipping at 1.0, no gradient checkpointing.
  ours  one step = `Encoder.sample_captions` (B·G captions, one generate call) + reward +
        `grpo.group_advantages` + `stages.gen_for_und.update` (completion log-probs, clipped loss, backward, step);
  TRL   one step = `GRPOTrainer`'s optimizer step (generation, reward, advantages, fused-head log-probs, loss,
        backward, clip, step), timed by a callback from on_step_begin to on_step_end; the time from one
        on_step_end to the next is shown too: it adds TRL's per-step data loading (dataset rows, PNG decode,
        RepeatSampler) and its metric logging.
The reward is a cheap function of the text (distinct words / 10) on both sides, so both measure the policy's
work only (generation, log-probs, backward, optimizer), not our stage-1 reward (a frozen decoder repainting
every caption), which TRL has no place for.

Not equal between the two, honestly:
- both run the processor twice per step (ours: in sample_captions and in completion_logprobs; TRL: its
  apply_chat_template for generation and a processor call for the scoring forward); TRL also pads, splits and
  shuffles the batch dicts and decodes completions into chat messages;
- TRL scores with its fused LM head (log-probs in tiles, plus the entropies it logs); ours takes the logits of
  the last T+1 positions and a row-wise log-softmax; at this vocabulary (153 tokens) neither matters much;
- sampled captions differ (different RNG streams), so completion lengths can differ: the table shows the mean;
- TRL goes through accelerate and the transformers Trainer loop (lr scheduler, grad-norm, callbacks, metric
  logging every step); ours is a bare loop over the calls stage 1 makes, without its reward, logging or checkpoints;
- made equal on purpose: TRL defaults to gradient checkpointing, bf16 and fused AdamW, and suppresses only
  <|image_pad|> when sampling; here it runs without checkpointing, in fp32, with torch.optim.AdamW and a constant
  lr, and suppresses all four vision placeholder tokens, as ours does.
Peak RSS is each side's own subprocess, imports included (TRL's side also imports trl, datasets, pandas).

Usage: python benchmarks/grpo_step.py [--images 4] [--group 4] [--length 32] [--steps 5] [--warmup 1]
                                      [--threads 1] [--device cpu|cuda] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = "RESULT "
LR = 1e-4


def distinct_words(text: str) -> float:
    """The shared reward: number of distinct words / 10 (cheap, so only the policy's work is timed)."""
    return len(set(text.split())) / 10


def scene_images(n: int, size: int = 32) -> list:
    import numpy as np

    from uae_data.scenes import render, sample_scene

    return [render(sample_scene(np.random.default_rng([0, i])), size) for i in range(n)]


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def rss_mib() -> float:
    """Peak resident set size of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def policy_for(device: str):
    from uae_train.models.encoder import Encoder

    return Encoder.tiny(image_size=32, seed=0, device=device)


# ------------------------------------------------------------------ ours


def ours(args: argparse.Namespace) -> dict:
    import torch

    from uae_train.rl.grpo import group_advantages
    from uae_train.stages.gen_for_und import Stage1Config, update

    B, G = args.images, args.group
    policy = policy_for(args.device)
    images = scene_images(B)
    originals = [im for im in images for _ in range(G)]
    cfg = Stage1Config(loss_type="dapo", beta=0.0, num_iterations=1, micro_batch=B * G, images_per_step=B,
                       group_size=G, temperature=1.0, max_new_tokens=args.length, lr=LR, grad_clip=1.0)
    cfg.validate()
    params = policy.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    start_rss, times, lengths = rss_mib(), [], []
    for step in range(args.warmup + args.steps):
        sync(args.device)
        t = time.perf_counter()
        samples = policy.sample_captions(images, n=G, sample=True, temperature=1.0, max_new_tokens=args.length,
                                         seed=step)
        rewards = torch.tensor([distinct_words(s) for s in samples.texts]).view(B, G)
        adv = group_advantages(rewards, scale="group").flatten()
        policy.train()
        update(cfg, policy, policy, originals, samples.token_ids, adv, optimizer, params)
        policy.eval()
        sync(args.device)
        if step >= args.warmup:
            times.append(time.perf_counter() - t)
            lengths.append(sum(map(len, samples.token_ids)) / len(samples.token_ids))
    return {"step_s": sum(times) / len(times), "start_rss": start_rss, "tokens": sum(lengths) / len(lengths),
            "params": sum(p.numel() for p in params)}


# ------------------------------------------------------------------ TRL


def step_timer(device: str):
    """A TrainerCallback recording on_step_begin / on_step_end times and TRL's logged completion lengths."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.begin: list[float] = []
            self.end: list[float] = []
            self.lengths: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            sync(device)
            self.begin.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            sync(device)
            self.end.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.lengths.append(float(logs["completions/mean_length"]))

    return StepTimer()


def trl_config(args: argparse.Namespace, out: str, suppress: list[int]):
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out, use_cpu=args.device == "cpu", per_device_train_batch_size=args.images * args.group,
        gradient_accumulation_steps=1, num_generations=args.group, max_completion_length=args.length,
        loss_type="dapo", beta=0.0, num_iterations=1, temperature=1.0, top_k=0, top_p=1.0, learning_rate=LR,
        lr_scheduler_type="constant", max_grad_norm=1.0, report_to="none", save_strategy="no", logging_steps=1,
        bf16=False, fp16=False, activation_checkpointing=False, disable_dropout=True, disable_tqdm=True,
        max_steps=args.warmup + args.steps, shuffle_dataset=False, seed=0, dataloader_num_workers=0,
        # all four vision placeholder tokens, as ours samples (TRL's default suppresses <|image_pad|> only)
        generation_kwargs={"suppress_tokens": suppress})


def trl_side(args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from trl import GRPOTrainer

    policy = policy_for(args.device)
    policy.tokenizer.padding_side = "left"  # TRL's requirement for the processing class
    prompt = [{"role": "user", "content": policy.prompt}]  # TRL inserts the image block before the text
    rows = args.warmup + args.steps  # one epoch, unshuffled: every step reads the same B images, as ours
    data = Dataset.from_dict({"prompt": [prompt] * args.images * rows, "image": scene_images(args.images) * rows})

    def reward(completions: list, **kwargs) -> list[float]:
        return [distinct_words(c[0]["content"]) for c in completions]

    timer = step_timer(args.device)
    optimizer = torch.optim.AdamW(policy.trainable_parameters(), lr=LR, weight_decay=0.0)
    with tempfile.TemporaryDirectory() as out:
        trainer = GRPOTrainer(model=policy.model, reward_funcs=reward, train_dataset=data,
                              args=trl_config(args, out, policy.suppressed_token_ids),
                              processing_class=policy.processor, callbacks=[timer], optimizers=(optimizer, None))
        start_rss = rss_mib()
        trainer.train()
    w = args.warmup
    steps = [e - b for b, e in zip(timer.begin[w:], timer.end[w:])]
    ends = timer.end[w - 1:] if w else timer.end  # each timed step's end minus the previous step's end
    loops = [b - a for a, b in zip(ends, ends[1:])]
    lengths = timer.lengths[w:]
    return {"step_s": sum(steps) / len(steps), "loop_s": sum(loops) / len(loops) if loops else float("nan"),
            "start_rss": start_rss, "tokens": sum(lengths) / len(lengths) if lengths else float("nan")}


# ------------------------------------------------------------------ driver


def child(args: argparse.Namespace) -> None:
    """One side in this process; prints one RESULT line (JSON) last."""
    import torch

    torch.set_num_threads(args.threads)
    res = ours(args) if args.side == "ours" else trl_side(args)
    res["peak_rss"] = rss_mib()
    res["threads"] = torch.get_num_threads()
    if args.device == "cuda":
        res["cuda_peak"] = torch.cuda.max_memory_allocated() / 2**20
        res["device_name"] = torch.cuda.get_device_name()
    print(RESULT + json.dumps(res), flush=True)


def run_side(side: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--side", side, "--images", str(args.images), "--group", str(args.group),
           "--length", str(args.length), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--threads", str(args.threads), "--device", args.device]
    n = str(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode != 0 or not lines:
        sys.exit(f"--side {side} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return json.loads(lines[-1][len(RESULT):])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "cpu"


def report(args: argparse.Namespace, o: dict, t: dict) -> str:
    device = o.get("device_name", cpu_name()) if args.device == "cuda" else cpu_name()
    cuda = args.device == "cuda"
    head = f"{'':12s} {'s/step':>8s} {'peak RSS MiB':>13s} {'RSS @ step 1':>13s}" + \
        (f" {'CUDA peak MiB':>14s}" if cuda else "") + f" {'tokens/caption':>15s}"

    def row(name: str, r: dict) -> str:
        return f"{name:12s} {r['step_s']:8.3f} {r['peak_rss']:13.0f} {r['start_rss']:13.0f}" + \
            (f" {r['cuda_peak']:14.1f}" if cuda else "") + f" {r['tokens']:15.1f}"

    lines = [
        "GRPO step: ours (sample_captions + gen_for_und.update) vs TRL GRPOTrainer, "
        f"tiny Qwen2.5-VL (Encoder.tiny, {o['params'] / 1e3:.0f}k params, fp32)",
        f"  B={args.images} images x G={args.group} captions, L={args.length} max new tokens, loss dapo, beta 0, "
        f"num_iterations 1, temperature 1.0, top-k/top-p off, reward = distinct words / 10",
        f"  {args.steps} timed steps after {args.warmup} warm-up; device {args.device} ({device}), threads "
        f"{o['threads']} (TRL side {t['threads']}); torch {version('torch')}, transformers {version('transformers')}, "
        f"trl {version('trl')}",
        "  " + head, "  " + row("ours", o), "  " + row("TRL", t),
        f"  TRL step end to next step end (adds its data loader and logging): {t['loop_s']:.3f} s",
        f"  ratio ours/TRL: time per step {o['step_s'] / t['step_s']:.2f} (vs TRL end-to-end "
        f"{o['step_s'] / t['loop_s']:.2f}), peak RSS {o['peak_rss'] / t['peak_rss']:.2f}"
        + (f", CUDA peak {o['cuda_peak'] / t['cuda_peak']:.2f}" if cuda else ""),
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4, help="B: images (prompts) per step")
    ap.add_argument("--group", type=int, default=4, help="G: captions per image")
    ap.add_argument("--length", type=int, default=32, help="L: max new tokens per caption")
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads per side")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--side", choices=("ours", "trl"), help="run one side here (the driver calls this)")
    ap.add_argument("--write", action="store_true", help="also write benchmarks/results/grpo_step_<device>.txt")
    args = ap.parse_args()
    if args.steps < 1 or args.group < 2:
        ap.error("--steps must be >= 1 and --group >= 2")
    if args.side:
        child(args)
        return
    text = report(args, run_side("ours", args), run_side("trl", args))
    print(text)
    if args.write:
        (ROOT / "benchmarks/results" / f"grpo_step_{args.device}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
