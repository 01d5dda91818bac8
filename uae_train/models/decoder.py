"""The decoder: long caption → image, a flow-matching MMDiT conditioned on the encoder's own text states.

UAE's decoder (facts/unified_grpo.md §1) is SD3.5's MMDiT (`SD3Transformer2DModel`) + VAE, with SD3's
T5/CLIP text path replaced: the caption goes through the VLM, its last-layer hidden states through an MLP
connector become `encoder_hidden_states`, and `pooled_projections` is a fixed vector (UAE: the pooled CLIP
embedding of the empty prompt). `Decoder` is that model; it takes (hidden, mask) tensors from anything with
an `encode_text` method (`text_condition.TextConditioner`), never the encoder class itself.

Conventions (Flow-GRPO, facts §3; the maths in `flow_matching.py`): t = σ ∈ [0, 1], 1 = pure noise;
x_t = (1 − t)·x + t·ε; the model predicts v = ε − x at DiT timestep 1000·t; sampling (`flow_sampling.py`)
integrates x ← x + v·(σ_next − σ) from σ = 1 to 0.

Latent space: pixels in [-1, 1] when there is no VAE (the tiny default), else SD3's VAE latents
(z − shift_factor)·scaling_factor. Around the model: `dit_attention.py` (the masked joint attention),
`tiny_dit.py` (tiny configs and DiT init), `decoder_files.py` (the saved folder format),
`pipeline_decoder.py` (stock diffusers pipelines as baselines).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, Sequence

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from PIL import Image
from torch import nn

from uae_data.core.errors import ModelLoadError
from uae_train.models import decoder_files as files
from uae_train.models.connector import Connector
from uae_train.models.dit_attention import MaskedJointAttnProcessor
from uae_train.models.flow_matching import FlowMatchingLoss
from uae_train.models.flow_sampling import FlowSampling
from uae_train.models.image_tensors import pil_to_tensor
from uae_train.models.text_condition import TextCondition, TextConditioning, pad_cat
from uae_train.models.tiny_dit import build_tiny_dit

# Flow-GRPO's DiT LoRA targets: image-stream and text-stream attention projections of every joint block.
LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0",
                                 "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


@dataclass
class DecoderConfig:
    """Decoder settings beyond the diffusers model configs; saved as decoder_config.json."""

    text_hidden_size: int = field(metadata={"help": "width H of the text states fed to the connector "
                                                    "(the encoder's hidden_size)"})
    connector_mult: int = field(default=2, metadata={
        "help": "connector hidden width = mult · joint_attention_dim; 2 is the paper's 8192 for 4096"})
    text_input: str = field(default="states", metadata={
        "help": "what the connector reads: states (UAE: every last-layer state of the encoder re-reading the "
                "caption) or sentences (the decoder's own word embeddings of the encoder's tokens, one mean per "
                "sentence; sentence_reader.py says why the scene world needs it)"})
    vocab_size: int = field(default=0, metadata={"help": "text_input sentences: rows of the word table "
                                                        "(the encoder tokenizer's size)"})
    word_order: int = field(default=0, metadata={
        "help": "text_input sentences: places in a sentence that get their own learned scale (word i's embedding "
                "times 1 + order[i]), so a sentence mean binds words to their places ('a red cross and a blue "
                "ring'); 0 = a plain bag of words"})
    phrases: bool = field(default=False, metadata={
        "help": "text_input sentences: also cut sentences into object phrases (after 'and' and commas, before "
                "'left of' / 'right of' / 'above' / 'below'), one context token each, so 'a red cross and a blue "
                "ring' reaches the DiT as two tokens that each bind a colour to its shape"})
    timestep_sampling: str = field(default="logit_normal", metadata={
        "help": "training t distribution: logit_normal (SD3's default) or uniform"})
    logit_mean: float = field(default=0.0, metadata={"help": "mean of the logit-normal t distribution"})
    logit_std: float = field(default=1.0, metadata={"help": "std of the logit-normal t distribution"})
    prediction: str = field(default="v", metadata={
        "help": "what the DiT outputs: v (SD3: velocity ε − x) or x (the clean image; velocity = (x_t − x̂)/t). "
                "x-prediction (JiT, arXiv 2511.13720) suits a narrow DiT on large pixel patches: a token "
                "of 16·16·3 values cannot carry the noise through a 128-wide model, but a clean patch is "
                "low-dimensional"})
    min_t: float = field(default=0.05, metadata={"help": "x-prediction only: t is clamped to this in (x_t − x̂)/t"})
    uncond_prob: float = field(default=0.1, metadata={
        "help": "in train mode, the share of rows whose text is replaced by the null condition, so that "
                "guidance without a negative text has a trained unconditional branch"})
    learn_pooled: bool = field(default=False, metadata={
        "help": "train the pooled_projections vector (default: fixed, as UAE's empty-prompt CLIP vector)"})
    lora_rank: int = field(default=0, metadata={"help": "LoRA rank on the DiT attention; 0 = no LoRA"})
    lora_alpha: float = field(default=64.0, metadata={"help": "LoRA alpha (Flow-GRPO/UAE: r=32, alpha=64)"})
    lora_targets: tuple[str, ...] = field(default=LORA_TARGETS, metadata={
        "help": "module names inside the DiT that get LoRA"})
    base_model: str | None = field(default=None, metadata={
        "help": "where the DiT/VAE weights came from; a checkpoint saved without them loads them from here"})

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        if self.text_input not in ("states", "sentences"):
            raise ValueError(f"text_input {self.text_input!r}: expected states or sentences")
        if self.word_order < 0:
            raise ValueError(f"word_order {self.word_order}: expected >= 0")
        if self.text_input == "sentences" and self.vocab_size <= 0:
            raise ValueError("text_input sentences needs vocab_size > 0 (the encoder tokenizer's size)")
        if self.prediction not in ("v", "x"):
            raise ValueError(f"prediction {self.prediction!r}: expected v or x")
        if not 0 < self.min_t < 1:
            raise ValueError(f"min_t {self.min_t}: expected a value in (0, 1)")
        if self.timestep_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"timestep_sampling {self.timestep_sampling!r}: expected logit_normal or uniform")
        if not 0.0 <= self.uncond_prob < 1.0:
            raise ValueError(f"uncond_prob {self.uncond_prob}: expected a value in [0, 1)")
        if self.text_hidden_size <= 0 or self.connector_mult <= 0 or self.lora_rank < 0:
            raise ValueError("text_hidden_size and connector_mult must be > 0 and lora_rank >= 0")


class Decoder(TextConditioning, FlowMatchingLoss, FlowSampling, nn.Module):
    """SD3-style MMDiT (+ optional VAE) with the UAE connector; see the module docstring for conventions.

    Parameters: `transformer` (SD3Transformer2DModel), `connector` (text states → context), `pooled`
    (the fixed pooled_projections vector; zeros unless loaded from an SD3 folder with CLIP encoders,
    trainable only with `learn_pooled`), optional frozen `vae`. With `lora_rank` > 0 the DiT base weights
    are frozen and only its LoRA (and the connector) train.
    """

    def __init__(self, transformer: SD3Transformer2DModel, scheduler: FlowMatchEulerDiscreteScheduler,
                 config: DecoderConfig, vae: AutoencoderKL | None = None, pooled: torch.Tensor | None = None) -> None:
        super().__init__()
        self.config = config
        self.transformer = transformer
        self.scheduler = scheduler
        self.vae = vae
        if vae is not None:
            vae.requires_grad_(False).eval()
        dims = transformer.config
        self.connector = Connector(config.text_hidden_size, dims.joint_attention_dim, config.connector_mult,
                                   vocab_size=config.vocab_size if config.text_input == "sentences" else 0,
                                   word_order=config.word_order if config.text_input == "sentences" else 0)
        if pooled is None:
            pooled = torch.zeros(dims.pooled_projection_dim)
        if pooled.shape != (dims.pooled_projection_dim,):
            raise ValueError(f"pooled vector has shape {tuple(pooled.shape)}, "
                             f"the DiT expects ({dims.pooled_projection_dim},)")
        self.pooled = nn.Parameter(pooled.float().clone(), requires_grad=config.learn_pooled)
        transformer.set_attn_processor(MaskedJointAttnProcessor())
        if config.lora_rank:
            self._add_lora()

    # ------------------------------------------------------------------ construction
    @classmethod
    def tiny(cls, text_hidden_size: int, image_size: int = 32, seed: int = 0, latent: str = "pixel",
             patch_size: int = 2, num_layers: int = 4, position_spacing: float = 8.0, init: str = "dit",
             shift: float = 1.0, sample_shift: float | None = None, **config: object) -> "Decoder":
        """A ~2.5M-parameter decoder from configs (facts/tiny_models.md), deterministic for a seed.

        latent="pixel": the DiT works on RGB in [-1, 1]; latent="vae": a tiny 4-channel AutoencoderKL
        (factor 2, SD3's scaling/shift factors, random weights) exercises the latent path.
        patch_size 4 quarters the image tokens (a 32 px image: 64 instead of 256); 16 at 48 px gives one token
        per scene-grid cell. position_spacing: see `tiny_dit.spread_positions`. init "dit" (default) is DiT's
        from-scratch init (`tiny_dit.dit_init`), "torch" PyTorch's layer defaults.

        shift: SD3's timestep shift σ' = s·σ / (1 + (s − 1)·σ), for both the sampler (saved in scheduler/) and
        training (logit_mean = ln s unless given: shifting logit-normal samples by s adds ln s to their
        mean). Large patches need it as large images do (SD3 §5.3.2): a 16·16 patch averages its noise over
        256 pixels, so at σ = 0.9 a flat-coloured cell is still plain to see and the caption matters only
        above σ ≈ 0.95. Unshifted, the demo decoder almost never trained where the text decides anything
        (caption reliance 0.01 after 500 steps even with oracle per-cell tokens; 0.79 with s = 16).
        sample_shift: the sampler's own shift (default: `shift`). Training decides at high noise, but a
        sampler that takes its last step from σ' = 0.64 (10 steps at s = 16) leaves faint, uncommitted shapes;
        the scene recipe samples at 4 (docs/scene-world-learning.md has the sweep).
        """
        if shift <= 0 or (sample_shift is not None and sample_shift <= 0):
            raise ValueError(f"shift {shift} / sample_shift {sample_shift}: expected values > 0")
        if shift != 1.0:
            config.setdefault("logit_mean", math.log(shift))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # one stream: the DiT (and VAE) first, then the connector and LoRA
            transformer, vae = build_tiny_dit(image_size, latent, patch_size, num_layers, position_spacing, init)
            return cls(transformer, FlowMatchEulerDiscreteScheduler(shift=sample_shift or shift),
                       DecoderConfig(text_hidden_size=text_hidden_size, **config), vae=vae)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, text_hidden_size: int | None = None,
                        torch_dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                        seed: int = 0, **config: object) -> "Decoder":
        """Load a saved decoder, or start one from a diffusers SD3 folder / hub name.

        - A folder from `save_pretrained` (decoder_config.json): everything as saved; DiT/VAE weights from
          the folder, or from the recorded `base_model` if it was saved without them.
        - A diffusers folder or hub repo with transformer/ (+ vae/, scheduler/): a new decoder on those
          weights; `text_hidden_size` is required, the connector is freshly initialised (seeded), and the
          pooled vector is the empty prompt through text_encoder/ + text_encoder_2/ (CLIP) when present.
        `config` overrides DecoderConfig fields (e.g. lora_rank). Raises ModelLoadError for anything else.
        """
        root = files.resolve_folder(name_or_path)
        saved = root / files.CONFIG_FILE
        if saved.is_file():
            stored = files.read_config(saved, {f.name for f in fields(DecoderConfig)})
            saved_lora = bool(stored.get("lora_rank"))  # a LoRA asked for now on a folder without one starts fresh
            stored.update(config)
            if text_hidden_size is not None:
                stored["text_hidden_size"] = text_hidden_size
            cfg = DecoderConfig(**stored)
            base = root if (root / "transformer" / "config.json").is_file() else None
            if base is None:
                if not cfg.base_model:
                    raise ModelLoadError(f"{root} has no transformer/ and records no base_model to load it from")
                base = files.resolve_folder(cfg.base_model)
        else:
            if text_hidden_size is None:
                raise ModelLoadError(f"{name_or_path} is a diffusers model without our connector: "
                                     f"pass text_hidden_size (the encoder's hidden size)")
            cfg = DecoderConfig(text_hidden_size=text_hidden_size, base_model=str(name_or_path), **config)
            base = root
        transformer, vae, scheduler = files.load_diffusers_parts(base, torch_dtype)
        if (root / "scheduler" / "scheduler_config.json").is_file():
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(root / "scheduler")
        lora_rank = cfg.lora_rank
        cfg.lora_rank = 0  # the adapter goes on after the weights are in, with a seeded init
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pooled = None if saved.is_file() else files.empty_prompt_pooled(base, transformer.config.pooled_projection_dim)
            decoder = cls(transformer, scheduler, cfg, vae=vae, pooled=pooled)
            if lora_rank:
                cfg.lora_rank = lora_rank
                decoder._add_lora()
        if saved.is_file():
            files.load_own_weights(decoder, root, lora=saved_lora)
        if torch_dtype is not None or device is not None:
            decoder.to(device=device, dtype=torch_dtype)
        return decoder

    def save_pretrained(self, path: str | Path, include_base: bool = True) -> Path:
        """Write decoder_config.json, connector.safetensors, scheduler/, LoRA (if any) and, unless
        include_base=False (then `config.base_model` must name where to reload them), transformer/ + vae/.

        The transformer is saved without LoRA (base weights under their original names), so the folder
        stays a valid diffusers transformer; the adapter goes to transformer_lora.safetensors.
        """
        return files.save_decoder(self, path, include_base)

    # ------------------------------------------------------------------ LoRA
    def _add_lora(self) -> None:
        from peft import LoraConfig

        self.transformer.add_adapter(LoraConfig(r=self.config.lora_rank, lora_alpha=self.config.lora_alpha,
                                                init_lora_weights="gaussian",
                                                target_modules=list(self.config.lora_targets)))

    @property
    def has_lora(self) -> bool:
        return bool(getattr(self.transformer, "_hf_peft_config_loaded", False))

    @contextlib.contextmanager
    def adapter_disabled(self) -> Iterator[None]:
        """Run the DiT without its LoRA (Flow-GRPO's reference policy); a no-op without LoRA."""
        if not self.has_lora:
            yield
            return
        self.transformer.disable_adapters()
        try:
            yield
        finally:
            self.transformer.enable_adapters()

    # ------------------------------------------------------------------ module plumbing
    def train(self, mode: bool = True) -> "Decoder":
        super().train(mode)
        if self.vae is not None:
            self.vae.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def device(self) -> torch.device:
        return self.pooled.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def vae_scale_factor(self) -> int:
        return 1 if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """Default square output size in pixels (the DiT's sample_size times the VAE factor)."""
        return self.transformer.config.sample_size * self.vae_scale_factor

    @property
    def latent_channels(self) -> int:
        return self.transformer.config.in_channels

    # ------------------------------------------------------------------ latent space
    def to_pixels(self, images: torch.Tensor | Sequence[Image.Image]) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] or PIL images → (B, 3, H, W) float on the decoder's device."""
        x = images if isinstance(images, torch.Tensor) else pil_to_tensor(images)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [-1, 1]; got shape {tuple(x.shape)}")
        multiple = self.vae_scale_factor * self.transformer.config.patch_size
        if x.shape[-1] % multiple or x.shape[-2] % multiple:
            raise ValueError(f"image size {tuple(x.shape[-2:])} is not a multiple of {multiple}")
        return x.to(self.device, torch.float32)

    def encode_images(self, images: torch.Tensor | Sequence[Image.Image],
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Images → the DiT's data space: pixels as they are, or (z − shift)·scale of a VAE sample."""
        x = self.to_pixels(images)
        if self.vae is None:
            return x
        vc = self.vae.config
        with torch.no_grad():
            z = self.vae.encode(x.to(self.vae.dtype)).latent_dist.sample(generator=generator)
        return ((z.float() - (vc.shift_factor or 0.0)) * vc.scaling_factor)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """The DiT's data space → (B, 3, H, W) pixels in [-1, 1] (clamped)."""
        if self.vae is None:
            return latents.float().clamp(-1, 1)
        vc = self.vae.config
        z = latents / vc.scaling_factor + (vc.shift_factor or 0.0)
        return self.vae.decode(z.to(self.vae.dtype)).sample.float().clamp(-1, 1)

    # ------------------------------------------------------------------ model calls
    def _dit(self, x_t: torch.Tensor, t: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        dtype = self.dtype
        batch = x_t.shape[0]
        scale = self.scheduler.config.num_train_timesteps
        timestep = (t.to(self.device, torch.float32).reshape(-1) * scale).expand(batch)
        pooled = self.pooled.to(dtype).expand(batch, -1)
        out = self.transformer(hidden_states=x_t.to(dtype), encoder_hidden_states=states.to(dtype),
                               pooled_projections=pooled, timestep=timestep.to(dtype),
                               joint_attention_kwargs={"attention_mask": None if bool(mask.all()) else mask},
                               return_dict=False)[0]
        if self.config.prediction == "x":  # x̂ → v̂ = (x_t − x̂)/t, so loss, ODE and SDE all stay in v
            t_img = t.to(self.device, torch.float32).reshape(-1, *([1] * (x_t.dim() - 1))).clamp_min(self.config.min_t)
            return (x_t.float() - out.float()) / t_img
        return out

    def velocity_from_context(self, x_t: torch.Tensor, t: torch.Tensor | float, context: TextCondition,
                              guidance: float = 1.0, negative_context: TextCondition | None = None) -> torch.Tensor:
        """v(x_t, t) for a prepared context; with guidance > 1, v_neg + g·(v − v_neg) in one batched call."""
        t = torch.as_tensor(t, dtype=torch.float32, device=self.device).reshape(-1).expand(x_t.shape[0])
        if guidance == 1.0:
            return self._dit(x_t, t, *context).float()
        negative_context = negative_context if negative_context is not None else self.null_context(x_t.shape[0])
        states, mask = pad_cat(negative_context, context)
        v_neg, v_pos = self._dit(torch.cat([x_t, x_t]), torch.cat([t, t]), states, mask).float().chunk(2)
        return v_neg + guidance * (v_pos - v_neg)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor | float, text_hidden: torch.Tensor, text_mask: torch.Tensor,
                 guidance: float = 1.0, negative: TextCondition | None = None) -> torch.Tensor:
        """Model velocity (B, C, h, w) float32 at x_t (B, C, h, w) and time t = σ (float or (B,)) in [0, 1].

        negative: (hidden, mask) of the negative text (batch 1 or B), None = the null condition; used only
        when guidance > 1. Gradients flow unless called under no_grad.
        """
        context = self.context(text_hidden, text_mask)
        negative_context = self._negative_context(negative, x_t.shape[0]) if guidance != 1.0 else None
        return self.velocity_from_context(x_t, t, context, guidance, negative_context)
