"""One-shot GPU check: uae's five heavy paths at real size with random weights, step time and peak memory each.

Every model is built from config (gpu_check_models.py: a Qwen2.5-VL-3B-shaped encoder in uae's `Encoder`, an
SD3.5-Medium-shaped MMDiT + SD3's VAE + UAE's connector in uae's `Decoder`, a CLIP ViT-L/14-shaped `CLIPModel`
for the `uae-clip` reward, GenEval's detector shapes); nothing is downloaded. Real defaults (B, G, L = images,
group, caption tokens):
  1 decoder_pretrain  one decoder-pretraining step as uae_train/stages/pretrain.py takes it: the frozen encoder
                      re-reads B=8 captions of L=256 words (cut to 256 chat-wrapped tokens: uae's
                      max_text_tokens), `Decoder.loss` (VAE encode of 512x512 images, connector, logit-normal
                      t, flow-matching MSE), backward, grad clip 1.0, AdamW over the whole DiT + connector (full
                      fine-tune, fp32 master weights). 1 warm-up + 3 timed steps; images/s. An out-of-memory
                      error at B=8 retries once at B=4 (the status says so).
  2 stage1_step       `Stage1.step` (uae_train/stages/gen_for_und.py) for one image: its LoRA (r 32, alpha 64)
                      encoder samples G=8 captions of up to L=256 tokens (temperature 1); the frozen decoder
                      paints each back through the frozen encoder copy (10 ODE steps, no CFG, 512x512); reward
                      `uae-clip`; group advantages; `update` (log-probs in micro-batches of 4, dapo loss,
                      backward, step). 1 warm-up + 1 timed step; captions/s.
  3 stage2_step       `Stage2.step` (uae_train/stages/und_for_gen.py): the frozen encoder captions B=1 image
                      greedily (L=256); the decoder with a DiT LoRA (r 32, alpha 64; the connector trains too)
                      paints G=4 rollouts through Flow-GRPO's SDE (10 steps, noise 0.7, CFG 4.5, 512x512); reward
                      `uae-clip`; Flow-GRPO advantages; `update` over 9 of the 10 steps with beta 0.04 (its
                      KL term runs the adapter-off reference too). 1 warm-up + 1 timed step; rollouts/s.
  4 geneval_paint     GenEval painting as the stage-2 eval hook paints (`text_to_image`: the encoder reads the
                      prompt, 40 ODE steps, CFG 4.5 against the null context, batch 4, 512x512): 8 official
                      prompts after a 4-image warm-up; images/s.
  5 geneval_score     GenEval scoring, benchmarks/geneval_scoring.py's real path: Swin-S Mask2Former through
                      the `mask2former` backend (800/1333 px, fp32) + open_clip ViT-L-14 colour classifier with
                      min_score 0, on 64 scene renders at 512x512, detect -> colour -> rules; images/s.
All on CUDA run under bf16 autocast, as uae's stages do (training/precision.py: "auto"); --tiny runs fp32 on CPU
with tiny models of the same classes and fewer repeats (tiny_plan).

Measured: mean seconds per timed step, CUDA-synchronised; peak memory = torch.cuda.max_memory_allocated after
a reset made once the section's models are built, so it covers the resident models and the steps, not the
build's transients; "resident after build" = memory_allocated then. On CPU memory is the process's peak RSS
so far (ru_maxrss, which never goes down: a later section's figure bounds every earlier one), and "resident"
is n/a. Each section runs in its own try: an error is recorded in one line and the next section runs; a
section starts only while the elapsed time is under --budget-s (else "skipped: budget"); models are freed
between sections; the result file, <out>/gpu_check_<device>.txt, is rewritten after every section.

Honest limits: random weights sample arbitrary tokens, so captions run to their limit (EOS is possible but
rare and not suppressed; section 2 reports the mean length), and rewards carry no signal. Captions are
synthetic words, one token each (real captions of as many tokens are shorter texts). Images are noise (no
cost here depends on content). One to three timed steps: a smoke check with timings, not a benchmark with
error bars. Sections 2-4 time uae's own functions, so they include Python overhead, the processor and
host-side image handling, as a real run would; section 1 is a loop written here after pretrain.py's (no
data loader, no accelerate wrapper). Section 5 is the transformers port of GenEval's detector architecture,
not the mmdet original.

Usage: python benchmarks/gpu_check.py [--tiny] [--out DIR] [--budget-s 450] [--sections 1,2,3,4,5]
GPU machine: benchmarks/gpu_check.sh has the one-line command for the device tool.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)] if str(ROOT) not in sys.path else []  # uae_* from the checkout (no install needed)

from gpu_check_harness import (Ctx, Result, attempt, built, device_slug, free, git_commit, log,  # noqa: E402
                               peak, section_lines, timed, versions)
from gpu_check_models import (REAL, TINY, build_decoder, build_encoder, random_captions, random_images,  # noqa: E402
                              real_shapes_line)

LORA = {"r": 32, "alpha": 64}


@dataclass
class Plan:
    """Sizes and repeats of every section (the real defaults; `tiny_plan` shrinks them)."""

    pretrain_batch: int = 8
    caption_tokens: int = 256  # pretraining captions; also the max_new_tokens of both stages
    max_text_tokens: int = 256  # chat-wrapped caption tokens the decoder reads (uae's default; longer are cut)
    stage1_group: int = 8
    stage1_micro: int = 4
    decoder_steps: int = 10
    stage2_images: int = 1
    stage2_group: int = 4
    rollout_steps: int = 10
    guidance: float = 4.5
    paint_steps: int = 40
    paint_batch: int = 4
    paint_images: int = 8
    score_images: int = 64
    warmup: int = 1
    steps: int = 3  # timed steps of section 1 (sections 2-3: 1; 4: one pass over paint_images)


def tiny_plan() -> Plan:
    """CPU test sizes: every loop still runs, fewer times (the tiny run checks wiring, not speed)."""
    return Plan(pretrain_batch=2, caption_tokens=16, stage1_group=4, stage1_micro=2, stage2_group=2,
                rollout_steps=4, paint_steps=8, paint_images=4, score_images=8, warmup=1, steps=1)


# ------------------------------------------------------------------ sections


def decoder_pretrain(ctx: Ctx) -> Result:
    p, s = ctx.plan, ctx.shapes
    t0 = time.perf_counter()
    encoder = build_encoder(s, ctx.device)
    for q in encoder.parameters():
        q.requires_grad_(False)
    decoder = build_decoder(s, ctx.device, encoder.hidden_size).train()
    params = decoder.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    reader = decoder.reader(encoder)
    images = random_images(p.pretrain_batch, s.image_size)
    texts = random_captions(p.pretrain_batch, p.caption_tokens, s)
    build_s, resident = built(ctx, t0)

    def step(i: int) -> float:
        g = torch.Generator().manual_seed(i)
        optimizer.zero_grad(set_to_none=True)
        with ctx.autocast():
            t, noise, drop = decoder.loss_randomness(len(images), g)
            with torch.no_grad():
                hidden, mask = reader.encode_text(texts, max_length=p.max_text_tokens)
            loss = decoder.loss(images, hidden.float(), mask, generator=g, t=t, noise=noise, drop=drop)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return float(loss.detach())

    dt, losses = timed(ctx, step, p.warmup, p.steps)
    n = sum(q.numel() for q in params)
    return Result(dt, f"{p.pretrain_batch / dt:.2f} images/s", build_s=build_s, resident=resident, memory=peak(ctx),
                  settings=f"batch {p.pretrain_batch} x {s.image_size}px, {p.caption_tokens}-word captions (at most "
                           f"{p.max_text_tokens} chat-wrapped tokens read), "
                           f"{n / 1e6:.1f}M trained params (DiT + connector), AdamW, grad clip 1.0, "
                           f"{p.warmup} warm-up + {p.steps} timed steps",
                  detail=f"loss {losses[-1]:.4f}")


def reward_options(ctx: Ctx) -> tuple[dict, dict]:
    from gpu_check_models import save_clip

    folder = ctx.tmp / "clip"
    if not folder.exists():
        save_clip(ctx.shapes, folder, ctx.device)
    return {"uae-clip": 1.0}, {"uae-clip": {"model": str(folder)}}


def rl_context(ctx: Ctx, cfg, stage, encoder, decoder, images: int):
    """The RLContext `rl_loop.run` would hand the stage (one process), after the stage's own setup."""
    from uae_data import distributed
    from uae_train.rl.rewards import build_reward
    from uae_train.training.rl_loop import RLContext

    rl = RLContext(cfg=cfg, out=ctx.tmp / "run", device=ctx.device, dist=distributed.current(), lo=0, hi=images)
    policy, _ = stage.setup(rl, encoder, decoder)
    rl.reward = build_reward(cfg.reward, cfg.reward_options)
    rl.params = policy.trainable_parameters()
    rl.optimizer = torch.optim.AdamW(rl.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return rl, sum(q.numel() for q in rl.params)


def rl_steps(ctx: Ctx, stage, rl, images: list, steps: int) -> tuple[float, list]:
    batch = (images, [None] * len(images), [None] * len(images))

    def step(i: int):
        with ctx.autocast():
            return stage.step(rl, batch, 1000 + i * 7919, i + 2)  # step 1 would compare with a start eval

    return timed(ctx, step, ctx.plan.warmup, steps)


def rl_detail(dt: float, res, rollout: str, reward: str) -> str:
    """The stage's own split of its step (StepResult's rollout_s / reward_s; the rest is mostly the update)."""
    return (f"{rollout} {res.rollout_s:.2f} s, {reward} {res.reward_s:.2f} s, update (+ rest) "
            f"{dt - res.rollout_s - res.reward_s:.2f} s; reward mean {float(res.rewards.mean()):.4f}")


def stage1_step(ctx: Ctx) -> Result:
    from uae_train.stages.gen_for_und import Stage1, Stage1Config

    p, s = ctx.plan, ctx.shapes
    t0 = time.perf_counter()
    reward, options = reward_options(ctx)
    cfg = Stage1Config(images_per_step=1, group_size=p.stage1_group, micro_batch=p.stage1_micro,
                       max_new_tokens=p.caption_tokens, max_text_tokens=p.max_text_tokens, temperature=1.0,
                       decoder_steps=p.decoder_steps, decoder_guidance=1.0, lr=1e-5, reward=reward,
                       reward_options=options, encoder_lora=LORA, mmt_tsv="", image_size=s.image_size)
    cfg.validate()
    encoder = build_encoder(s, ctx.device, lora=LORA)
    decoder = build_decoder(s, ctx.device, encoder.hidden_size)
    stage = Stage1()
    rl, n = rl_context(ctx, cfg, stage, encoder, decoder, 1)
    build_s, resident = built(ctx, t0)
    dt, (res, *_) = rl_steps(ctx, stage, rl, random_images(1, s.image_size), 1)
    return Result(dt, f"{p.stage1_group / dt:.2f} captions/s", build_s=build_s, resident=resident, memory=peak(ctx),
                  settings=f"1 image x G={p.stage1_group} captions, max_new_tokens {p.caption_tokens} (temperature "
                           f"1), reconstructions {p.decoder_steps} ODE steps no CFG at {s.image_size}px, reward "
                           f"uae-clip, loss dapo, micro_batch {p.stage1_micro}, LoRA r32/a64 ({n / 1e6:.1f}M "
                           f"trained), {p.warmup} warm-up + 1 timed step",
                  detail=rl_detail(dt, res, "caption sampling", "reconstructions + reward")
                  + f"; caption words {res.extra['caption_words']:.1f}, truncated {res.extra['truncated']:.2f}")


def stage2_step(ctx: Ctx) -> Result:
    from uae_train.stages.stage2_updates import trained_steps
    from uae_train.stages.und_for_gen import Stage2, Stage2Config

    p, s = ctx.plan, ctx.shapes
    t0 = time.perf_counter()
    reward, options = reward_options(ctx)
    cfg = Stage2Config(images_per_step=p.stage2_images, group_size=p.stage2_group,
                       micro_batch=p.stage2_images * p.stage2_group, rollout_steps=p.rollout_steps,
                       guidance=p.guidance, max_new_tokens=p.caption_tokens, max_text_tokens=p.max_text_tokens,
                       reward=reward, reward_options=options, decoder_options={"lora_rank": 32},
                       image_size=s.image_size)
    cfg.validate()
    encoder = build_encoder(s, ctx.device)
    decoder = build_decoder(s, ctx.device, encoder.hidden_size, lora_rank=32)
    stage = Stage2()
    rl, n = rl_context(ctx, cfg, stage, encoder, decoder, p.stage2_images)
    build_s, resident = built(ctx, t0)
    dt, (res, *_) = rl_steps(ctx, stage, rl, random_images(p.stage2_images, s.image_size, seed=1), 1)
    rollouts = p.stage2_images * p.stage2_group
    return Result(dt, f"{rollouts / dt:.2f} rollouts/s", build_s=build_s, resident=resident, memory=peak(ctx),
                  settings=f"{p.stage2_images} caption(s) (greedy, {p.caption_tokens} tokens) x G={p.stage2_group} "
                           f"rollouts, {p.rollout_steps} SDE steps (noise 0.7), CFG {p.guidance}, {s.image_size}px, "
                           f"update on {cfg.micro_batch}-image micro-batches over {trained_steps(cfg)} of "
                           f"{p.rollout_steps} steps, beta {cfg.beta}, reward uae-clip, DiT LoRA r32/a64 + connector "
                           f"({n / 1e6:.1f}M trained), {p.warmup} warm-up + 1 timed step",
                  detail=rl_detail(dt, res, "captions + SDE rollouts", "reward + advantages"))


def geneval_paint(ctx: Ctx) -> Result:
    from uae_eval.geneval.prompts import load_metadata, official_metadata_path
    from uae_train.evaluation.autoencoder import text_to_image

    p, s = ctx.plan, ctx.shapes
    t0 = time.perf_counter()
    encoder = build_encoder(s, ctx.device)
    decoder = build_decoder(s, ctx.device, encoder.hidden_size)
    paint = text_to_image(encoder, decoder, steps=p.paint_steps, guidance=p.guidance,
                          max_text_tokens=p.max_text_tokens, batch_size=p.paint_batch)
    prompts = [m["prompt"] for m in load_metadata(official_metadata_path())]
    build_s, resident = built(ctx, t0)

    def step(i: int) -> None:
        n = p.paint_batch if i < p.warmup else p.paint_images
        with ctx.autocast():
            paint(prompts[:n], list(range(n)))

    dt, _ = timed(ctx, step, p.warmup, 1)
    return Result(dt / p.paint_images, f"{p.paint_images / dt:.3f} images/s", build_s=build_s, resident=resident,
                  memory=peak(ctx),
                  settings=f"{p.paint_images} official GenEval prompts, {p.paint_steps} ODE steps, CFG {p.guidance} "
                           f"(null-context negative), batch {p.paint_batch}, {s.image_size}px; "
                           f"step = one image; warm-up {p.warmup} batch",
                  detail=f"{dt:.2f} s for {p.paint_images} images")


def geneval_score(ctx: Ctx) -> Result:
    from geneval_scoring import real_size_models, score
    from tiny_geneval_models import tiny_clip, tiny_mask2former
    from uae_eval.geneval.colour import build_colourer
    from uae_eval.geneval.detectors import build_detector
    from uae_eval.geneval.generators import build_generator
    from uae_eval.geneval.prompts import load_metadata, scene_metadata_path

    p, real, dev = ctx.plan, ctx.shapes is REAL, str(ctx.device)
    t0 = time.perf_counter()
    metas = load_metadata(scene_metadata_path())
    metas = (metas * (p.score_images // len(metas) + 1))[: p.score_images]
    images = build_generator("oracle", image_size=64)(metas, list(range(p.score_images)))
    if real:
        images = [im.resize((512, 512)) for im in images]
        det = build_detector("mask2former", model=str(real_size_models(ctx.tmp)), device=dev, dtype="float32")
        col = build_colourer("clip", model="ViT-L-14", pretrained=None, device=dev, min_score=0.0)
    else:
        det = build_detector("mask2former", model=str(tiny_mask2former(ctx.tmp / "tm")), device=dev)
        col = build_colourer("clip", model=str(tiny_clip(ctx.tmp / "tc")), pretrained=None, device=dev)
    build_s, resident = built(ctx, t0)
    rate = score(det, col, metas, images, 16)
    what = ("Swin-S Mask2Former (transformers, 800/1333 px, fp32) + open_clip ViT-L-14" if real
            else "tiny Mask2Former + tiny open_clip")
    return Result(1 / rate, f"{rate:.2f} images/s", build_s=build_s, resident=resident, memory=peak(ctx),
                  settings=f"{what}, {p.score_images} scene renders at {images[0].size[0]}px, batch 16, "
                  + ("min_score 0 (colours every candidate: up to 16 per class)" if real else "default min_score")
                  + "; step = one image; warm-up 1 batch")


SECTIONS: list[tuple[str, Callable[[Ctx], Result]]] = [
    ("decoder_pretrain", decoder_pretrain), ("stage1_step", stage1_step), ("stage2_step", stage2_step),
    ("geneval_paint", geneval_paint), ("geneval_score", geneval_score)]


# ------------------------------------------------------------------ driver


def shapes_line() -> str:
    try:
        return real_shapes_line()
    except Exception as err:  # noqa: BLE001 - the header line must not stop the check
        return f"error: {type(err).__name__}: {str(err).strip()[:200]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny models of the same classes (a CPU test run)")
    ap.add_argument("--device", default=None, help="default: cuda when visible, cpu with --tiny")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--budget-s", type=float, default=450.0, help="no section starts after this many seconds")
    ap.add_argument("--sections", default="1,2,3,4,5", help="which sections to run, e.g. 1,3")
    ap.add_argument("--pretrain-batch", type=int, help="section 1's batch (real default 8)")
    ap.add_argument("--caption-tokens", type=int, help="caption length / max_new_tokens (real default 256)")
    ap.add_argument("--decoder-steps", type=int, help="section 2's reconstruction ODE steps (default 10)")
    args = ap.parse_args()
    start = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"))
    plan = tiny_plan() if args.tiny else Plan()
    overrides = {"pretrain_batch": args.pretrain_batch, "caption_tokens": args.caption_tokens,
                 "decoder_steps": args.decoder_steps}
    plan = replace(plan, **{k: v for k, v in overrides.items() if v is not None})
    if device.type == "cpu":  # tiny models: one thread is ~10x faster than two on a shared 2-core machine
        torch.set_num_threads(1)
    slug = device_slug(device, args.tiny)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"gpu_check_{slug}.txt"
    header = [f"# uae gpu check ({'tiny' if args.tiny else 'real'} size, random weights built from config)",
              f"device: {name} ({slug})", f"versions: python {sys.version.split()[0]}, {versions()}",
              f"git commit: {git_commit()}", f"date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
              f"command: python {' '.join([Path(sys.argv[0]).name, *sys.argv[1:]])}",
              f"PYTORCH_CUDA_ALLOC_CONF: {os.environ.get('PYTORCH_CUDA_ALLOC_CONF', '(unset)')}",
              "precision: " + ("bf16 autocast; decoder/CLIP/detector weights fp32, encoder weights bf16 (as uae "
                               "loads them on CUDA)" if device.type == "cuda" else "fp32 (uae's CPU default)"),
              f"budget: {args.budget_s:.0f} s", f"real shapes (meta device): {shapes_line()}"]
    body: list[str] = []
    wanted = {int(x) for x in args.sections.split(",")}
    log(f"gpu check on {name}; writing {path}")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Ctx(TINY if args.tiny else REAL, plan, device, Path(tmp))
        for i, (sec, fn) in enumerate(SECTIONS, 1):
            if i not in wanted:
                continue
            elapsed = time.perf_counter() - start
            result, status = None, "skipped: budget"
            if elapsed <= args.budget_s:
                log(f"section {i} {sec} ...")
                result, status, oom = attempt(fn, ctx)
                if oom and fn is decoder_pretrain and ctx.plan.pretrain_batch > 1:
                    first = ctx.plan.pretrain_batch  # one retry at half the batch, so section 1 has a number
                    ctx.plan = replace(ctx.plan, pretrain_batch=first // 2)
                    log(f"section 1 ran out of memory at batch {first}; retrying at {first // 2}")
                    free(device)
                    result, status, _ = attempt(fn, ctx)
                    status += f" (batch {first} ran out of memory; this is batch {first // 2})"
            free(device)
            log(f"section {i} {sec}: {status}" + (f", {result.step_s:.3f} s/step, {result.throughput}, "
                                                  f"peak {result.memory.split(' (')[0]}" if result else ""))
            body += section_lines(i, sec, status, result)
            total = f"total: {time.perf_counter() - start:.1f} s (after imports)"
            path.write_text("\n".join(header + [total] + body) + "\n")
    log(f"done in {time.perf_counter() - start:.1f} s: {path}")
    print(path.read_text())


if __name__ == "__main__":
    main()
