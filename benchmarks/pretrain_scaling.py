"""Pretraining throughput with 1 vs N processes (torchrun), same global batch, scene world.

Each run is `uae train pretrain` on the same corpus and config; the steps/s of each phase is read from its
metrics.jsonl (mean step_time_s after the first `--skip` steps, which include start-up and the first fill
of the shuffle buffer, and without the last step, which writes the phase's checkpoint and model). Every
process gets `--threads` intra-op threads, so 1 process × T threads is compared with N processes × T
threads: on a machine with N×T cores the ideal speed-up is N. The numbers are the same (the loss curves
match, see tests/test_distributed.py); only time is measured here. Efficiency = speed-up / N.
`--baseline REF` also runs the code of git commit REF (a worktree in a temporary folder) in the same
rounds, so old and new code are measured under the same machine load; `--rounds R` alternates the runs R
times and reports each figure's median. The load average is printed with the figures: other work on the
machine stalls the ranks at their synchronisation points, so measure on a quiet machine.

What a rank does per step: it reads every sample's metadata from the indexed shards (no pixels) and
decodes only its own images; on one machine the gradients go through shared memory and each rank clips
and steps only its share of the parameters (uae_train/training/shared_step.py). What bounded it before
(2-core machine, scene DiT of 2.5 M parameters): a gloo all-reduce of the whole gradient (~10 ms a step),
the same AdamW step and clip norm on every rank (~10 ms), every rank reading and decoding every sample of
the global batch (~0.2 ms a sample). What bounds it now: the models' fixed cost per step. One process at
half the batch does not take half the time (the DiT's forward and backward dispatch ~1,900 ops whatever the
batch; padding follows the longest caption), so even a rank that never waited could not reach 100%: the
`ceiling` column measures that bound in the same run (1 process at 1/N of the batch), and `of ceiling` is
what communication and waiting for the other rank leave of it. Larger batches per process scale better
(`--batch 64 --decoder-batch 128`).

Usage: python benchmarks/pretrain_scaling.py [--procs 2] [--steps 30] [--batch 16] [--decoder-batch 32]
       [--size 48] [--baseline REF] [--rounds 1] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PHASES = ("encoder", "decoder")


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def run(code: Path, n: int, corpus: Path, out: Path, args: argparse.Namespace, share: int = 1) -> dict[str, float]:
    """Mean seconds per step of each phase for one run of the code in `code` with n processes, at the global
    batches divided by `share` (share N with n = 1: one process doing one rank's work of an N-process run)."""
    over = [f"image_size={args.size}", f"encoder_steps={args.steps}", f"decoder_steps={args.steps}",
            f"batch_size={args.batch // share}", f"decoder_batch_size={args.decoder_batch // share}", "log_every=1",
            f"checkpoint_every={args.steps}", "reliance_samples=0"]
    launcher = ([] if n == 1 else [str(BIN / "torchrun"), "--nproc-per-node", str(n), "--master-addr", "127.0.0.1",
                                   "--master-port", free_port()])
    cmd = [*(launcher or [sys.executable]), str(code / "cli.py")]  # the script's folder comes first on sys.path
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TMPDIR": str(out.parent)}  # torchrun's temp dirs
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([*cmd, "train", "pretrain", "--corpus", str(corpus), "--out", str(out), *over], cwd=code, env=env,
                   check=True, capture_output=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the last step also writes the phase's checkpoint and model (in a real run one step in checkpoint_every)
    times = {p: [r["step_time_s"] for r in rows if r["phase"] == p and args.skip < r["step"] < args.steps]
             for p in PHASES}
    return {p: sum(t) / max(1, len(t)) for p, t in times.items()}


def table(title: str, one: dict[str, float], many: dict[str, float], procs: int,
          part: dict[str, float] | None = None) -> list[str]:
    """Speed-up and efficiency; with `part` (1 process at 1/procs of the batch) also the ceiling that the
    models' own cost allows, one[phase] / (procs x part[phase]), and how much of it the run reaches."""
    head = f"{'phase':<8} {'1 proc s/step':>14} {f'{procs} procs s/step':>16} {'speed-up':>9} {'efficiency':>11}"
    if part:
        head += f" {f'1 proc 1/{procs} batch':>18} {'ceiling':>8} {'of ceiling':>11}"
    lines = [title, head]
    for phase in PHASES:
        speed = one[phase] / many[phase]
        line = f"{phase:<8} {one[phase]:>14.4f} {many[phase]:>16.4f} {speed:>8.2f}x {speed / procs:>10.0%}"
        if part:
            ceiling = one[phase] / (procs * part[phase])
            line += f" {part[phase]:>18.4f} {ceiling:>8.0%} {speed / procs / ceiling:>11.0%}"
        lines.append(line)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16, help="global batch of the encoder phase")
    ap.add_argument("--decoder-batch", type=int, default=32, help="global batch of the decoder phase (the "
                    "scene manifest's decoder_batch_size)")
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", default="", help="git commit whose code to measure beside this one")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="uae-scaling-"))
    codes = {"this code": ROOT}
    load_before = os.getloadavg()
    try:
        if args.baseline:
            base = tmp / "baseline"
            subprocess.run(["git", "worktree", "add", "--detach", str(base), args.baseline], cwd=ROOT, check=True,
                           capture_output=True)
            sha = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout.strip()
            codes = {f"baseline {sha}": base, "this code": ROOT}
        corpus = tmp / "corpus"
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "build-corpus", "manifests/corpus/scenes.yaml", "--out",
                        str(corpus), "--limit", "512", f"image_size={args.size}"], cwd=ROOT, check=True,
                       capture_output=True)
        got: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(args.rounds):
            for n in (1, args.procs):
                for name, code in codes.items():  # alternated, so both codes see the same load
                    got.setdefault((name, n), []).append(run(code, n, corpus, tmp / "run", args))
            # the ceiling: one process doing one rank's share of the work (no communication, no other rank)
            got.setdefault(("part", 1), []).append(run(ROOT, 1, corpus, tmp / "run", args, share=args.procs))
    finally:
        if args.baseline:
            subprocess.run(["git", "worktree", "remove", "--force", str(tmp / "baseline")], cwd=ROOT,
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    med = {k: {p: statistics.median(r[p] for r in v) for p in PHASES} for k, v in got.items()}
    lines = [f"pretrain scaling: 1 vs {args.procs} processes (torchrun, gloo), {args.threads} thread(s) each, "
             f"global batch {args.batch} (encoder) / {args.decoder_batch} (decoder), {args.size}px scene corpus, "
             f"{args.steps} steps per phase (mean of steps {args.skip + 1}..{args.steps - 1}: not the start-up, not "
             f"the last step's checkpoint), median of {args.rounds} round(s)",
             f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after"]
    for name in codes:
        part = med[("part", 1)] if name == "this code" else None
        lines += ["", *table(name, med[(name, 1)], med[(name, args.procs)], args.procs, part)]
    lines += ["", f"ceiling = the 1-process time / ({args.procs} x the time of 1 process at 1/{args.procs} of the batch): "
              "the best a rank can do when its share of the batch costs what it costs alone, before any "
              "communication or waiting for the other ranks."]
    text = "\n".join(lines)
    print(text)
    if args.write:
        default = (args.batch, args.decoder_batch) == (ap.get_default("batch"), ap.get_default("decoder_batch"))
        name = "pretrain_scaling_cpu" + ("" if default else f"_batch{args.batch}-{args.decoder_batch}")
        (ROOT / "benchmarks" / "results" / f"{name}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
