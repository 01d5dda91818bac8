"""The encoder: image → long caption, a VLM (UAE: Qwen2.5-VL) used three ways by the whole project.

- `caption` / `sample_captions`: the policy of stage 1 (Gen→Und) and the corpus recaptioner.
- `completion_logprobs` / `sft_loss`: teacher-forced scoring of captions given image + prompt (GRPO, SFT).
- `encode_text`: UAE's connector input: the VLM re-reads a caption alone (chat role "generate", no image)
  and hands back the last-layer hidden states of every token (facts/unified_grpo.md §1).

Any `AutoModelForImageTextToText` + `AutoProcessor` loads by hub name or local path. `Encoder.tiny` builds
the real Qwen2.5-VL class from a tiny config with the scene tokenizer, so tests run the production path.

Sequence layout for scoring (as TRL's): `[left-padded prompt | right-padded completion]`, so every
completion starts at the same column and only the last T+1 positions need logits.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from uae_data.core.errors import UserError

log = logging.getLogger(__name__)

CAPTION_PROMPT = "Describe this image in detail."
GENERATE_ROLE = "generate"  # UAE's chat role for re-encoding a caption as a generation condition
LORA_DIR = "lora"  # a saved encoder's LoRA adapter lives here, beside the base weights
LORA_DEFAULTS: dict[str, Any] = {"r": 32, "alpha": 64, "target_modules": "all-linear", "dropout": 0.0,
                                 "init": "gaussian"}  # UAE's encoder LoRA
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

ImageLike = Image.Image | np.ndarray


from uae_data.core.errors import ModelLoadError  # noqa: E402  (re-exported)


@dataclass
class CaptionSamples:
    """Captions grouped by image (image 0's n first); token_ids end with the stop token unless truncated."""

    texts: list[str]
    token_ids: list[list[int]]
    truncated: list[bool]  # True: hit max_new_tokens without a stop token


def lora_config(lora: dict) -> "Any":
    """A peft LoraConfig from {"r", "alpha", "target_modules", "dropout", "init"} (UAE's values by default)."""
    from peft import LoraConfig

    unknown = set(lora) - set(LORA_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown LoRA option(s) {', '.join(sorted(unknown))}; "
                         f"expected some of {', '.join(LORA_DEFAULTS)}")
    opts = {**LORA_DEFAULTS, **lora}
    if "alpha" not in lora and "r" in lora:
        opts["alpha"] = 2 * int(lora["r"])
    return LoraConfig(r=int(opts["r"]), lora_alpha=float(opts["alpha"]), target_modules=opts["target_modules"],
                      lora_dropout=float(opts["dropout"]), init_lora_weights=opts["init"])


def _image_word_loss(at_image: torch.Tensor, targets: Sequence[Sequence[Sequence[int]]],
                     count: int | None = None) -> torch.Tensor:
    """Mean over image tokens of -Σ log p(target word) from the logits at those tokens (N, V); `count`
    replaces the number of image tokens as the divisor (a global batch's, in a multi-process run)."""
    flat = [list(t) for per_image in targets for t in per_image]
    if len(flat) != at_image.shape[0]:
        raise ValueError(f"image_targets name {len(flat)} image tokens; the batch has {at_image.shape[0]}")
    logp = at_image.float().log_softmax(-1)
    rows = torch.tensor([k for k, t in enumerate(flat) for _ in t], device=logp.device)
    cols = torch.tensor([i for t in flat for i in t], device=logp.device)
    return -logp[rows, cols].sum() / max(1, count or len(flat))


def mask_after_stop(ids: torch.Tensor, mask: torch.Tensor, stop_ids: Sequence[int]) -> torch.Tensor:
    """`mask` (B, T) bool with every position after the first stop token switched off (the stop stays on)."""
    is_stop = torch.isin(ids, torch.tensor(list(stop_ids), device=ids.device)) & mask
    seen_before = (is_stop.long().cumsum(1) - is_stop.long()) > 0
    return mask & ~seen_before


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. float32, bfloat16, float16")
        return value
    return dtype


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNGs inside the block only; the caller's global RNG state is restored afterwards."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _move(model: torch.nn.Module, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> None:
    """model.to(device, dtype), but non-persistent buffers (rotary inv_freq) keep their own precision.

    A plain .to(bfloat16) rounds inv_freq to bf16, while from_pretrained(dtype=bfloat16) keeps it fp32,
    so a cast model and its saved-and-loaded copy would disagree by ~1e-2 in log-probs.
    """
    model.to(device=device)
    if dtype is None:
        return
    kept = [(module, name, module._buffers[name]) for module in model.modules()
            for name in getattr(module, "_non_persistent_buffers_set", ()) if module._buffers.get(name) is not None]
    model.to(dtype=dtype)
    for module, name, buffer in kept:
        module._buffers[name] = buffer


def _as_pil(image: ImageLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, np.ndarray) and image.ndim == 3 and image.shape[2] in (3, 4):
        return Image.fromarray(image.astype(np.uint8)[..., :3], "RGB")
    raise ValueError(f"expected PIL images or (H, W, 3) uint8 arrays, got {type(image).__name__}"
                     f"{getattr(image, 'shape', '')}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class Encoder:
    """A VLM captioner with teacher-forced scoring and UAE's text re-encoding; see the module docstring.

    Attributes: `model` (the transformers model, peft-wrapped with LoRA), `processor`, `tokenizer`,
    `prompt` (the caption instruction, default `CAPTION_PROMPT`), `name_or_path`.
    """

    CAPTION_PROMPT = CAPTION_PROMPT

    def __init__(self, model: torch.nn.Module, processor: Any, prompt: str | None = None,
                 name_or_path: str | None = None) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.prompt = prompt or self.CAPTION_PROMPT
        self.name_or_path = name_or_path
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token

    # ------------------------------------------------------------ building and saving

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None, lora: dict | None = None,
                        prompt: str | None = None, seed: int = 0) -> "Encoder":
        """Any image-text-to-text model by hub name or local folder (one saved by `save_pretrained` included).

        device: default cuda if available, else cpu; dtype: default bf16 on cuda, fp32 on cpu.
        lora: {"r", "alpha", "target_modules", "dropout", "init"} adds a fresh adapter (seeded by `seed`);
        a folder saved with an adapter gets it back, trainable, and a new `lora` then stacks on top of it
        merged. Raises ModelLoadError (one line naming the path) for anything that is not a model.
        """
        from transformers import AutoModelForImageTextToText, AutoProcessor

        source, path = str(name_or_path), Path(name_or_path)
        if path.exists():
            if not path.is_dir():
                raise ModelLoadError(f"{source} is a file, not a model folder")
            if not (path / "config.json").is_file():
                raise ModelLoadError(f"{source} is not a model folder (no config.json)")
        elif not _HUB_ID.match(source):
            raise ModelLoadError(f"{source} does not exist (not a folder, not a hub name like owner/model)")
        else:
            from uae_data.model_refs import require_model

            require_model(source, "--encoder PATH (or --model PATH / the manifest's encoder: PATH)",
                          "image-text-to-text model")
        device = _resolve_device(device)
        dtype = _resolve_dtype(dtype, device)
        try:
            processor = AutoProcessor.from_pretrained(source)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ModelLoadError(f"cannot load an image-text-to-text model from {source}: {_first_line(err)}") from None
        if not hasattr(processor, "tokenizer"):
            raise ModelLoadError(f"{source} has no tokenizer in its processor; it is not a VLM captioner")
        adapter = path / LORA_DIR if path.exists() else None
        if adapter is not None and (adapter / "adapter_config.json").is_file():
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
            if lora is not None:
                model = model.merge_and_unload()
        if lora is not None:
            from peft import get_peft_model

            with _seeded(seed, torch.device("cpu")):
                model = get_peft_model(model, lora_config(lora))
        if path.exists():
            from uae_train.models import cell_embedding

            cell_embedding.attach_saved(model, path)
        model.to(device)
        model.eval()
        return cls(model, processor, prompt=prompt, name_or_path=source)

    @classmethod
    def tiny(cls, image_size: int = 64, seed: int = 0, lora: dict | None = None,
             device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
             prompt: str | None = None, text_width: int = 64, text_layers: int = 2, vision_width: int = 32,
             vision_patch: int = 14, cell_embedding: bool = False) -> "Encoder":
        """Qwen2.5-VL from a tiny config (text 64 wide, 2 layers; vision 32 wide, 2 blocks; ~180k parameters).

        text_width / text_layers size the language model (4 heads of width text_width / 4; the mrope
        sections scale with the head size); vision_width the vision tower (2 heads). vision_patch 14 merges
        2 × 2 patches into each image token (Qwen's layout); 7 merges 4 × 4 finer patches, so a token sees
        its cell's shape in 16 pieces instead of 4 (the token count stays one per 28 px). cell_embedding adds a
        learned position to each image token (`cell_embedding.py`: at this head size mrope cannot tell the
        grid's columns apart).

        Weights are a function of `seed` (built on cpu in fp32, then moved; dtype default fp32). Images are
        resized to side × side, side the multiple of 28 covering `image_size` and at least 84: a 64² scene
        gives 6 × 6 patches, merged into 3 × 3 image tokens, one per scene grid cell.
        """
        from transformers import (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor,
                                  Qwen2VLImageProcessor, Qwen2VLVideoProcessor)

        from uae_train.models.scene_tokenizer import CHAT_TEMPLATE, build_scene_tokenizer

        tokenizer = build_scene_tokenizer()
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
               ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>",
                "<|im_end|>")}
        if vision_patch not in (7, 14):
            raise ValueError(f"vision_patch {vision_patch}: expected 14 (2 x 2 merge) or 7 (4 x 4 merge)")
        if text_width % 16 or text_layers < 1:
            raise ValueError(f"text_width {text_width} must be a multiple of 16 and text_layers {text_layers} >= 1")
        half = text_width // 8  # head_dim / 2 with 4 heads
        section = [half - 2 * (3 * half // 8), 3 * half // 8, 3 * half // 8]  # 64 wide: [2, 3, 3]
        text = dict(vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=2 * text_width,
                    num_hidden_layers=text_layers, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=4096,
                    # the three mrope sections (temporal, height, width) must sum to head_dim / 2
                    rope_parameters={"rope_type": "default", "mrope_section": section, "rope_theta": 10000.0},
                    bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
        vision = dict(depth=2, hidden_size=vision_width, intermediate_size=2 * vision_width, num_heads=2,
                      out_hidden_size=text_width,
                      patch_size=vision_patch, spatial_merge_size=28 // vision_patch, temporal_patch_size=2,
                      window_size=112,
                      fullatt_block_indexes=[1])
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                                  video_token_id=ids["<|video_pad|>"],
                                  vision_start_token_id=ids["<|vision_start|>"],
                                  vision_end_token_id=ids["<|vision_end|>"])
        with _seeded(seed, torch.device("cpu")):
            model = Qwen2_5_VLForConditionalGeneration(config)
            model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
            model.generation_config.pad_token_id = ids["<|endoftext|>"]
            model.generation_config.bos_token_id = None
            side = 28 * max(3, math.ceil(image_size / 28))
            if cell_embedding:
                from uae_train.models import cell_embedding as cells

                cells.attach(model, cells.CellEmbedding(side // 28, text_width))
            if lora is not None:
                from peft import get_peft_model

                model = get_peft_model(model, lora_config(lora))
        side = 28 * max(3, math.ceil(image_size / 28))
        processor = Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(min_pixels=side * side, max_pixels=side * side,
                                                  patch_size=vision_patch, merge_size=28 // vision_patch),
            tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)
        device = _resolve_device(device)
        _move(model, device, _resolve_dtype(dtype, torch.device("cpu")))
        model.eval()
        return cls(model, processor, prompt=prompt, name_or_path=f"tiny-qwen2.5-vl(image_size={image_size}, seed={seed})")

    def save_pretrained(self, path: str | Path) -> Path:
        """Model (safetensors) + processor into `path`; with LoRA, clean base weights plus the adapter in lora/."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        core = self._core()
        # a cell embedding is not part of the stock model: its own file (cell_embedding.py)
        state = {k.replace(".base_layer", ""): v for k, v in core.state_dict().items()
                 if "lora_" not in k and ".cell_embedding." not in k}
        core.save_pretrained(path, state_dict=state)
        if self.has_lora:
            self.model.save_pretrained(str(path / LORA_DIR))
        visual = getattr(getattr(core, "model", core), "visual", None)
        if visual is not None and hasattr(visual, "cell_embedding"):
            from uae_train.models import cell_embedding

            cell_embedding.save(visual.cell_embedding, path)
        self.processor.save_pretrained(path)
        return path

    # ------------------------------------------------------------ torch passthrough

    @property
    def has_lora(self) -> bool:
        return hasattr(self.model, "get_base_model")  # a peft wrapper

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def hidden_size(self) -> int:
        """Width H of `encode_text`'s states: the language model's hidden size."""
        return int(self._core().config.get_text_config().hidden_size)

    @property
    def stop_token_ids(self) -> list[int]:
        """Tokens that end a caption: the generation config's eos ids and the tokenizer's eos."""
        eos = self._core().generation_config.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    @property
    def suppressed_token_ids(self) -> list[int]:
        """Vision placeholder tokens: never sampled (a caption holding <|image_pad|> could not be re-scored)
        and given probability 0 when scoring, so sampling and scoring stay one policy."""
        config = self._core().config
        names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id",
                 "image_token_index", "video_token_index")
        ids = {getattr(config, n, None) for n in names}
        return sorted(i for i in ids if isinstance(i, int) and i >= 0)

    @property
    def end_token_id(self) -> int:
        """The token appended to captions for SFT: the end of the assistant turn (Qwen: <|im_end|>)."""
        return self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else self.stop_token_ids[0]

    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> "Encoder":
        """Move (and cast) the model in place; rotary buffers keep fp32, as from_pretrained(dtype=) leaves them."""
        _move(self.model, device, None if dtype is None else _resolve_dtype(dtype, torch.device("cpu")))
        return self

    def train(self, mode: bool = True) -> "Encoder":
        self.model.train(mode)
        return self

    def eval(self) -> "Encoder":
        return self.train(False)

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.model.parameters()

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """What an optimizer should get: the LoRA weights with LoRA, else every parameter."""
        return [p for p in self.model.parameters() if p.requires_grad]

    def _core(self) -> torch.nn.Module:
        """The transformers model under any peft wrapper (LoRA layers stay injected in it)."""
        return self.model.get_base_model() if self.has_lora else self.model

    # ------------------------------------------------------------ captioning

    def _prompt_text(self, prompt: str | None) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt or self.prompt}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _prompt_inputs(self, images: Sequence[ImageLike], prompt: str | None) -> dict[str, torch.Tensor]:
        """Processor output for image + instruction + assistant header, left-padded, on the model's device."""
        pil = [_as_pil(im) for im in images]
        inputs = self.processor(text=[self._prompt_text(prompt)] * len(pil), images=pil, padding=True,
                                padding_side="left", return_tensors="pt")
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

    @torch.no_grad()
    def sample_captions(self, images: Sequence[ImageLike], n: int = 1, sample: bool = True,
                        max_new_tokens: int = 160, temperature: float = 1.0, seed: int | None = None,
                        batch_size: int | None = None, prompt: str | None = None) -> CaptionSamples:
        """len(images)·n captions grouped by image, with their token ids and truncation flags.

        Sampling is plain softmax(logits / temperature) (the model's top-k/top-p/repetition defaults are
        switched off), so `completion_logprobs(..., temperature=)` scores exactly the sampling policy.
        `sample=False` is greedy. Reproducible for the same seed, inputs and batch_size; the global RNG
        state is left as it was. Runs in eval mode and restores the previous mode.
        """
        if n < 1 or max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got n={n}, max_new_tokens={max_new_tokens}")
        if sample and temperature <= 0:
            raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
        from transformers import GenerationConfig

        repeated = [im for im in images for _ in range(n)]
        stops = self.stop_token_ids
        gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=sample, num_beams=1,
                               temperature=temperature if sample else None, top_k=0 if sample else None,
                               top_p=1.0 if sample else None, repetition_penalty=1.0, eos_token_id=stops,
                               suppress_tokens=self.suppressed_token_ids or None,
                               pad_token_id=self.tokenizer.pad_token_id, bos_token_id=None)
        was_training = self.model.training
        self.model.eval()
        texts: list[str] = []
        token_ids: list[list[int]] = []
        truncated: list[bool] = []
        step = batch_size or max(1, len(repeated))
        try:
            with _seeded(seed, self.device):
                for start in range(0, len(repeated), step):
                    inputs = self._prompt_inputs(repeated[start:start + step], prompt)
                    out = self.model.generate(**inputs, generation_config=gen)
                    for row in out[:, inputs["input_ids"].shape[1]:].tolist():
                        end = next((i for i, t in enumerate(row) if t in stops), None)
                        ids = row if end is None else row[:end + 1]
                        token_ids.append(ids)
                        truncated.append(end is None)
                        texts.append(self.tokenizer.decode(ids, skip_special_tokens=True).strip())
        finally:
            self.model.train(was_training)
        return CaptionSamples(texts, token_ids, truncated)

    def caption_with_info(self, images: Sequence[ImageLike], n: int = 1, sample: bool = True,
                          max_new_tokens: int = 160, temperature: float = 1.0, seed: int | None = None,
                          batch_size: int | None = None, prompt: str | None = None) -> tuple[list[str], list[bool]]:
        """(captions, truncated flags), as `sample_captions`; truncated = hit max_new_tokens before a stop token."""
        out = self.sample_captions(images, n=n, sample=sample, max_new_tokens=max_new_tokens,
                                   temperature=temperature, seed=seed, batch_size=batch_size, prompt=prompt)
        return out.texts, out.truncated

    def caption(self, images: Sequence[ImageLike], n: int = 1, sample: bool = True, max_new_tokens: int = 160,
                temperature: float = 1.0, seed: int | None = None, batch_size: int | None = None,
                prompt: str | None = None) -> list[str]:
        """len(images)·n captions, image 0's n first; see `sample_captions`."""
        return self.sample_captions(images, n=n, sample=sample, max_new_tokens=max_new_tokens,
                                    temperature=temperature, seed=seed, batch_size=batch_size,
                                    prompt=prompt).texts

    # ------------------------------------------------------------ teacher-forced scoring

    def _completion_ids(self, captions: Sequence[str] | Sequence[Sequence[int]], add_end: bool) -> list[list[int]]:
        if len(captions) and not isinstance(captions[0], str):
            ids = [list(map(int, c)) for c in captions]  # token ids as sampled: scored as they are
            banned = set(self.suppressed_token_ids)
            bad = next((i for i, c in enumerate(ids) if banned.intersection(c)), None)
            if bad is not None:
                raise ValueError(f"caption {bad} holds a vision placeholder token ({sorted(banned)}); "
                                 "captions must be plain text tokens")
            return ids
        ids = self.tokenizer(list(captions), add_special_tokens=False)["input_ids"]
        return [i + [self.end_token_id] if add_end else i for i in ids]

    def _completion_logits(self, images: Sequence[ImageLike], completions: list[list[int]], prompt: str | None,
                           image_logits: bool = False) -> tuple[torch.Tensor, ...]:
        """logits (B, T, V) predicting completion ids (B, T), and their mask (B, T) bool (pad off).

        image_logits: also return the logits at every image-placeholder position (N, V), in input order
        (image by image, merged patches row by row), suppressed tokens at -inf.
        """
        if len(images) != len(completions):
            raise ValueError(f"{len(images)} images for {len(completions)} captions; pass one image per caption")
        inputs = self._prompt_inputs(images, prompt)
        prompt_ids = inputs["input_ids"]  # (B, P)
        batch, prompt_len = prompt_ids.shape
        length = max(1, max(len(c) for c in completions))
        pad = self.tokenizer.pad_token_id
        ids = torch.full((batch, length), pad, dtype=prompt_ids.dtype)
        mask = torch.zeros(batch, length, dtype=torch.bool)
        for i, c in enumerate(completions):
            ids[i, :len(c)] = torch.tensor(c, dtype=prompt_ids.dtype)
            mask[i, :len(c)] = True
        ids, mask = ids.to(self.device), mask.to(self.device)
        for key, value in list(inputs.items()):  # per-token inputs (mask, mm_token_type_ids, ...) grow too
            if torch.is_tensor(value) and value.shape == (batch, prompt_len):
                tail = ids if key == "input_ids" else mask if key == "attention_mask" else torch.zeros_like(ids)
                inputs[key] = torch.cat([value, tail.to(value.dtype)], dim=1)
        at_image = None
        if image_logits:
            full = self.model(**inputs).logits
            at_image = full[inputs["input_ids"] == self._core().config.image_token_id]
            logits = full[:, -(length + 1):]
        elif _accepts(self.model, "logits_to_keep"):
            logits = self.model(**inputs, logits_to_keep=length + 1).logits
        else:
            logits = self.model(**inputs).logits[:, -(length + 1):]
        logits = logits[:, :-1]  # (B, T, V): position t predicts completion token t
        suppressed = self.suppressed_token_ids
        if suppressed:
            fill = torch.tensor(suppressed, device=logits.device)
            logits = logits.index_fill(-1, fill, float("-inf"))
            at_image = at_image.index_fill(-1, fill, float("-inf")) if at_image is not None else None
        return (logits, ids, mask, at_image) if image_logits else (logits, ids, mask)

    def completion_logprobs(self, images: Sequence[ImageLike], captions: Sequence[str] | Sequence[Sequence[int]],
                            temperature: float = 1.0, add_end: bool = True, prompt: str | None = None,
                            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log π(caption token | image, prompt, earlier tokens): (B, T) float32 and mask (B, T) bool.

        captions: strings (tokenized, the end-of-turn token appended when add_end) or token-id lists as
        sampled (scored as is). The mask is off on padding and after the first stop token (the stop token
        itself counts, as in TRL). Logits are divided by `temperature`, the sampling temperature. Follows
        torch's grad mode: gradients reach the (trainable) parameters unless under torch.no_grad().
        """
        completions = self._completion_ids(captions, add_end)
        logits, ids, mask = self._completion_logits(images, completions, prompt)
        rows = []
        for row_logits, row_ids in zip(logits, ids):  # one row at a time: float32 (T, V) only
            scaled = row_logits.float() / temperature
            rows.append(scaled.gather(-1, row_ids[:, None]).squeeze(-1) - scaled.logsumexp(-1))
        return torch.stack(rows), mask_after_stop(ids, mask, self.stop_token_ids)

    def sft_loss(self, images: Sequence[ImageLike], captions: Sequence[str], prompt: str | None = None,
                 token_weights: dict[int, float] | None = None,
                 image_targets: Sequence[Sequence[Sequence[int]]] | None = None,
                 image_weight: float = 1.0, token_count: int | None = None,
                 image_token_count: int | None = None) -> tuple[torch.Tensor, float]:
        """(mean cross-entropy over caption tokens + end token, next-token accuracy on them).

        token_count / image_token_count replace this batch's own counts as the divisors: a rank of a
        multi-process run passes the global batch's counts, so the ranks' losses sum to the global mean.

        The prompt (image, instruction, assistant header) is context only, as labels of -100 would make it.
        `token_weights` {token id: w} counts those target tokens w times in the sum (the divisor stays the
        token count): a long caption is mostly template text, and the few words that need the image train
        too slowly without it (docs/scene-world-learning.md).
        `image_targets[b][k]` lists token ids the LM should predict at image b's k-th image token (e.g. the
        words of what that grid cell holds): adds image_weight × mean over tokens of -Σ log p(target), so
        image positions hold their content in word space and caption positions only have to copy it.
        """
        completions = self._completion_ids(captions, add_end=True)
        at_image = None
        if image_targets is not None:
            logits, ids, mask, at_image = self._completion_logits(images, completions, prompt, image_logits=True)
        else:
            logits, ids, mask = self._completion_logits(images, completions, prompt)
        labels = ids.masked_fill(~mask, -100)
        if token_weights:
            ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                                 reduction="none").view_as(ids)
            table = torch.ones(logits.shape[-1], device=ids.device, dtype=ce.dtype)
            table[list(token_weights)] = torch.tensor(list(token_weights.values()), device=ids.device, dtype=ce.dtype)
            w = table[ids] * mask
            loss = (ce * w).sum() / (token_count or mask.sum())
        elif token_count:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100,
                                   reduction="sum") / token_count
        else:
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)
        if at_image is not None:
            loss = loss + image_weight * _image_word_loss(at_image, image_targets, image_token_count)
        with torch.no_grad():
            accuracy = (logits.argmax(-1) == ids)[mask].float().mean().item()
        return loss, accuracy

    def word_token_ids(self, words: Sequence[str]) -> set[int]:
        """Token ids that spell `words`, with and without a leading space (every piece of a split word)."""
        ids: set[int] = set()
        for w in words:
            for variant in (w, " " + w):
                ids.update(self.tokenizer(variant, add_special_tokens=False)["input_ids"])
        ids.discard(self.tokenizer.pad_token_id)
        return ids

    # ------------------------------------------------------------ UAE's text path

    def encode_text(self, texts: Sequence[str], max_length: int | None = None, return_truncated: bool = False,
                    ) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, int]:
        """Last-layer hidden states (B, T, H) in the model dtype and mask (B, T) bool of the texts re-read alone.

        Each text is one chat turn in UAE's "generate" role (no image) followed by the assistant header,
        as UAE's encoder reads captions for its decoder; every token's state is returned, right-padded.
        `max_length` keeps the first max_length tokens; how many texts it cut is logged (and returned third
        with return_truncated). Follows torch's grad mode; frozen parameters record no graph.
        """
        if not len(texts):
            raise ValueError("encode_text needs at least one text")
        chats = [self.processor.apply_chat_template(
            [{"role": GENERATE_ROLE, "content": [{"type": "text", "text": t}]}], tokenize=False,
            add_generation_prompt=True) for t in texts]
        ids = self.tokenizer(chats, add_special_tokens=False)["input_ids"]
        n_cut = 0
        if max_length is not None:
            n_cut = sum(len(i) > max_length for i in ids)
            ids = [i[:max_length] for i in ids]
            if n_cut:
                log.warning("encode_text: %d of %d texts cut to max_length=%d tokens", n_cut, len(ids), max_length)
        length = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), length), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros(len(ids), length, dtype=torch.bool)
        for row, i in enumerate(ids):
            input_ids[row, :len(i)] = torch.tensor(i)
            mask[row, :len(i)] = True
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        core = self._core()
        backbone = getattr(core, "model", None)
        if isinstance(backbone, torch.nn.Module) and _accepts(backbone, "input_ids"):
            hidden = backbone(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        else:
            hidden = core(input_ids=input_ids, attention_mask=mask.long(), output_hidden_states=True).hidden_states[-1]
        return (hidden, mask, n_cut) if return_truncated else (hidden, mask)


def _accepts(module: torch.nn.Module, name: str) -> bool:
    """Whether module.forward takes a keyword `name` (peft wrappers forward **kwargs to the model)."""
    forward = module.get_base_model().forward if hasattr(module, "get_base_model") else module.forward
    params = inspect.signature(forward).parameters
    return name in params
