"""The fields every training recipe shares, defined once (as TRL's configs build on TrainingArguments).

`RunConfig` is what any run has (data, device, precision, checkpoints, seed, trackers); `RLConfig` adds
what both Unified-GRPO stages have (init folder, batch of groups, optimizer, reward, held-out evals). A
recipe's config subclasses one of them and adds or re-defaults its own fields; validate() checks the
shared fields here, once.
"""
from __future__ import annotations

from dataclasses import dataclass

from uae_data.core.config import help_field, require_at_least_one

PRECISIONS = ("auto", "no", "bf16")


@dataclass
class RunConfig:
    corpus: str = help_field("out/corpus", help="training corpus folder (uae build-corpus output)")
    image_size: int = help_field(32, help="images are resized to this side (the decoder's size)")
    mixed_precision: str = help_field("auto", help="auto (bf16 on CUDA, fp32 on CPU) | no | bf16")
    device: str = help_field("auto", help="auto | cpu | cuda")
    shuffle_buffer: int = help_field(500, help="webdataset sample shuffle buffer")
    loader_workers: int | None = help_field(None, help="DataLoader worker processes that decode this rank's "
                                                       "images (0 = in the training process; null = 0 on CPU, "
                                                       "up to 4 per process on GPUs); batches are the same for any")
    checkpoint_every: int = help_field(10, help="resumable checkpoint every N steps (and at the end)")
    seed: int = help_field(0, help="seed of model init, data order, sampling and noise")
    log_with: list[str] = help_field([], help="experiment trackers beside metrics.jsonl, rank 0 only, under "
                                             "RUN/trackers: tensorboard, wandb (offline), mlflow (local)")
    tiny: bool = help_field(False, help="swap every model the recipe names for a tiny one of the same class and cap "
                                        "its sizes (uae_train/training/tiny.py): a real-size recipe's wiring, offline")

    def __post_init__(self) -> None:
        if self.tiny:  # before validate(): the tiny models' options are what gets checked
            from uae_train.training.tiny import shrink

            shrink(self)

    def validate(self) -> None:
        from uae_train.tracking import TRACKERS

        for name in self.log_with:
            if name not in TRACKERS:
                raise ValueError(f"log_with: unknown tracker {name!r} (known: {', '.join(TRACKERS)})")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"mixed_precision must be one of {', '.join(PRECISIONS)}; got {self.mixed_precision!r}")
        require_at_least_one(self, "image_size", "checkpoint_every")
        if self.loader_workers is not None and self.loader_workers < 0:
            raise ValueError("loader_workers must be >= 0 (or null for the default)")


@dataclass
class RLConfig(RunConfig):
    init: str = help_field("", help="run folder with encoder/ and decoder/ (pretrain or an earlier stage's "
                                    "output); --init overrides")
    steps: int = help_field(20, help="optimizer steps (one rollout batch each)")
    images_per_step: int = help_field(8, help="B: images per step")
    group_size: int = help_field(8, help="G: rollouts per image (TRL num_generations default 8; Flow-GRPO 24)")
    num_iterations: int = help_field(1, help="μ: updates per rollout batch (TRL default 1: ratio ≡ 1)")
    micro_batch: int = help_field(16, help="rollouts per forward/backward (memory knob; the loss does not change)")
    lr: float = help_field(1e-4, help="AdamW lr")
    weight_decay: float = help_field(0.0, help="AdamW weight decay")
    grad_clip: float = help_field(1.0, help="max gradient norm (0 = off)")
    reward: dict[str, float] = help_field({"scene-soft": 1.0}, help="reward term weights, e.g. {clip: 1.0} or "
                                                                    "{scene-soft: 1, pixel: 0.5}")
    reward_options: dict[str, dict] = help_field({}, help="per-term options, e.g. {clip: {model: ViT-L-14, "
                                                          "pretrained: PATH}}")
    shuffle_reward_images: bool = help_field(False, help="control: score each rollout against another image of "
                                                         "the batch (a reward that says nothing about its input)")
    max_new_tokens: int = help_field(160, help="caption token limit")
    max_text_tokens: int = help_field(256, help="caption tokens the decoder reads")
    eval_every: int = help_field(0, help="held-out eval every N steps (0 = at start and end only)")
    eval_images: int = help_field(48, help="held-out images per eval")
    eval_corpus: str = help_field("", help="held-out corpus folder; '' = fresh scene-world images")
    eval_seed: int = help_field(2024, help="seed of the held-out scenes and eval noise")

    def validate(self) -> None:
        super().validate()
        require_at_least_one(self, "steps", "images_per_step", "num_iterations", "micro_batch", "eval_images",
                             "max_new_tokens", "max_text_tokens")
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2: a group of one has no relative advantage")
        from uae_train.rl.rewards import check_reward

        check_reward(self.reward, self.reward_options)


def check_lora(where: str, lora: dict) -> None:
    """An encoder LoRA section ({} = full fine-tune) checked by the encoder's own LoRA builder (peft's
    LoraConfig from it), so a typo or a bad value fails validation in one line."""
    if lora:
        from uae_train.models.encoder_lora import lora_config

        try:
            lora_config(lora)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where}: {err}") from None
