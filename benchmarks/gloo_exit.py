"""How often a finished 2-process gloo run aborts at exit, with and without uae's teardown.

A rank that leaves its gloo process group to the interpreter's exit sometimes dies in a static destructor
("terminate called without an active exception", exit -6), so torchrun reports a failure after the run
finished. `uae_data.distributed.setup` registers a teardown (`_leave`) at exit; this script runs the same
tiny job (setup, five all-reduces, a barrier, exit) through torchrun `--runs` times with the teardown and
as many times with it unregistered, alternating, and counts the runs that did not exit 0.

Usage: python benchmarks/gloo_exit.py [--runs 25] [--write]
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
JOB = """
import atexit, sys
sys.path.insert(0, {root!r})
import torch
from uae_data import distributed
d = distributed.setup("cpu")
if sys.argv[1] == "without":
    atexit.unregister(distributed._leave)
t = torch.ones(1000)
for _ in range(5):
    torch.distributed.all_reduce(t)
d.barrier()
"""


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    torchrun = str(Path(sys.executable).parent / "torchrun")
    failed = {"with": 0, "without": 0}
    with tempfile.TemporaryDirectory(prefix="uae-gloo-exit-") as tmp:
        job = Path(tmp) / "job.py"
        job.write_text(JOB.format(root=str(ROOT)))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": tmp}
        for _ in range(args.runs):
            for mode in failed:
                r = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                                    free_port(), str(job), mode], env=env, capture_output=True, timeout=120)
                failed[mode] += r.returncode != 0
    text = "\n".join([
        f"gloo exit: {args.runs} two-process torchrun runs each way (setup, 5 all-reduces, barrier, exit)",
        f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, torch {torch.__version__}",
        f"with uae's teardown (destroy_process_group at exit): {failed['with']} of {args.runs} runs failed",
        f"without it (the group left to the interpreter's exit): {failed['without']} of {args.runs} runs failed"])
    print(text)
    if args.write:
        (ROOT / "benchmarks" / "results" / "gloo_exit.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
