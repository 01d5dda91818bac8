"""`uae train pretrain`: encoder caption SFT and decoder flow-matching pretraining on corpus shards.

One recipe, two phases run in order (`model: both`): the encoder learns to write the long captions
(teacher-forced cross-entropy), then the decoder learns to paint from them with the encoder frozen
(as UAE pretrains its decoder with the LVLM frozen: facts/unified_grpo.md §1). Every random draw of
step s comes from generators seeded by (seed, s), and the data stream is a seeded webdataset
pipeline that a resumed run fast-forwards, so `--resume` continues bit for bit on CPU.
"""
from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from uae_data.core.config import check_options, config_kind, help_field, require_at_least_one, to_dict
from uae_data.core.device import resolve_device
from uae_data.core.errors import ConfigError, CorpusError
from uae_data.core.io import atomic_write_text, truncate_jsonl
from uae_data.shards import list_shards
from uae_train.training.checkpoint import _trainable, load_checkpoint, save_checkpoint
from uae_train.training.config import RunConfig, check_lora
from uae_train.training.data import scene_of
from uae_train.training.loader import global_batches, resolve_workers
from uae_train.training.precision import make_accelerator
from uae_train.training.run_folder import prepare_run
from uae_train.training.schedules import SCHEDULES, warmup_schedule
from uae_train.training.shared_step import SharedStep

PHASES = ("encoder", "decoder")
BLIND_GREY = (128, 128, 128)  # the blind control's constant image


@config_kind("pretrain")
@dataclass
class PretrainConfig(RunConfig):
    model: str = help_field("both", help="what to train: encoder | decoder | both (encoder first, then decoder)")
    encoder: str = help_field("tiny", help="'tiny' (from config) or a model name/path (AutoModelForImageTextToText)")
    decoder: str = help_field("tiny", help="'tiny' (from config) or a saved decoder / diffusers SD3 folder")
    encoder_options: dict = help_field({}, help="extra options for the encoder (Encoder.tiny's or from_pretrained's "
                                                "keywords, e.g. cell_embedding: true, lora: {r: 32, alpha: 64})")
    decoder_options: dict = help_field({}, help="extra options for the decoder (Decoder.tiny's or from_pretrained's "
                                                "keywords and DecoderConfig fields, e.g. lora_rank: 32)")
    image_size: int = help_field(64, help="training image side; corpus images are resized to it")
    encoder_steps: int = help_field(200, help="optimizer steps of encoder SFT")
    decoder_steps: int = help_field(300, help="optimizer steps of decoder pretraining")
    batch_size: int = help_field(16, help="samples per micro-batch")
    decoder_batch_size: int | None = help_field(None, help="decoder phase's micro-batch (None = batch_size)")
    grad_accum: int = help_field(1, help="micro-batches per optimizer step")
    encoder_lr: float = help_field(1e-3, help="AdamW learning rate of the encoder")
    decoder_lr: float = help_field(1e-3, help="AdamW learning rate of the decoder")
    weight_decay: float = help_field(0.0, help="AdamW weight decay")
    lr_schedule: str = help_field("cosine", help="cosine | constant (both after linear warmup)")
    warmup_steps: int = help_field(20, help="linear warmup steps")
    grad_clip: float = help_field(1.0, help="max gradient norm (0 = off)")
    fsdp: bool = help_field(False, help="decoder phase: shard the DiT's weights, gradients and AdamW state over "
                            "the processes (FSDP2 fully_shard per block); needs torchrun / accelerate launch")
    ema_decay: float = help_field(0.0, help="decoder EMA decay (diffusers EMAModel; 0 = off). The saved decoder "
                                            "gets the EMA weights; checkpoints keep both")
    blind_encoder: bool = help_field(False, help="control: the encoder learns its captions from a constant grey "
                                                 "image (what the caption prior alone can score)")
    attribute_word_weight: float = help_field(1.0, help="encoder: caption loss weight of the weighted words "
                                                        "(1 = plain SFT); the scene recipe uses 5")
    weighted_words: list[str] = help_field([], help="encoder: words whose tokens get attribute_word_weight "
                                                    "([] = the scene world's shape and size words, plurals included)")
    image_word_weight: float = help_field(0.0, help="encoder, scene corpora: weight of the loss that makes the LM "
                                                    "predict each grid cell's words (size, colour, shape, or 'empty') "
                                                    "at that cell's image token (0 = off)")
    short_caption_prob: float = help_field(0.3, help="decoder: share of the samples that have a short caption (meta short_caption) conditioned on it")
    max_text_tokens: int = help_field(256, help="decoder: caption tokens kept for conditioning (longer ones are cut and counted)")
    checkpoint_every: int = help_field(100, help="save a resumable checkpoint every N steps (and at the end)")
    log_every: int = help_field(10, help="write metrics.jsonl every N steps")
    reliance_samples: int = help_field(64, help="decoder: corpus samples for the caption-reliance check at the end "
                                                "(flow loss with true vs shuffled captions; 0 = skip)")

    def validate(self) -> None:
        super().validate()
        if self.model not in ("encoder", "decoder", "both"):
            raise ValueError(f"model must be encoder, decoder or both; got {self.model!r}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be cosine or constant; got {self.lr_schedule!r}")
        require_at_least_one(self, "batch_size", "grad_accum", "log_every")
        if self.decoder_batch_size is not None and self.decoder_batch_size < 1:
            raise ValueError("decoder_batch_size must be >= 1 (or null for batch_size)")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("ema_decay must be in [0, 1)")
        if self.fsdp and (self.ema_decay > 0 or self.decoder_options.get("lora_rank")):
            raise ValueError("fsdp: not with ema_decay > 0 or a decoder LoRA yet (the sharded DiT is trained in full)")
        if self.image_word_weight < 0:
            raise ValueError("image_word_weight must be >= 0")
        if self.attribute_word_weight <= 0:
            raise ValueError("attribute_word_weight must be > 0")
        if not 0 <= self.short_caption_prob <= 1:
            raise ValueError("short_caption_prob must be in [0, 1]")
        self.check_model_options()

    def check_model_options(self) -> None:
        """encoder_options / decoder_options against the constructors they are passed to (a typo fails here)."""
        from uae_train.models.decoder import Decoder, DecoderConfig
        from uae_train.models.encoder import Encoder

        given = ("image_size", "seed", "device", "name_or_path", "text_hidden_size", "vocab_size")
        check_options("encoder_options", self.encoder_options,
                      Encoder.tiny if self.encoder == "tiny" else Encoder.from_pretrained, exclude=given)
        check_lora("encoder_options.lora", self.encoder_options.get("lora") or {})
        check_options("decoder_options", self.decoder_options,
                      Decoder.tiny if self.decoder == "tiny" else Decoder.from_pretrained, DecoderConfig,
                      exclude=given[:-1])

    def phases(self) -> list[str]:
        return list(PHASES) if self.model == "both" else [self.model]


def load_models(cfg: PretrainConfig, out: Path, device: torch.device):
    """Encoder and decoder: from the run folder when a phase finished, else from the config."""
    from uae_train.models.factory import load_decoder, load_encoder

    if (out / "encoder" / "config.json").exists():  # the encoder phase finished: the decoder reads that one
        encoder = load_encoder(out / "encoder", device)
    elif cfg.encoder == "tiny":
        encoder = load_encoder("tiny", device, image_size=cfg.image_size, seed=cfg.seed, **cfg.encoder_options)
    else:
        encoder = load_encoder(cfg.encoder, device, **cfg.encoder_options)
    options = dict(cfg.decoder_options)
    if options.get("text_input") == "sentences":  # the decoder's word table spans the encoder's vocabulary
        options.setdefault("vocab_size", len(encoder.tokenizer))
    if cfg.decoder == "tiny":
        options.update(image_size=cfg.image_size, seed=cfg.seed)
    decoder = load_decoder(cfg.decoder, encoder.hidden_size, device, **options)
    return encoder, decoder


def attribute_weights(cfg: PretrainConfig, encoder) -> dict[int, float] | None:
    """{token id: attribute_word_weight} for the weighted words, or None for plain SFT."""
    if cfg.attribute_word_weight == 1.0:
        return None
    from uae_data.scenes import SHAPES, SIZES, _plural

    words = cfg.weighted_words or [*SHAPES, *(_plural(s, 2) for s in SHAPES), *SIZES]
    return {i: float(cfg.attribute_word_weight) for i in sorted(encoder.word_token_ids(words))}


def word_ids(encoder) -> dict[str, int]:
    """Scene words -> their single token id (the image-word loss needs one token per word)."""
    from uae_data.scenes import COLORS, SHAPES, SIZES

    out = {}
    for w in (*COLORS, *SHAPES, *SIZES, "empty"):
        ids = encoder.tokenizer(w, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ConfigError(f"image_word_weight: the encoder's tokenizer splits {w!r} into {len(ids)} tokens; "
                              "this loss is for scene-world tokenizers (one token per scene word)")
        out[w] = ids[0]
    return out


def cell_targets(batch: list[dict], ids: dict[str, int]) -> list[list[list[int]]]:
    """Per sample, per grid cell (row-major, the image tokens' order): its words' token ids."""
    from uae_data.scenes import GRID

    out = []
    for s in batch:
        scene = scene_of(s)
        if scene is None:
            raise CorpusError(f"sample {s.get('__key__')}: no scene in its metadata; image_word_weight needs a "
                              "scene corpus (uae build-corpus manifests/corpus/scenes.yaml)")
        cell = {o.row * GRID + o.col: o for o in scene.objects}
        out.append([[ids[o.size], ids[o.color], ids[o.shape]] if (o := cell.get(k)) else [ids["empty"]]
                    for k in range(GRID * GRID)])
    return out


def run_phase(phase: str, cfg: PretrainConfig, out: Path, encoder, decoder, device: torch.device,
              resume: bool, on_progress: Callable[..., None] | None = None, trackers=None) -> list[dict]:
    """Train one phase to its step count; returns the metrics rows written to metrics.jsonl.

    Under torchrun / accelerate launch (uae_data.distributed) `batch_size` is the global batch: every rank
    reads the same stream's metadata and draws the same randomness, decodes and computes its slice, and the
    gradients are summed, so the loss curve equals a 1-process run's; rank 0 alone writes metrics,
    checkpoints and models.
    """
    from uae_data import distributed

    dist = distributed.current()
    module = encoder if phase == "encoder" else decoder
    total = cfg.encoder_steps if phase == "encoder" else cfg.decoder_steps
    lr = cfg.encoder_lr if phase == "encoder" else cfg.decoder_lr
    encoder.eval()
    decoder.eval()
    module.train()
    if phase == "decoder":
        for p in encoder.parameters():
            p.requires_grad_(False)
    sharded = phase == "decoder" and cfg.fsdp and dist.active
    if cfg.fsdp and not dist.active and dist.main:
        import logging

        logging.getLogger(__name__).warning("fsdp: one process, nothing to shard (launch with torchrun)")
    shard_fraction = None
    if sharded:
        from uae_train import fsdp

        fsdp.shard_dit(decoder.transformer)
        local = sum(p.to_local().numel() for p in decoder.transformer.parameters())
        shard_fraction = local / sum(p.numel() for p in decoder.transformer.parameters())
    params = list(_trainable(module).values())
    dist.broadcast_params([p for p in params if not sharded or not fsdp.is_sharded(p)])
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    scheduler = warmup_schedule(optimizer, cfg.lr_schedule, cfg.warmup_steps, total)
    ckpt = out / "checkpoints" / phase
    accelerator = make_accelerator(cfg, device)
    ema = None
    if phase == "decoder" and cfg.ema_decay > 0:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(params, decay=cfg.ema_decay)
    step, samples_seen, truncated = 0, 0, 0
    if resume and ckpt.exists():
        state = load_checkpoint(ckpt, module, optimizer, scheduler, ema, sharded=sharded)
        step, samples_seen, truncated = state["step"], state["samples_seen"], state.get("truncated", 0)
    if resume and dist.main:
        truncate_jsonl(out / "metrics.jsonl", step, phase=phase)
    # several CPU processes on one machine: gradients through shared memory, each rank steps its share
    shared = None if sharded or accelerator.scaler is not None else SharedStep.create(dist, params)
    dist.barrier()
    batch_size = cfg.decoder_batch_size if phase == "decoder" and cfg.decoder_batch_size else cfg.batch_size
    lo, hi = dist.bounds(batch_size, f"{phase} batch_size")
    batches = global_batches(Path(cfg.corpus), cfg.shuffle_buffer, cfg.seed, samples_seen, None, batch_size,
                             cfg.image_size, range(lo, hi), resolve_workers(cfg.loader_workers, device))
    reader = decoder.reader(encoder)  # the frozen encoder, or the decoder's own words
    weights = attribute_weights(cfg, encoder) if phase == "encoder" else None
    cell_words = word_ids(encoder) if phase == "encoder" and cfg.image_word_weight > 0 else None
    rows: list[dict] = []
    t_last = time.perf_counter()
    with (out / "metrics.jsonl").open("a") if dist.main else contextlib.nullcontext() as log, batches as stream:
        while step < total:
            optimizer.zero_grad(set_to_none=True)
            loss_sum, acc_sum = 0.0, 0.0
            for micro in range(cfg.grad_accum):
                batch, decoded = next(stream)  # the global batch; this rank trains [lo, hi), decoded its images
                samples_seen += len(batch)
                mine, images = batch[lo:hi], decoded[lo:hi]
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * cfg.grad_accum + micro)
                with accelerator.autocast():
                    if phase == "encoder":
                        if cfg.blind_encoder:
                            images = [Image.new("RGB", im.size, BLIND_GREY) for im in images]
                        targets = cell_targets(batch, cell_words) if cell_words else None
                        lengths = [len(c) for c in encoder._completion_ids([s["caption"] for s in batch], add_end=True)]
                        tokens, mine_tokens = sum(lengths), sum(lengths[lo:hi])  # tokenised once per step
                        loss, acc = encoder.sft_loss(
                            images, [s["caption"] for s in mine], token_weights=weights,
                            image_targets=targets[lo:hi] if targets else None, image_weight=cfg.image_word_weight,
                            token_count=tokens if dist.active else None,
                            image_token_count=sum(map(len, targets)) if targets and dist.active else None)
                        acc_sum += float(acc) * mine_tokens / tokens
                    else:
                        rng = random.Random(int(torch.randint(2**31, (1,), generator=g)))
                        texts = [s["meta"].get("short_caption") if s["meta"].get("short_caption")
                                 and rng.random() < cfg.short_caption_prob else s["caption"] for s in batch]
                        t, noise, drop = decoder.loss_randomness(len(batch), g)
                        with torch.set_grad_enabled(reader is not encoder):
                            hidden, mask = reader.encode_text(texts[lo:hi], max_length=cfg.max_text_tokens)
                        truncated += int(sum(len(t.split()) > cfg.max_text_tokens for t in texts))
                        loss = decoder.loss(images, hidden.float(), mask, generator=g, t=t[lo:hi], noise=noise[lo:hi],
                                            drop=drop[lo:hi] if drop is not None else None)
                        loss = loss * len(mine) / len(batch)  # this rank's share of the global mean
                # FSDP averages the sharded gradients over ranks: a world-times loss makes that the sum
                accelerator.backward(loss * (dist.world if sharded else 1) / cfg.grad_accum)
                loss_sum += float(loss.detach()) / cfg.grad_accum
            if shared is not None:
                loss_sum, acc_sum = shared.reduce(loss_sum, acc_sum, norms=cfg.grad_clip > 0)
                if cfg.grad_clip > 0:
                    shared.clip(cfg.grad_clip)
            else:
                dist.sync_grads([p for p in params if not sharded or not fsdp.is_sharded(p)], average=sharded)
                loss_sum, acc_sum = dist.sum(loss_sum, acc_sum)
            if cfg.grad_clip > 0 and sharded:
                fsdp.clip_grad_norm(params, cfg.grad_clip)
            elif cfg.grad_clip > 0 and shared is None:
                accelerator.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            if shared is not None:
                shared.share()
            scheduler.step()
            if ema is not None:
                ema.step(params)
            step += 1
            now = time.perf_counter()
            row = {"phase": phase, "step": step, "loss": loss_sum, "lr": scheduler.get_last_lr()[0],
                   "step_time_s": now - t_last, "samples_seen": samples_seen}
            t_last = now
            if phase == "encoder":
                row["token_accuracy"] = acc_sum / cfg.grad_accum
            else:
                row["captions_over_token_limit"] = truncated
            if shard_fraction is not None:
                row["dit_shard_fraction"] = shard_fraction  # rank 0's share of the DiT's weights (and AdamW state)
            rows.append(row)
            if dist.main and (step % cfg.log_every == 0 or step == total):
                log.write(json.dumps(row) + "\n")
                log.flush()
                if trackers is not None:
                    trackers.log(row, step, prefix=f"{phase}/")
            if step % cfg.checkpoint_every == 0 or step == total:
                full = ({"weights": {n: fsdp.full_tensor(p) for n, p in _trainable(module).items()},
                         "optimizer": fsdp.full_optimizer_state(optimizer)} if sharded else None)  # all ranks gather
                if shared is not None:
                    shared.gather_state(optimizer)  # rank 0 gets the AdamW state of the others' parameters
                if dist.main:
                    save_checkpoint(ckpt, module, optimizer, scheduler,
                                    {"step": step, "samples_seen": samples_seen, "truncated": truncated}, ema, full)
                dist.barrier()
            if on_progress and dist.main:
                on_progress(step, total, loss=loss_sum, **({"acc": row["token_accuracy"]} if phase == "encoder" else {}))
    if shared is not None:
        shared.release()  # the parameters leave shared memory: nothing is stepped there any more
    module.eval()
    if ema is not None:
        ema.copy_to(params)  # the saved decoder is the EMA; the last checkpoint still holds the raw weights
    if sharded:
        fsdp.unshard_dit(decoder, decoder.transformer)
    if dist.main:
        module.save_pretrained(out / phase)
    dist.barrier()
    return rows


def pretrain(cfg: PretrainConfig, out: Path, resume: bool = False,
             progress: Callable[[str], object] | None = None) -> dict:
    """Run the configured phases into `out`; returns {phase: {first_loss, last_loss, ...}}.

    progress(description) must return a context manager yielding update(done, total, **fields)
    (uae_data.core.progress.progress_bar); None draws nothing.
    """
    out = Path(out)
    list_shards(Path(cfg.corpus))  # fail early, one line, if the corpus has no shards
    from uae_data import distributed
    from uae_train.tracking import Trackers, check_trackers

    check_trackers(cfg.log_with)
    dist = distributed.setup(cfg.device)
    resume = prepare_run(out, cfg, "pretrain", resume, main=dist.main)
    device = dist.device if dist.active else resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    encoder, decoder = load_models(cfg, out, device)
    saved = out / "summary.json"  # phases finished before a resume keep their summary
    summary = json.loads(saved.read_text()) if resume and saved.is_file() else {}
    trackers = Trackers(cfg.log_with, out, "pretrain", to_dict(cfg), main=dist.main)
    for phase in cfg.phases():
        done_marker = out / phase / ".done"
        if resume and done_marker.exists():
            continue
        ctx = progress(f"pretrain {phase}") if progress and dist.main else contextlib.nullcontext()
        with ctx as update:
            rows = run_phase(phase, cfg, out, encoder, decoder, device, resume, update, trackers)
        if not dist.main:
            continue
        atomic_write_text(done_marker, "ok\n")
        if rows:
            k = max(1, len(rows) // 10)
            first = sum(r["loss"] for r in rows[:k]) / k
            last = sum(r["loss"] for r in rows[-k:]) / k
            summary[phase] = {"first_loss": first, "last_loss": last, "steps": rows[-1]["step"],
                              "mean_step_time_s": sum(r["step_time_s"] for r in rows[1:]) / max(1, len(rows) - 1)}
            if phase == "decoder" and cfg.reliance_samples >= 2:
                from uae_train.evaluation.caption_reliance import corpus_caption_reliance

                with distributed.alone():  # rank 0 by itself while the others wait at the final barrier
                    summary[phase]["caption_reliance"] = corpus_caption_reliance(
                        decoder, encoder, cfg.corpus, cfg.reliance_samples, cfg.image_size, cfg.seed,
                        cfg.max_text_tokens)
            if phase == "encoder":
                summary[phase]["first_token_accuracy"] = sum(r["token_accuracy"] for r in rows[:k]) / k
                summary[phase]["last_token_accuracy"] = sum(r["token_accuracy"] for r in rows[-k:]) / k
    trackers.close()
    if dist.main and not (out / "encoder" / "config.json").is_file():
        encoder.save_pretrained(out / "encoder")  # model: decoder read a frozen encoder; the stages start from the pair
    if dist.main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    dist.barrier()
    return summary
