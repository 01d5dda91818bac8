"""Multi-process training (issue #19) on 2 CPU processes (gloo): `torchrun` and `accelerate launch` give the
loss curve of a 1-process run with the same global batch, rank 0 alone writes, resume continues exactly,
stage 2 reproduces the 1-process rollouts, and a stage-1 update on the same rollouts equals the 1-process one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from uae_data.core.config import load_config
from uae_data.corpus_config import CorpusConfig
from uae_data.pipeline import build

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
UAE = str(BIN / "uae")
TINY = ["image_size=32", "encoder_steps=8", "decoder_steps=8", "batch_size=4", "warmup_steps=2", "log_every=1",
        "checkpoint_every=2", "reliance_samples=0"]
SCENE_MODELS = ROOT / "uae_train" / "scene_models"


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    out = {}
    for size in (32, 48):
        cfg = load_config(CorpusConfig, ROOT / "manifests/corpus/scenes.yaml",
                          ["source.n=64", "shard_size=32", f"image_size={size}"])
        build(cfg, root / f"c{size}", workers=1)
        out[size] = root / f"c{size}"
    return out


LAUNCH_TMP: list[Path] = []  # the launchers' temp folders (torchrun leaves torchelastic_* behind) go here


@pytest.fixture(scope="module", autouse=True)
def launcher_tmp(tmp_path_factory):
    LAUNCH_TMP[:] = [tmp_path_factory.mktemp("launcher-tmp")]
    yield
    LAUNCH_TMP.clear()


def _env() -> dict:
    tmp = ({"TMPDIR": str(LAUNCH_TMP[0]), "TORCHINDUCTOR_CACHE_DIR": str(LAUNCH_TMP[0] / "inductor")}
           if LAUNCH_TMP else {})
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **tmp}


def free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def launch(n: int, *args: str, launcher: str = "torchrun", timeout: float = 300, wait: bool = True):
    if n == 1:
        cmd = [sys.executable, str(ROOT / "cli.py"), *args]
    elif launcher == "torchrun":
        cmd = [str(BIN / "torchrun"), "--nproc-per-node", str(n), "--master-addr", "127.0.0.1", "--master-port",
               free_port(), UAE, *args]
    else:
        cmd = [str(BIN / "accelerate"), "launch", "--num_processes", str(n), "--cpu", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1",
               "--main_process_port", free_port(), UAE, *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
    p = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, (p.stdout[-1500:], p.stderr[-3000:])
    return p


def rows(run: Path, name: str = "metrics.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run / name).read_text().splitlines() if line.strip()]


def assert_same_curve(a: Path, b: Path, keys=("loss",), tol: float = 1e-4) -> None:
    ra, rb = rows(a), rows(b)
    assert [(r.get("phase"), r["step"]) for r in ra] == [(r.get("phase"), r["step"]) for r in rb]  # each step once
    for x, y in zip(ra, rb):
        for k in keys:
            if x.get(k) is not None:
                assert abs(x[k] - y[k]) <= tol, (x.get("phase"), x["step"], k, x[k], y[k])


@pytest.fixture(scope="module")
def one_process(corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "run"
    launch(1, "train", "pretrain", "--corpus", str(corpora[32]), "--out", str(out), *TINY)
    return out


@pytest.mark.integration
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_pretrain_on_two_processes_follows_the_one_process_loss_curve(corpora, one_process, tmp_path, launcher):
    out = tmp_path / "two"
    p = launch(2, "train", "pretrain", "--corpus", str(corpora[32]), "--out", str(out), *TINY, launcher=launcher)
    assert_same_curve(one_process, out, keys=("loss", "token_accuracy", "lr"))
    assert p.stdout.count("encoder: loss") == 1  # rank 0 reports
    ckpts = sorted(q.name for q in (out / "checkpoints").iterdir())
    assert ckpts == ["decoder", "encoder"]  # written once: no second rank's copy, no leftovers
    assert json.loads((out / "checkpoints/decoder/state.json").read_text())["step"] == 8
    one = torch.load(one_process / "checkpoints/decoder/optim.pt", weights_only=True)["optimizer"]["state"]
    two = torch.load(out / "checkpoints/decoder/optim.pt", weights_only=True)["optimizer"]["state"]
    assert max(float((one[k]["exp_avg"] - two[k]["exp_avg"]).abs().max()) for k in one) < 1e-5


COUNTING = """import atexit, json, os, sys
sys.path.insert(0, {root!r})
from uae_train.training import data
decoded, real = [], data.read_image
data.read_image = lambda ref: decoded.append(ref.key) or real(ref)
path = os.path.join({out!r}, "decoded-" + os.environ.get("RANK", "0") + ".json")
atexit.register(lambda: open(path, "w").write(json.dumps(decoded)))
import cli
sys.argv = ["uae", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.integration
def test_under_two_processes_each_rank_decodes_only_the_images_it_trains_on(corpora, tmp_path):
    from uae_train.training.data import sample_stream

    script = tmp_path / "counting.py"
    script.write_text(COUNTING.format(root=str(ROOT), out=str(tmp_path)))
    args = ["train", "pretrain", "--corpus", str(corpora[32]), "--out", str(tmp_path / "run"), *TINY,
            "encoder_steps=3", "decoder_steps=2", "decoder_batch_size=8", "checkpoint_every=3"]
    p = subprocess.run([str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port",
                        free_port(), str(script), *args], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    want: dict[int, list[str]] = {0: [], 1: []}  # each phase reads the stream from its start: 3 x 4, then 2 x 8
    for steps, batch in ((3, 4), (2, 8)):
        stream = sample_stream(corpora[32], 500, 0)
        for _ in range(steps):
            keys = [next(stream)["key"] for _ in range(batch)]
            want[0] += keys[:batch // 2]
            want[1] += keys[batch // 2:]
    got = {r: json.loads((tmp_path / f"decoded-{r}.json").read_text()) for r in (0, 1)}
    assert got == want


@pytest.mark.integration
def test_fsdp_shards_the_dit_and_keeps_the_loss_curve_and_the_saved_decoder(corpora, one_process, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "fsdp"
    launch(2, "train", "pretrain", "--corpus", str(corpora[32]), "--out", str(out), *TINY, "fsdp=true")
    assert_same_curve(one_process, out, keys=("loss",))
    fractions = {r["dit_shard_fraction"] for r in rows(out) if r["phase"] == "decoder"}
    assert len(fractions) == 1 and 0.4 < fractions.pop() < 0.6  # rank 0 holds about half the DiT
    for f in ("decoder/transformer/diffusion_pytorch_model.safetensors", "checkpoints/decoder/trainable.safetensors"):
        a, b = load_file(one_process / f), load_file(out / f)  # full tensors, ordinary layout
        assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5


@pytest.fixture(scope="module")
def long_one_process(corpora, tmp_path_factory):
    out = tmp_path_factory.mktemp("long") / "run"
    launch(1, "train", "pretrain", "--corpus", str(corpora[32]), "--out", str(out), *TINY, "decoder_steps=40")
    return out


@pytest.mark.integration
@pytest.mark.parametrize("fsdp", [False, True])
def test_pretrain_resume_under_two_processes_continues_exactly(corpora, long_one_process, tmp_path, fsdp):
    out = tmp_path / "cut"
    args = ("train", "pretrain", "--corpus", str(corpora[32]), "--out", str(out), *TINY, "decoder_steps=40",
            f"fsdp={str(fsdp).lower()}")
    proc = launch(2, *args, wait=False)
    state = out / "checkpoints" / "decoder" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text() or "{}").get("step", 0) >= 2:
            break
        time.sleep(0.05)
    # an interrupt mid-phase, no clean-up: the launcher and its workers (torchrun starts them in their own
    # process groups, so they are found by their --out argument)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(["pkill", "-KILL", "-f", "--", f"--out {out} "], check=False)
    while subprocess.run(["pgrep", "-f", "--", f"--out {out} "], capture_output=True).returncode == 0:
        time.sleep(0.05)
    assert not (out / "decoder" / ".done").exists(), "the run finished before it could be interrupted"
    launch(2, *args)  # the same command again resumes
    assert_same_curve(long_one_process, out, keys=("loss",))


@pytest.mark.integration
def test_stage2_on_two_processes_reproduces_the_one_process_rollouts_and_rewards(corpora, tmp_path):
    args = ["train", "stage2", "--init", str(SCENE_MODELS), "--corpus", str(corpora[48]), "image_size=48", "steps=2",
            "images_per_step=4", "group_size=2", "rollout_steps=6", "guidance=8", "eval_images=2", "eval_steps=2",
            "checkpoint_every=1", "lr=0.0001"]
    launch(1, *args, "--out", str(tmp_path / "one"))
    launch(2, *args, "--out", str(tmp_path / "two"))
    assert_same_curve(tmp_path / "one", tmp_path / "two", keys=("reward_mean", "reward_std", "zero_std_groups", "loss"),
                      tol=1e-5)
    assert any(r["reward_std"] > 0 for r in rows(tmp_path / "two"))  # real groups, not all-equal batches
    assert (tmp_path / "two" / "results" / "results.json").is_file()


@pytest.mark.integration
def test_stage1_runs_on_two_processes_and_refuses_a_batch_that_does_not_split(corpora, tmp_path):
    args = ["train", "stage1", "--init", str(SCENE_MODELS), "--corpus", str(corpora[48]), "image_size=48", "steps=2",
            "group_size=2", "max_new_tokens=200", "decoder_steps=6", "decoder_guidance=8", "eval_images=2",
            "mmt_limit=2", "checkpoint_every=1"]
    launch(2, *args, "images_per_step=4", "--out", str(tmp_path / "two"))
    got = rows(tmp_path / "two")
    assert [r["step"] for r in got] == [1, 2] and 0 < got[0]["reward_mean"] <= 1
    assert (tmp_path / "two" / "encoder" / "config.json").is_file()
    p = subprocess.run([str(BIN / "torchrun"), "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                        "--master-port", free_port(), UAE, *args,
                        "images_per_step=3", "--out", str(tmp_path / "odd")], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode != 0 and "images_per_step of 3 does not split over 2 processes" in p.stderr + p.stdout


# ---------------------------------------------------------------- the update itself, on fixed rollouts

def _fixed_rollouts():
    """Images, sampled captions (token ids) and advantages every process rebuilds identically."""
    import numpy as np

    from uae_data.scenes import render, sample_scene
    from uae_train.rl.grpo import group_advantages
    from uae_train.models.encoder import Encoder

    policy = Encoder.tiny(image_size=32, seed=0)
    images = [render(sample_scene(np.random.default_rng([5, i])), 32) for i in range(4)]
    samples = policy.sample_captions(images, n=2, sample=True, max_new_tokens=10, seed=3)
    rewards = torch.tensor([[0.1, 0.9], [0.5, 0.2], [0.3, 0.3], [0.7, 0.0]])
    adv = group_advantages(rewards, scale="group").flatten()
    originals = [im for im in images for _ in range(2)]
    return policy, originals, samples.token_ids, adv


def _update(rank: int, world: int, out: str) -> None:
    from uae_data import distributed
    from uae_train.stages.gen_for_und import Stage1Config, update

    if world > 1:
        torch.distributed.init_process_group("gloo", init_method=f"file://{out}.pg", rank=rank, world_size=world)
    dist = distributed.Dist(rank=rank, world=world)
    torch.set_num_threads(1)
    policy, originals, token_ids, adv = _fixed_rollouts()
    lo, hi = dist.bounds(len(token_ids))  # whole groups: 2 rollouts per image, 4 images
    cfg = Stage1Config(micro_batch=2, loss_type="dapo", num_iterations=2, lr=1e-3)
    params = policy.trainable_parameters()
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    policy.train()
    stats = update(cfg, policy, policy, originals[lo:hi], token_ids[lo:hi], adv[lo:hi], opt, params, dist)
    if rank == 0:
        torch.save({"params": [p.detach().clone() for p in params], "stats": stats}, out)
    if world > 1:
        torch.distributed.barrier()  # both ranks done before either tears gloo down
        torch.distributed.destroy_process_group()


@pytest.mark.integration
def test_stage1_update_on_two_processes_equals_the_one_process_update_on_the_same_rollouts(tmp_path, monkeypatch):
    import torch.multiprocessing as mp

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))  # not /tmp/torchinductor_$USER

    from uae_train.rl.grpo import group_advantages

    _update(0, 1, str(tmp_path / "one.pt"))
    mp.spawn(_update, args=(2, str(tmp_path / "two.pt")), nprocs=2, join=True)
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    moved = max(float((a - b.detach()).abs().max()) for a, b in zip(one["params"], _fixed_rollouts()[0].trainable_parameters()))
    assert moved > 1e-4  # the update did something
    assert max(float((a - b).abs().max()) for a, b in zip(one["params"], two["params"])) < 1e-5
    for k in ("loss", "kl", "clip_fraction", "ratio_mean"):
        assert abs(one["stats"][k] - two["stats"][k]) < 1e-5, k
    # advantages of whole groups do not depend on which rank holds them
    rewards = torch.rand(6, 4, generator=torch.Generator().manual_seed(0))
    split = torch.cat([group_advantages(rewards[:3]), group_advantages(rewards[3:])])
    assert torch.equal(split, group_advantages(rewards))


# ---------------------------------------------------------------- evaluation split over processes

@pytest.mark.integration
@pytest.mark.parametrize("bench", ["geneval", "recon", "mmt-bench", "dpg-bench"])
def test_evaluation_on_two_processes_writes_what_one_process_writes(corpora, tmp_path, bench):
    m = SCENE_MODELS
    args = {"geneval": ["limit=8", "images_per_prompt=2", "--encoder", str(m / "encoder"), "--decoder",
                        str(m / "decoder"), "--steps", "4", "--guidance", "8"],
            "recon": ["--data", str(corpora[48]), "--encoder", str(m / "encoder"), "--decoder", str(m / "decoder"),
                      "--steps", "4", "limit=7", "image_size=48", "shuffle_captions=true"],
            "mmt-bench": ["--model", "caption-reader", "--encoder", str(m / "encoder"), "limit=9"],
            "dpg-bench": ["limit=7", "tiles=2", "--encoder", str(m / "encoder"), "--decoder", str(m / "decoder"),
                          "--steps", "4", "--guidance", "8"]}[bench]
    launch(1, "eval", bench, *args, "--out", str(tmp_path / "one"))
    p = launch(2, "eval", bench, *args, "--out", str(tmp_path / "two"))
    assert p.stdout.count("overall=") + p.stdout.count("recon over") == 1  # rank 0 reports
    one, two = (json.loads((tmp_path / r / "results.json").read_text()) for r in ("one", "two"))
    assert one["metrics"] == two["metrics"] and one["n_items"] == two["n_items"]
    assert (tmp_path / "one" / "samples.jsonl").read_text() == (tmp_path / "two" / "samples.jsonl").read_text()
    if bench == "geneval":
        assert (tmp_path / "one" / "results.jsonl").read_text() == (tmp_path / "two" / "results.jsonl").read_text()
    if bench == "dpg-bench":  # every judged answer, in the one-process order
        assert (tmp_path / "one" / "answers.jsonl").read_text() == (tmp_path / "two" / "answers.jsonl").read_text()
    if bench == "recon":  # every rank wrote its own images
        assert sorted(q.name for q in (tmp_path / "two" / "images").iterdir()) == \
            sorted(q.name for q in (tmp_path / "one" / "images").iterdir())
