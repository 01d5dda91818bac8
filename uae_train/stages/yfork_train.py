"""`uae train yfork`: train a Y-fork (or, with shared_layers == num_layers, a fully shared model) on the
scene corpus for image → text and text → image at once, by next-token prediction (UniFork's recipe).

Every step draws one batch of samples; each sample gives an understanding sequence (image tokens, then
its long caption) and a generation sequence (its long or, with `short_caption_prob`, its short GenEval-style
caption, then its image tokens); loss = und CE + gen CE. The corpus is read once into memory (`limit`
samples) and batches are drawn with a generator seeded by (seed, step), so a run is reproducible. The
checkpoint is written at the end (OUT/model); there is no mid-run resume (runs are minutes long).
"""
from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from uae_data.core.config import config_kind, dump_yaml, help_field, require_at_least_one, to_dict
from uae_data.core.errors import ConfigError
from uae_data.pairs import load_pairs


@config_kind("yfork")
@dataclass
class YForkTrainConfig:
    corpus: str = help_field("out/corpus", help="corpus folder (uae build-corpus output)")
    name: str = help_field("yfork", help="model name written into results (e.g. yfork, shared)")
    num_layers: int = help_field(4, help="transformer layers on each task's path")
    shared_layers: int = help_field(2, help="shallow layers shared by both tasks; = num_layers is the fully shared baseline")
    hidden_size: int = help_field(64, help="model width")
    num_heads: int = help_field(4, help="attention heads")
    num_kv_heads: int = help_field(2, help="key/value heads (grouped-query attention, as Qwen2)")
    intermediate_size: int = help_field(128, help="MLP width")
    image_size: int = help_field(64, help="side at which the image tokenizer reads (and renders) images")
    limit: int = help_field(2000, help="corpus samples read into memory for training (the first N)")
    steps: int = help_field(400, help="optimizer steps")
    batch_size: int = help_field(16, help="samples per step (each gives one und and one gen sequence)")
    lr: float = help_field(3e-3, help="AdamW learning rate (after warmup, cosine to 0)")
    warmup_steps: int = help_field(20, help="linear warmup steps")
    weight_decay: float = help_field(0.0, help="AdamW weight decay")
    grad_clip: float = help_field(1.0, help="max gradient norm (0 = off)")
    short_caption_prob: float = help_field(0.5, help="gen: share of samples conditioned on their short caption")
    log_every: int = help_field(10, help="write metrics.jsonl every N steps")
    threads: int = help_field(0, help="torch CPU threads (0 = leave torch's default)")
    seed: int = help_field(0, help="seed of model init and batch draws")

    def validate(self) -> None:
        if not 1 <= self.shared_layers <= self.num_layers:
            raise ValueError(f"shared_layers must be in 1..num_layers={self.num_layers}, got {self.shared_layers}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")
        require_at_least_one(self, "steps", "batch_size", "limit", "log_every")
        if not 0 <= self.short_caption_prob <= 1:
            raise ValueError("short_caption_prob must be in [0, 1]")

    def model_config(self):
        from uae_train.models.yfork import YForkModelConfig

        return YForkModelConfig(hidden_size=self.hidden_size, num_layers=self.num_layers,
                                shared_layers=self.shared_layers, num_heads=self.num_heads,
                                num_kv_heads=self.num_kv_heads, intermediate_size=self.intermediate_size,
                                image_size=self.image_size)


def pad_batch(seqs: list[list[int]], starts: list[int], pad: int, stop: list[int] | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids (B, T), labels (B, T)) right-padded; position t is labelled with token t+1 when
    starts[i] <= t+1 < stop[i] (stop default: the sequence end), else -100."""
    length = max(map(len, seqs))
    ids = torch.full((len(seqs), length), pad, dtype=torch.long)
    labels = torch.full((len(seqs), length), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        end = len(s) if stop is None else stop[i]
        labels[i, starts[i] - 1:end - 1] = ids[i, starts[i]:end]
    return ids, labels


def task_batches(model, codes: torch.Tensor, captions: list[str], gen_texts: list[str]):
    """Understanding and generation (ids, labels) for one batch; see the yfork module docstring."""
    v = model.vocab
    und, und_start = zip(*(v.understanding(c.tolist(), t) for c, t in zip(codes, captions)))
    gen, gen_start = zip(*(v.generation(t, c.tolist()) for c, t in zip(codes, gen_texts)))
    und_batch = pad_batch(list(und), [b + 1 for b in und_start], v["<pad>"])
    gen_batch = pad_batch(list(gen), [b + 1 for b in gen_start], v["<pad>"], stop=[b + 1 + codes.shape[1] for b in gen_start])
    return und_batch, gen_batch


def lr_factor(cfg: YForkTrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_yfork(cfg: YForkTrainConfig, out: Path, on_progress: Callable[..., None] | None = None) -> dict:
    """Train into `out` (config.yaml, metrics.jsonl, model/, summary.json); returns the summary."""
    from uae_train.models.yfork import YFork

    out = Path(out)
    if (out / "config.yaml").exists():
        raise ConfigError(f"{out}: holds a run already; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_yaml(cfg, kind="yfork"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = YFork(cfg.model_config(), seed=cfg.seed)
    pairs = load_pairs(Path(cfg.corpus), cfg.limit, cfg.image_size)
    codes = model.vocab.image.encode([p["image"] for p in pairs])  # (N, 9), tokenized once
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(cfg, s))
    model.train()
    rows: list[dict] = []
    t_last = time.perf_counter()
    with (out / "metrics.jsonl").open("w") as log:
        for step in range(cfg.steps):
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            idx = torch.randint(len(pairs), (cfg.batch_size,), generator=g).tolist()
            rng = random.Random(int(torch.randint(2**31, (1,), generator=g)))
            gen_texts = [pairs[i]["short_caption"] if pairs[i]["short_caption"] and rng.random() < cfg.short_caption_prob
                         else pairs[i]["caption"] for i in idx]
            (und_ids, und_labels), (gen_ids, gen_labels) = task_batches(model, codes[idx], [pairs[i]["caption"] for i in idx], gen_texts)
            und_loss, und_acc = model.loss(und_ids, und_labels, "und")
            gen_loss, gen_acc = model.loss(gen_ids, gen_labels, "gen")
            optimizer.zero_grad(set_to_none=True)
            (und_loss + gen_loss).backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            now = time.perf_counter()
            und_value, gen_value = und_loss.item(), gen_loss.item()
            row = {"step": step + 1, "loss": und_value + gen_value, "und_loss": und_value, "gen_loss": gen_value,
                   "und_token_accuracy": und_acc, "gen_token_accuracy": gen_acc,
                   "lr": scheduler.get_last_lr()[0], "step_time_s": now - t_last}
            t_last = now
            rows.append(row)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                log.write(json.dumps(row) + "\n")
                log.flush()
            if on_progress:
                on_progress(step + 1, cfg.steps, loss=row["loss"])
    model.eval()
    model.save_pretrained(out / "model")
    k = max(1, len(rows) // 10)
    mean = lambda key, rs: sum(r[key] for r in rs) / len(rs)  # noqa: E731
    summary = {"name": cfg.name, "steps": cfg.steps, "parameters": sum(p.numel() for p in model.parameters()),
               **{f"first_{key}": mean(key, rows[:k]) for key in ("und_loss", "gen_loss")},
               **{f"last_{key}": mean(key, rows[-k:]) for key in ("und_loss", "gen_loss", "und_token_accuracy",
                                                                 "gen_token_accuracy")},
               "mean_step_time_s": mean("step_time_s", rows[1:] or rows), "config": to_dict(cfg)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
