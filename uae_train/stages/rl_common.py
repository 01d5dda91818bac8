"""What both Unified-GRPO stages share: run folders, model loading, held-out images, eval rows and results.

A stage's `--init` is a run folder holding `encoder/` and `decoder/` (what `uae train pretrain` and each
stage write), so stages chain: pretrain → stage1 → stage2, and every run folder can be evaluated with
`uae eval ... --encoder RUN/encoder --decoder RUN/decoder`.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from uae_data.core.config import dump_yaml, to_dict
from uae_data.core.errors import ConfigError, InputError
from uae_data.scenes import Scene, render, sample_scene
from uae_data.shards import corpus_dataset, list_shards


def prepare_run(out: Path, cfg: Any, kind: str, resume: bool, main: bool = True) -> bool:
    """Continue the run in `out` when it was started with the same config (rerunning the same command
    resumes, as the demo and build-corpus do; `--resume` says so explicitly); refuse another config.

    Returns whether this is a resumed run. Writes config.yaml for a new one (rank 0 of a multi-process run;
    the others wait for it and read the same answer).
    """
    from uae_data import distributed

    dist = distributed.current()
    if dist.active:
        answer = None
        if main:
            try:
                answer = ("ok", _prepare_run(out, cfg, kind, resume))
            except Exception as err:  # every rank must leave, with the same one-line error
                answer = ("error", err)
        answer = dist.gather(answer)[0]
        if answer[0] == "error":
            raise answer[1]
        return answer[1]
    return _prepare_run(out, cfg, kind, resume)


def _prepare_run(out: Path, cfg: Any, kind: str, resume: bool) -> bool:
    saved = out / "config.yaml"
    if saved.exists():
        import yaml

        try:
            old = yaml.safe_load(saved.read_text()) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{saved}: unreadable (corrupt YAML); cannot resume this run: choose another --out") from None
        old = old if isinstance(old, dict) else {}
        old.pop("kind", None)
        new = to_dict(cfg)
        if old != new:
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ConfigError(f"{out}: holds a run with another config ({', '.join(changed[:5])} differ from its "
                              "config.yaml); rerun it with the same manifest and overrides, or choose another --out")
        return True
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(dump_yaml(cfg, kind=kind))
    return resume


def check_init(init: str) -> Path:
    root = Path(init) if init else None
    if root is None:
        raise ConfigError("init: give --init RUN (a `uae train pretrain` or stage run folder with encoder/ and decoder/)")
    for part in ("encoder", "decoder"):
        if not (root / part / "config.json").exists() and not (root / part / "transformer").exists():
            raise InputError(f"{root}: no {part}/ model folder in it (run `uae train pretrain` first)")
    return root


def load_pair(init: Path, device: torch.device, encoder_lora: dict | None = None, decoder_options: dict | None = None):
    """(encoder, decoder) from a run folder, on `device`, in eval mode."""
    from uae_train.models.decoder import Decoder
    from uae_train.models.encoder import Encoder

    try:
        encoder = Encoder.from_pretrained(init / "encoder", device=device, lora=encoder_lora or None)
        decoder = Decoder.from_pretrained(init / "decoder", text_hidden_size=encoder.hidden_size,
                                          **(decoder_options or {})).to(device)
    except ValueError as e:
        raise InputError(str(e)) from None
    return encoder.eval(), decoder.eval()


def frozen_copy(module: Any) -> Any:
    """A deep copy with gradients off: the reference policy / the frozen text reader."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin.eval()


def parameters_digest(module: Any) -> float:
    """Cheap fingerprint of every parameter (sum of |w|·k): a frozen module must keep it bit for bit."""
    total = 0.0
    for i, p in enumerate(module.parameters()):
        total += float(p.detach().double().abs().sum()) * (1 + i % 7)
    return total


def reward_references(images: list, scenes: list, shuffle: bool) -> tuple[list, list]:
    """What each image's rollouts are scored against: the image itself, or (the shuffled-reward control) the
    next image of the batch, so the reward no longer says anything about the image the policy saw."""
    if not shuffle or len(images) < 2:
        return images, scenes
    return images[1:] + images[:1], scenes[1:] + scenes[:1]


def scene_of(sample: dict) -> Scene | None:
    spec = (sample.get("meta") or {}).get("scene")
    if not spec:
        return None
    return Scene.from_dict(spec) if isinstance(spec, dict) else None


def train_stream(corpus: Path, shuffle: int, seed: int, skip: int) -> Iterator[dict]:
    """Endless seeded sample stream over the corpus (epoch e reshuffles with seed+e); skips `skip` samples."""
    list_shards(corpus)
    epoch, seen = 0, 0
    while True:
        empty = True
        for s in corpus_dataset(corpus, shuffle=shuffle, seed=seed + epoch):
            empty = False
            seen += 1
            if seen > skip:
                yield s
        if empty:
            raise InputError(f"{corpus}: the shards hold no samples")
        epoch += 1


def heldout(eval_corpus: str, n: int, seed: int, image_size: int) -> tuple[list[Image.Image], list[Scene | None]]:
    """Held-out images (+ scene specs when known).

    eval_corpus "" = the scene world: n scenes drawn from generators seeded (seed, i), a stream the corpus
    builder never uses (it seeds by row from the corpus seed), rendered at image_size. Otherwise the first
    n samples of that corpus folder (keep it out of the training corpus).
    """
    if not eval_corpus:
        scenes = [sample_scene(np.random.default_rng([seed, 7919, i])) for i in range(n)]
        return [render(s, image_size) for s in scenes], list(scenes)
    images, scenes = [], []
    for s in corpus_dataset(Path(eval_corpus), shuffle=0):
        images.append(s["image"].convert("RGB").resize((image_size, image_size)))
        scenes.append(scene_of(s))
        if len(images) == n:
            break
    if not images:
        raise InputError(f"{eval_corpus}: no held-out samples")
    return images, scenes


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_jsonl(path: Path, step: int) -> None:
    """Drop rows logged after the last checkpoint: a resumed run logs them again."""
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
    if path.exists():
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def restore(out: Path, ckpt: Path, module, optimizer, scheduler, resume: bool) -> tuple[int, int]:
    """(step, samples seen) to continue from: the last checkpoint on --resume (logs cut back to it), else (0, 0).
    Every rank of a multi-process run loads the checkpoint; rank 0 cuts the logs."""
    from uae_data import distributed
    from uae_train.checkpoint import load_checkpoint

    dist = distributed.current()
    step, seen = 0, 0
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, module, optimizer, scheduler)
        step, seen = state["step"], state["samples_seen"]
    if resume and dist.main:
        truncate_jsonl(out / "metrics.jsonl", step)
        truncate_jsonl(out / "eval.jsonl", step)
    dist.barrier()
    return step, seen


def global_batch(stream: Iterator[dict], n: int, image_size: int) -> tuple[list, list[Scene | None], list[str | None]]:
    """The next n samples of the stream (every rank reads the same ones): RGB images at image_size, their
    scene specs and their short prompts (meta short_caption; None where a row has none)."""
    batch = [next(stream) for _ in range(n)]
    return ([s["image"].convert("RGB").resize((image_size, image_size)) for s in batch],
            [scene_of(s) for s in batch], [(s.get("meta") or {}).get("short_caption") for s in batch])


def rank_seed(base: int, rank: int) -> int:
    """A rank's sampling seed: rank 0 keeps the 1-process seed, others get their own stream (a run is
    reproducible for a given number of processes)."""
    return base if rank == 0 else (base + rank * 1_000_000_007) % (2**62)


def gather_rewards(dist, rewards: torch.Tensor, parts: dict[str, list]) -> tuple[torch.Tensor, dict[str, list]]:
    """The global batch's (B, G) rewards and reward parts, in rank order (= the 1-process batch order)."""
    got = dist.gather((rewards.detach().cpu(), {k: [float(x) for x in v] for k, v in parts.items()}))
    return torch.cat([r for r, _ in got]), {k: [x for _, p in got for x in p[k]] for k in parts}


class RunLog:
    """An RL stage's records: metrics.jsonl, eval.jsonl (+ `eval_rows` in memory) and the `log_with`
    trackers, written by rank 0 only; `evaluate` runs the held-out evaluation on rank 0 while others wait."""

    def __init__(self, out: Path, cfg: Any, stage: str, dist, eval_rows: list[dict]) -> None:
        from uae_train.tracking import Trackers

        self.dist, self.eval_rows = dist, eval_rows
        self.trackers = Trackers(cfg.log_with, out, stage, to_dict(cfg), main=dist.main)
        self.files = ((out / "metrics.jsonl").open("a"), (out / "eval.jsonl").open("a")) if dist.main else None

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        if self.files:
            for f in self.files:
                f.close()
        self.trackers.close()

    def _write(self, which: int, row: dict, prefix: str) -> None:
        self.files[which].write(json.dumps(row) + "\n")
        self.files[which].flush()
        self.trackers.log(row, row.get("step", 0), prefix=prefix)

    def train(self, row: dict) -> None:
        if self.dist.main:
            self._write(0, row, "train/")

    def evaluate(self, fn, at: int) -> None:
        row = main_only(self.dist, fn, at)
        if self.dist.main:
            self.eval_rows.append(row)
            self._write(1, row, "eval/")


def main_only(dist, fn, *args, **kwargs):
    """fn(...) on rank 0 (evaluations, result files) while the others wait; its value on rank 0, else None."""
    from uae_data import distributed

    value = None
    if dist.main:
        with distributed.alone():
            value = fn(*args, **kwargs)
    dist.barrier()
    return value


def write_stage_results(out: Path, stage: str, cfg: Any, eval_rows: list[dict], model: dict) -> None:
    """results/ in the one schema: start and end of every eval metric, curves over steps for the report."""
    from uae_eval.results import Results, write_results

    if not eval_rows:
        return
    first, last = eval_rows[0], eval_rows[-1]
    keys = [k for k in last if k != "step" and isinstance(last[k], (int, float))]
    metrics: dict[str, float] = {}
    for k in keys:
        if k in first:
            metrics[f"{k}/start"] = float(first[k])
        metrics[f"{k}/end"] = float(last[k])
        if k in first:
            metrics[f"{k}/delta"] = float(last[k]) - float(first[k])
    curves = {k: {"x": [r["step"] for r in eval_rows if k in r], "y": [r[k] for r in eval_rows if k in r],
                  "xlabel": "step", "ylabel": k} for k in keys}
    results = Results(benchmark=f"unified-grpo-{stage}", benchmark_version="scene-heldout" if not getattr(cfg, "eval_corpus", "") else "heldout",
                      model=model, metrics=metrics, primary_metric="heldout_reward/end", higher_is_better=True,
                      n_items=len(eval_rows), config=to_dict(cfg), extra={"curves": curves})
    write_results(out / "results", results, eval_rows)


def repo_path(path: str) -> str:
    """A manifest path as given when it exists, else relative to the repo root (shipped data such as the scene TSV)."""
    from uae_data.core.paths import shipped

    return str(shipped(path))


def mmt_captioner(encoder, tsv: str, limit: int | None, max_new_tokens: int):
    """A caption-reader's captioner with the TSV's images captioned up front in batches (see prefetched_captioner)."""
    from uae_eval.mmt_bench.data import decode_images, load_tsv
    from uae_train.evaluation.autoencoder import prefetched_captioner

    df = load_tsv(tsv)
    if limit:
        df = df.head(limit)
    images = [im for field in df["image"] for im in decode_images(field)[:1]]
    return prefetched_captioner(encoder, images, max_new_tokens=max_new_tokens)


def finish(out: Path, stage: str, cfg: Any, encoder, decoder, eval_rows: list[dict], steps: int, init: Path,
           policy_part: str) -> dict:
    """Save encoder/ and decoder/ (the next stage's --init), results/ and summary.json; return the summary."""
    encoder.save_pretrained(out / "encoder")
    decoder.save_pretrained(out / "decoder")
    model = {"name": f"{stage}:{out.name}", "path": str(out / policy_part), "config": {"init": str(init)}}
    write_stage_results(out, stage, cfg, eval_rows, model)
    summary = {"first_eval": eval_rows[0], "last_eval": eval_rows[-1], "steps": steps}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
