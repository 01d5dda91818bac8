"""The decoder: long caption → image, a flow-matching MMDiT conditioned on the encoder's own text states.

UAE's decoder (facts/unified_grpo.md §1) is SD3.5's MMDiT (`SD3Transformer2DModel`) + VAE, with SD3's
T5/CLIP text path replaced: the caption goes through the VLM, its last-layer hidden states through an MLP
connector become `encoder_hidden_states`, and `pooled_projections` is a fixed vector (UAE: the pooled CLIP
embedding of the empty prompt). `Decoder` is that model; it takes (hidden, mask) tensors from anything with
an `encode_text` method (`TextConditioner`), never the encoder class itself.

Conventions (Flow-GRPO, facts §3): t = σ ∈ [0, 1], 1 = pure noise; x_t = (1 − t)·x + t·ε; the model predicts
v = ε − x at DiT timestep 1000·t; sampling integrates x ← x + v·(σ_next − σ) from σ = 1 to 0.

Latent space: pixels in [-1, 1] when there is no VAE (the tiny default), else SD3's VAE latents
(z − shift_factor)·scaling_factor. `PipelineDecoder` wraps any stock diffusers text-to-image pipeline for
baselines that reconstruct from caption text with their own text encoders.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from diffusers.models.attention_processor import Attention, JointAttnProcessor2_0
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from uae_train.models.connector import Connector

CONFIG_FILE = "decoder_config.json"
CONNECTOR_FILE = "connector.safetensors"
LORA_FILE = "transformer_lora.safetensors"
FORMAT = "uae-decoder"
FORMAT_VERSION = 1
# Flow-GRPO's DiT LoRA targets: image-stream and text-stream attention projections of every joint block.
LORA_TARGETS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0",
                                 "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
# What a hub snapshot of a decoder needs (never the 9 GB T5 of an SD3 repo).
_HUB_PATTERNS = [CONFIG_FILE, CONNECTOR_FILE, LORA_FILE, "model_index.json", "transformer/*", "vae/*",
                 "scheduler/*", "text_encoder/*", "text_encoder_2/*", "tokenizer/*", "tokenizer_2/*"]

TextCondition = tuple[torch.Tensor, torch.Tensor]  # hidden (B, T, H) float, mask (B, T) bool


from uae_data.core.errors import ModelLoadError  # noqa: E402  (re-exported)


class TextConditioner(Protocol):
    """Anything that turns texts into last-layer states: the encoder, or a stand-in in tests."""

    def encode_text(self, texts: list[str]) -> TextCondition: ...


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


class MaskedJointAttnProcessor(JointAttnProcessor2_0):
    """SD3 joint attention that hides padded text tokens from every query.

    diffusers' JointAttnProcessor2_0 ignores `attention_mask`, so padded caption positions would be
    attended (and a caption's image would depend on how long its batch-mates are). This is the same
    computation with a key mask: `attention_mask` is the text mask (B, T) bool, True = real token. Image
    tokens are always attended, so a row with no real text token still has a valid softmax. Attention
    without a text stream (SD3.5's dual-attention `attn2`) ignores the mask.
    """

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *args, **kwargs) -> torch.Tensor:
        residual = hidden_states
        batch = hidden_states.shape[0]

        def heads(x: torch.Tensor) -> torch.Tensor:  # (B, N, heads·d) → (B, heads, N, d)
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        query, key, value = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        mask = None
        if encoder_hidden_states is not None:
            c_query = heads(attn.add_q_proj(encoder_hidden_states))
            c_key = heads(attn.add_k_proj(encoder_hidden_states))
            c_value = heads(attn.add_v_proj(encoder_hidden_states))
            if attn.norm_added_q is not None:
                c_query = attn.norm_added_q(c_query)
            if attn.norm_added_k is not None:
                c_key = attn.norm_added_k(c_key)
            query = torch.cat([query, c_query], dim=2)
            key = torch.cat([key, c_key], dim=2)
            value = torch.cat([value, c_value], dim=2)
            if attention_mask is not None:
                image_keys = torch.ones(batch, residual.shape[1], dtype=torch.bool, device=key.device)
                mask = torch.cat([image_keys, attention_mask.to(key.device, torch.bool)], dim=1)[:, None, None, :]

        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * query.shape[-1]).to(query.dtype)
        if encoder_hidden_states is not None:
            out, context_out = out[:, : residual.shape[1]], out[:, residual.shape[1]:]
            if not attn.context_pre_only:
                context_out = attn.to_add_out(context_out)
        out = attn.to_out[1](attn.to_out[0](out))
        return (out, context_out) if encoder_hidden_states is not None else out


def pil_to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL images (all one size) → (B, 3, H, W) float32 in [-1, 1]."""
    arrays = [np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]
    if len({a.shape for a in arrays}) > 1:
        raise ValueError(f"images differ in size: {sorted({a.shape[:2] for a in arrays})}; resize them first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0


def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [-1, 1] → RGB PIL images (values clamped, rounded to uint8)."""
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a) for a in pixels.permute(0, 2, 3, 1).cpu().numpy()]


def sample_timesteps(n: int, sampling: str = "logit_normal", mean: float = 0.0, std: float = 1.0,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """n training times t ∈ (0, 1) (on CPU): sigmoid(N(mean, std)) — SD3's logit-normal — or uniform."""
    if sampling == "logit_normal":
        return torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    if sampling == "uniform":
        return torch.rand(n, generator=generator)
    raise ValueError(f"timestep sampling {sampling!r}: expected logit_normal or uniform")


def flow_matching_pair(x: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rectified flow: x (B, ...) data, noise like x, t (B,) → (x_t = (1−t)·x + t·noise, target v = noise − x)."""
    t = t.to(x.device, x.dtype).view(-1, *([1] * (x.dim() - 1)))
    return (1 - t) * x + t * noise, noise - x


def _pad_cat(a: TextCondition, b: TextCondition) -> TextCondition:
    """Stack two (states (B, T, D), mask (B, T)) batches, padding the shorter one with masked zeros."""
    length = max(a[0].shape[1], b[0].shape[1])

    def pad(states: torch.Tensor, mask: torch.Tensor) -> TextCondition:
        extra = length - states.shape[1]
        return F.pad(states, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)

    (sa, ma), (sb, mb) = pad(*a), pad(*b)
    return torch.cat([sa, sb]), torch.cat([ma, mb])


class Decoder(nn.Module):
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
        per scene-grid cell. position_spacing: see `_spread_positions`. init "dit" (default) is DiT's
        from-scratch init (`dit_init`), "torch" PyTorch's layer defaults.

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
        if latent not in ("pixel", "vae"):
            raise ValueError(f"latent {latent!r}: expected pixel or vae")
        if init not in ("dit", "torch"):
            raise ValueError(f"init {init!r}: expected dit or torch")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            vae = None
            channels, factor = 3, 1
            if latent == "vae":
                vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                                    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                                    layers_per_block=1, norm_num_groups=4, sample_size=image_size,
                                    scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False,
                                    use_post_quant_conv=False)
                channels, factor = 4, 2
            size = image_size // factor
            grid = size // patch_size
            transformer = SD3Transformer2DModel(
                sample_size=size, patch_size=patch_size, in_channels=channels, out_channels=channels, num_layers=num_layers,
                attention_head_dim=32, num_attention_heads=4, joint_attention_dim=64, caption_projection_dim=128,
                pooled_projection_dim=64, pos_embed_max_size=grid)
            _spread_positions(transformer, grid, position_spacing)
            if init == "dit":
                dit_init(transformer)
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
        root = _resolve(name_or_path)
        saved = root / CONFIG_FILE
        if saved.is_file():
            stored = _read_config(saved)
            stored.update(config)
            if text_hidden_size is not None:
                stored["text_hidden_size"] = text_hidden_size
            cfg = DecoderConfig(**stored)
            base = root if (root / "transformer" / "config.json").is_file() else None
            if base is None:
                if not cfg.base_model:
                    raise ModelLoadError(f"{root} has no transformer/ and records no base_model to load it from")
                base = _resolve(cfg.base_model)
        else:
            if text_hidden_size is None:
                raise ModelLoadError(f"{name_or_path} is a diffusers model without our connector: "
                                     f"pass text_hidden_size (the encoder's hidden size)")
            cfg = DecoderConfig(text_hidden_size=text_hidden_size, base_model=str(name_or_path), **config)
            base = root
        transformer, vae, scheduler = _load_diffusers_parts(base, torch_dtype)
        if (root / "scheduler" / "scheduler_config.json").is_file():
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(root / "scheduler")
        lora_rank = cfg.lora_rank
        cfg.lora_rank = 0  # the adapter goes on after the weights are in, with a seeded init
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            pooled = None if saved.is_file() else _empty_prompt_pooled(base, transformer.config.pooled_projection_dim)
            decoder = cls(transformer, scheduler, cfg, vae=vae, pooled=pooled)
            if lora_rank:
                cfg.lora_rank = lora_rank
                decoder._add_lora()
        if saved.is_file():
            decoder._load_own_weights(root)
        if torch_dtype is not None or device is not None:
            decoder.to(device=device, dtype=torch_dtype)
        return decoder

    def save_pretrained(self, path: str | Path, include_base: bool = True) -> Path:
        """Write decoder_config.json, connector.safetensors, scheduler/, LoRA (if any) and, unless
        include_base=False (then `config.base_model` must name where to reload them), transformer/ + vae/.

        The transformer is saved without LoRA (base weights under their original names), so the folder
        stays a valid diffusers transformer; the adapter goes to transformer_lora.safetensors.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if not include_base and not self.config.base_model:
            raise ValueError("include_base=False needs config.base_model: the DiT weights would be lost")
        record = {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self.config)}
        record["lora_targets"] = list(self.config.lora_targets)
        (path / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
        own = {f"connector.{k}": v for k, v in self.connector.state_dict().items()}
        own["pooled"] = self.pooled.detach()
        save_file({k: v.detach().contiguous().cpu() for k, v in own.items()}, str(path / CONNECTOR_FILE))
        self.scheduler.save_pretrained(path / "scheduler")
        if self.has_lora:
            from peft.utils import get_peft_model_state_dict

            lora = get_peft_model_state_dict(self.transformer)
            save_file({k: v.detach().contiguous().cpu() for k, v in lora.items()}, str(path / LORA_FILE))
        if include_base:
            if self.has_lora:
                self.transformer.save_config(path / "transformer")
                save_file(_base_state_dict(self.transformer), str(path / "transformer" / "diffusion_pytorch_model.safetensors"))
            else:
                self.transformer.save_pretrained(path / "transformer")
            if self.vae is not None:
                self.vae.save_pretrained(path / "vae")
        return path

    def _load_own_weights(self, root: Path) -> None:
        own = load_file(str(root / CONNECTOR_FILE))
        self.connector.load_state_dict({k.removeprefix("connector."): v for k, v in own.items() if k != "pooled"})
        with torch.no_grad():
            self.pooled.copy_(own["pooled"])
        if self.has_lora:
            if not (root / LORA_FILE).is_file():
                raise ModelLoadError(f"{root} records lora_rank={self.config.lora_rank} but has no {LORA_FILE}")
            from peft.utils import set_peft_model_state_dict

            result = set_peft_model_state_dict(self.transformer, load_file(str(root / LORA_FILE)))
            if getattr(result, "unexpected_keys", None):
                raise ModelLoadError(f"{root / LORA_FILE} does not match the LoRA config "
                                     f"({len(result.unexpected_keys)} unexpected keys)")

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

    # ------------------------------------------------------------------ conditioning
    def reader(self, encoder: TextConditioner) -> TextConditioner:
        """What turns captions into this decoder's text states: the encoder itself (text_input states, UAE) or
        the decoder's own sentence reader over the encoder's tokenizer (text_input sentences)."""
        if self.config.text_input == "states":
            return encoder
        from uae_train.models.sentence_reader import SentenceReader

        cached = getattr(self, "_sentence_reader", None)
        tokenizer = getattr(encoder, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("text_input sentences needs a tokenizer: pass the encoder (or anything with .tokenizer)")
        if cached is None or cached.tokenizer is not tokenizer:
            cached = SentenceReader(self.connector.words, tokenizer, self.connector.sentence_norm,
                                    order=getattr(self.connector, "word_order", None),
                                    phrases=self.config.phrases)
            object.__setattr__(self, "_sentence_reader", cached)  # not a submodule: the table already is
        return cached

    def context(self, text_hidden: torch.Tensor, text_mask: torch.Tensor) -> TextCondition:
        """Text states (B, T, H) + mask (B, T) → DiT context (B, T', D) + mask (B, T').

        Columns padded in every row are dropped (exact: text tokens carry no position in the DiT and
        masked keys are ignored), so a batch costs what its longest caption costs.
        """
        if text_hidden.dim() != 3 or text_mask.shape != text_hidden.shape[:2]:
            raise ValueError(f"text states must be (B, T, H) with mask (B, T); got {tuple(text_hidden.shape)} "
                             f"and {tuple(text_mask.shape)}")
        mask = text_mask.to(self.device, torch.bool)
        keep = mask.any(dim=0)
        if not keep.any():
            keep[0] = True
        return self.connector(text_hidden[:, keep.to(text_hidden.device)], mask[:, keep]), mask[:, keep]

    def null_context(self, batch: int) -> TextCondition:
        """The unconditional input: one all-zero context token (what `uncond_prob` trains)."""
        states = torch.zeros(batch, 1, self.transformer.config.joint_attention_dim, device=self.device)
        return states, torch.ones(batch, 1, dtype=torch.bool, device=self.device)

    def _negative_context(self, negative: TextCondition | None, batch: int) -> TextCondition:
        if negative is None:
            return self.null_context(batch)
        states, mask = self.context(*negative)
        if states.shape[0] == 1 and batch > 1:
            states, mask = states.expand(batch, -1, -1), mask.expand(batch, -1)
        if states.shape[0] != batch:
            raise ValueError(f"negative condition has batch {states.shape[0]}, expected 1 or {batch}")
        return states, mask

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
        states, mask = _pad_cat(negative_context, context)
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

    def loss_randomness(self, batch: int, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(t, noise, drop) for a batch, drawn in the order `loss` draws them, so a multi-process run can draw
        them for the global batch and give each rank its rows (drop is None outside train mode / uncond_prob 0)."""
        t = sample_timesteps(batch, self.config.timestep_sampling, self.config.logit_mean, self.config.logit_std,
                             generator)
        side = self.image_size // self.vae_scale_factor
        noise = torch.randn((batch, self.latent_channels, side, side), generator=generator)
        drop = (torch.rand(batch, generator=generator) < self.config.uncond_prob
                if self.training and self.config.uncond_prob > 0 else None)
        return t, noise, drop

    def loss(self, images: torch.Tensor | Sequence[Image.Image], text_hidden: torch.Tensor, text_mask: torch.Tensor,
             generator: torch.Generator | None = None, t: torch.Tensor | float | None = None,
             noise: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> torch.Tensor:
        """Rectified-flow MSE between v(x_t, t) and ε − x, a scalar.

        images (B, 3, H, W) in [-1, 1] or PIL; t (default: drawn per row from `timestep_sampling`) and
        noise (default: N(0, 1) in the data space) may be fixed for a stable measurement. Randomness is
        drawn on CPU from `generator`. In train mode a `uncond_prob` share of rows gets the null condition
        (`drop`, bool per row, fixes which).
        """
        x = self.encode_images(images, generator)
        batch = x.shape[0]
        if t is None:
            t = sample_timesteps(batch, self.config.timestep_sampling, self.config.logit_mean,
                                 self.config.logit_std, generator)
        t = torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(batch).to(self.device)
        if noise is None:
            noise = torch.randn(x.shape, generator=generator)
        x_t, target = flow_matching_pair(x, noise.to(x.device, x.dtype), t)
        states, mask = self.context(text_hidden, text_mask)
        if self.training and self.config.uncond_prob > 0:
            # A dropped row = null_context: one zero token, the rest masked out.
            if drop is None:
                drop = torch.rand(batch, generator=generator) < self.config.uncond_prob
            drop = drop.to(self.device)
            states = states * (~drop)[:, None, None].to(states.dtype)
            first_only = torch.zeros_like(mask)
            first_only[:, 0] = True
            mask = torch.where(drop[:, None], first_only, mask)
        prediction = self._dit(x_t, t, states, mask)
        return F.mse_loss(prediction.float(), target.float())

    # ------------------------------------------------------------------ sampling
    def new_scheduler(self, steps: int, image_seq_len: int | None = None) -> FlowMatchEulerDiscreteScheduler:
        """A fresh copy of the scheduler set to `steps` (the decoder's own stays untouched, so calls don't
        share step state). image_seq_len is only used by dynamic-shift (FLUX-style) schedulers."""
        scheduler = type(self.scheduler).from_config(self.scheduler.config)
        kwargs = {}
        if scheduler.config.get("use_dynamic_shifting", False):
            c = scheduler.config
            seq = image_seq_len or (self.transformer.config.sample_size // self.transformer.config.patch_size) ** 2
            slope = (c.max_shift - c.base_shift) / (c.max_image_seq_len - c.base_image_seq_len)
            kwargs["mu"] = c.base_shift + slope * (seq - c.base_image_seq_len)
        scheduler.set_timesteps(steps, device="cpu", **kwargs)
        return scheduler

    def sigmas(self, steps: int) -> torch.Tensor:
        """(steps + 1,) float32 noise levels from 1 down to 0 (the last is 0); t = σ, DiT timestep = 1000·σ."""
        return self.new_scheduler(steps).sigmas.clone()

    def initial_noise(self, seeds: Sequence[int], height: int | None = None, width: int | None = None) -> torch.Tensor:
        """(B, C, h, w) float32 noise, image i drawn on CPU from torch.Generator().manual_seed(seeds[i]), so an
        image depends only on its own seed (not on its batch or the device)."""
        height, width = height or self.image_size, width or self.image_size
        shape = (self.latent_channels, height // self.vae_scale_factor, width // self.vae_scale_factor)
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(noise).to(self.device)

    @torch.no_grad()
    def sample(self, text_hidden: torch.Tensor, text_mask: torch.Tensor, seeds: Sequence[int], steps: int = 20,
               guidance: float = 1.0, negative: TextCondition | None = None, height: int | None = None,
               width: int | None = None) -> torch.Tensor:
        """Euler ODE sampling → (B, 3, H, W) in [-1, 1]; B = len(seeds), a text batch of 1 is repeated."""
        batch = len(seeds)
        if text_hidden.shape[0] == 1 and batch > 1:
            text_hidden, text_mask = text_hidden.expand(batch, -1, -1), text_mask.expand(batch, -1)
        if text_hidden.shape[0] != batch:
            raise ValueError(f"{text_hidden.shape[0]} text conditions for {batch} seeds")
        context = self.context(text_hidden, text_mask)
        negative_context = self._negative_context(negative, batch) if guidance != 1.0 else None
        latents = self.initial_noise(seeds, height, width)
        scheduler = self.new_scheduler(steps, latents.shape[-1] * latents.shape[-2] // self.transformer.config.patch_size ** 2)
        for i, timestep in enumerate(scheduler.timesteps):
            v = self.velocity_from_context(latents, scheduler.sigmas[i], context, guidance, negative_context)
            latents = scheduler.step(v, timestep, latents, return_dict=False)[0]
        return self.decode_latents(latents)

    def generate(self, text_hidden: torch.Tensor, text_mask: torch.Tensor, seeds: Sequence[int], steps: int = 20,
                 guidance: float = 1.0, negative: TextCondition | None = None, height: int | None = None,
                 width: int | None = None) -> list[Image.Image]:
        """`sample` as RGB PIL images, one per seed."""
        return tensor_to_pil(self.sample(text_hidden, text_mask, seeds, steps, guidance, negative, height, width))


def dit_init(transformer: SD3Transformer2DModel) -> None:
    """DiT's from-scratch init (Peebles & Xie 2023, `initialize_weights`) on diffusers' SD3 MMDiT.

    Xavier-uniform linears and patch projection, N(0, 0.02) timestep/pooled embedders, zero adaLN modulation
    (every block starts as the identity) and a zero final layer. diffusers builds the model for loading
    pretrained weights and keeps PyTorch's layer defaults; trained from scratch with those, the tiny DiT
    learnt to use a condition far more slowly (scripts/conditioning_probe.py: 16 labelled images from noise,
    0.95 of the mean-image loss after 150 steps with PyTorch's init vs 0.75 with this one, 0.57 after 400).
    """
    for module in transformer.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    weight = transformer.pos_embed.proj.weight
    nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
    nn.init.zeros_(transformer.pos_embed.proj.bias)
    for module in transformer.time_text_embed.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
    for block in transformer.transformer_blocks:
        for norm in (block.norm1, block.norm1_context):
            if getattr(norm, "linear", None) is not None:
                nn.init.zeros_(norm.linear.weight)
                nn.init.zeros_(norm.linear.bias)
    for layer in (transformer.norm_out.linear, transformer.proj_out):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def _spread_positions(transformer: SD3Transformer2DModel, grid: int, spacing: float) -> None:
    """Give a small token grid sin-cos positions `spacing` apart (the buffer is saved with the weights).

    diffusers' PatchEmbed spreads positions 0..base_size over its whole pos_embed_max_size grid and crops the
    middle, so a tiny grid got positions ~0.1 apart: the 9 tokens of a 48 px image with 16 px patches had
    position embeddings with cosine similarity > 0.999, and the DiT could not tell one cell from another
    (it painted the same whatever its caption said). SD3 itself spaces positions 1/3 apart over 64
    tokens per side, where the high frequencies separate them; a 3-token side needs wider spacing.
    """
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    pe = transformer.pos_embed
    emb = get_2d_sincos_pos_embed(pe.proj.out_channels, grid, base_size=grid, interpolation_scale=1.0 / spacing,
                                  output_type="pt")
    with torch.no_grad():
        pe.pos_embed.copy_(torch.as_tensor(emb, dtype=pe.pos_embed.dtype).reshape(pe.pos_embed.shape))


# ---------------------------------------------------------------------- loading helpers
def _resolve(name_or_path: str | Path) -> Path:
    """A local folder as is; a hub repo id (owner/name) → a local snapshot; anything else → ModelLoadError."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{name_or_path} is a file, not a model folder")
        if not (path / CONFIG_FILE).is_file() and not (path / "transformer" / "config.json").is_file():
            raise ModelLoadError(f"{name_or_path} is not a model folder (no {CONFIG_FILE} and no transformer/config.json)")
        return path
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"{name_or_path} does not exist (not a folder, not a hub name like owner/model)")
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(name, allow_patterns=_HUB_PATTERNS))
    except Exception as err:  # offline, missing repo, gated repo: all one line for the user
        raise ModelLoadError(f"cannot fetch {name} from the hub: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    return _resolve(local)


def _read_config(file: Path) -> dict:
    try:
        record = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{file}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if record.get("format") != FORMAT:
        raise ModelLoadError(f"{file}: format {record.get('format')!r} is not {FORMAT!r}")
    known = {f.name for f in fields(DecoderConfig)}
    return {k: v for k, v in record.items() if k in known}


def _load_diffusers_parts(base: Path, torch_dtype: torch.dtype | None):
    """transformer/ (SD3Transformer2DModel), vae/ if present, scheduler/ if present (else shift 3.0, SD3's)."""
    cls_name = json.loads((base / "transformer" / "config.json").read_text()).get("_class_name")
    if cls_name not in (None, "SD3Transformer2DModel"):
        raise ModelLoadError(f"{base / 'transformer'} holds a {cls_name}; Decoder supports SD3Transformer2DModel "
                             f"(use PipelineDecoder for other pipelines)")
    try:
        transformer = SD3Transformer2DModel.from_pretrained(base / "transformer", torch_dtype=torch_dtype)
        vae = AutoencoderKL.from_pretrained(base / "vae", torch_dtype=torch_dtype) if (base / "vae").is_dir() else None
        scheduler = (FlowMatchEulerDiscreteScheduler.from_pretrained(base / "scheduler")
                     if (base / "scheduler").is_dir() else FlowMatchEulerDiscreteScheduler(shift=3.0))
    except (OSError, ValueError, RuntimeError) as err:
        raise ModelLoadError(f"cannot load the DiT/VAE from {base}: {str(err).splitlines()[0]}") from None
    return transformer, vae, scheduler


def _empty_prompt_pooled(base: Path, dim: int) -> torch.Tensor | None:
    """UAE's pooled_projections: the empty prompt through SD3's two CLIP encoders (concatenated pooled
    text embeddings, as StableDiffusion3Pipeline computes them); None (→ zeros) if the folder lacks them."""
    parts = [(base / "tokenizer", base / "text_encoder"), (base / "tokenizer_2", base / "text_encoder_2")]
    if not all(tok.is_dir() and enc.is_dir() for tok, enc in parts):
        return None
    from transformers import AutoTokenizer, CLIPTextModelWithProjection

    pooled = []
    max_length = None
    for tok_dir, enc_dir in parts:
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        max_length = max_length or tokenizer.model_max_length  # the pipeline uses tokenizer 1's length for both
        encoder = CLIPTextModelWithProjection.from_pretrained(enc_dir).eval()
        ids = tokenizer([""], padding="max_length", max_length=max_length, truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            pooled.append(encoder(ids).text_embeds.float()[0])
        del encoder
    vector = torch.cat(pooled)
    if vector.shape != (dim,):
        raise ModelLoadError(f"{base}: CLIP pooled width {vector.shape[0]} does not match the DiT's {dim}")
    return vector


def _base_state_dict(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """The DiT's weights without LoRA, under their original names (peft renames w → base_layer.w)."""
    out = {}
    for key, value in transformer.state_dict().items():
        if "lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value.detach().contiguous().cpu()
    return out


# ---------------------------------------------------------------------- stock pipelines
class PipelineDecoder:
    """Any diffusers text-to-image pipeline (e.g. StableDiffusion3Pipeline) behind one call, for baselines
    that reconstruct an image from the caption text with the pipeline's own text encoders."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, torch_dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs) -> "PipelineDecoder":
        from diffusers import AutoPipelineForText2Image

        path = Path(name_or_path).expanduser()
        if path.exists() and not (path / "model_index.json").is_file():
            raise ModelLoadError(f"{name_or_path} is not a diffusers pipeline folder (no model_index.json)")
        if not path.exists() and str(name_or_path).count("/") != 1:
            raise ModelLoadError(f"{name_or_path} does not exist (not a folder, not a hub name like owner/model)")
        from uae_data.model_refs import require_model

        require_model(str(name_or_path), "--decoder PATH (a local pipeline folder)", "diffusers pipeline", "model_index.json")
        try:
            pipeline = AutoPipelineForText2Image.from_pretrained(str(name_or_path), **({"dtype": torch_dtype} if torch_dtype is not None else {}), **kwargs)
        except Exception as err:
            raise ModelLoadError(f"cannot load pipeline {name_or_path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
        if device is not None:
            pipeline.to(device)
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline)

    def generate_text(self, prompts: Sequence[str], seeds: Sequence[int], steps: int = 28, guidance: float | None = 7.0,
                      height: int | None = None, width: int | None = None,
                      negative_prompt: str | None = None, **options) -> list[Image.Image]:
        """One image per (prompt, seed); each image's noise comes from its own CPU generator.
        guidance None: the pipeline's own default; `options` go to the pipeline call as they are."""
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts for {len(seeds)} seeds")
        generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        kwargs = {"negative_prompt": [negative_prompt] * len(prompts)} if negative_prompt is not None else {}
        if guidance is not None:
            kwargs["guidance_scale"] = guidance
        out = self.pipeline(prompt=list(prompts), num_inference_steps=steps, generator=generators, height=height,
                            width=width, output_type="pil", **kwargs, **options)
        return list(out.images)
