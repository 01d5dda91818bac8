"""Pretraining throughput with 1 vs N processes (torchrun), same global batch, scene world.

Each run is `uae train pretrain` on the same corpus and config; the steps/s of each phase is read from its
metrics.jsonl (mean step_time_s after the first `--skip` steps, which include start-up). Every process gets
`--threads` intra-op threads, so 1 process × T threads is compared with N processes × T threads: on a machine
with N×T cores the ideal speed-up is N. The numbers are the same (the loss curves match, see
tests/test_distributed.py); only time is measured here. Efficiency = speed-up / N.

What bounds it on CPU: every rank reads and decodes the whole global batch's images (they are small) and
draws the same randomness; gradients are one flattened all-reduce per optimizer step over gloo.

Usage: python benchmarks/pretrain_scaling.py [--procs 2] [--steps 30] [--batch 16] [--size 48] [--write]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def run(n: int, corpus: Path, out: Path, args: argparse.Namespace) -> dict[str, float]:
    """Mean seconds per step of each phase for one run with n processes."""
    over = [f"image_size={args.size}", f"encoder_steps={args.steps}", f"decoder_steps={args.steps}",
            f"batch_size={args.batch}", "log_every=1", f"checkpoint_every={args.steps}", "reliance_samples=0"]
    cmd = ([sys.executable, str(ROOT / "cli.py")] if n == 1 else
           [str(BIN / "torchrun"), "--nproc-per-node", str(n), "--master-addr", "127.0.0.1", "--master-port",
            free_port(), str(BIN / "uae")])
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TMPDIR": str(out.parent)}  # torchrun's temp dirs
    subprocess.run([*cmd, "train", "pretrain", "--corpus", str(corpus), "--out", str(out), *over], cwd=ROOT, env=env,
                   check=True, capture_output=True)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {phase: sum(r["step_time_s"] for r in rows if r["phase"] == phase and r["step"] > args.skip)
            / max(1, sum(1 for r in rows if r["phase"] == phase and r["step"] > args.skip))
            for phase in ("encoder", "decoder")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--skip", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=48)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="uae-scaling-"))
    try:
        corpus = tmp / "corpus"
        subprocess.run([sys.executable, str(ROOT / "cli.py"), "build-corpus", "manifests/corpus/scenes.yaml", "--out",
                        str(corpus), "--limit", "512", f"image_size={args.size}"], cwd=ROOT, check=True,
                       capture_output=True)
        one = run(1, corpus, tmp / "one", args)
        many = run(args.procs, corpus, tmp / "many", args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"pretrain scaling: 1 vs {args.procs} processes (torchrun, gloo), {args.threads} thread(s) each, "
             f"global batch {args.batch}, {args.size}px scene corpus, {args.steps} steps per phase (first {args.skip} "
             f"skipped)", f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"torch {torch.__version__}", "",
             f"{'phase':<8} {'1 proc s/step':>14} {f'{args.procs} procs s/step':>16} {'speed-up':>9} {'efficiency':>11}"]
    for phase in ("encoder", "decoder"):
        speed = one[phase] / many[phase]
        lines.append(f"{phase:<8} {one[phase]:>14.4f} {many[phase]:>16.4f} {speed:>8.2f}x {speed / args.procs:>10.0%}")
    text = "\n".join(lines)
    print(text)
    if args.write:
        (ROOT / "benchmarks" / "results" / "pretrain_scaling_cpu.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
