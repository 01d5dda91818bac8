"""The encoder: image → long caption, a VLM (UAE: Qwen2.5-VL) used three ways by the whole project.

- `caption` / `sample_captions` (`caption_sampling.py`): the policy of stage 1 (Gen→Und) and the corpus
  recaptioner.
- `completion_logprobs` / `sft_loss` (`caption_scoring.py`): teacher-forced scoring of captions given
  image + prompt (GRPO, SFT).
- `encode_text`: UAE's connector input: the VLM re-reads a caption alone (chat role "generate", no image)
  and hands back the last-layer hidden states of every token (facts/unified_grpo.md §1).

Any `AutoModelForImageTextToText` + `AutoProcessor` loads by hub name or local path. `Encoder.tiny` builds
the real Qwen2.5-VL class from a tiny config with the scene tokenizer (`tiny_vlm.py`), so tests run the
production path.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from uae_data.core.device import resolve_device
from uae_data.core.errors import ModelLoadError
from uae_train.models.caption_sampling import CaptionSampling, ImageLike, as_pil
from uae_train.models.caption_scoring import CaptionScoring
from uae_train.models.encoder_lora import lora_config
from uae_train.models.model_runtime import accepts_kwarg, move_model, resolve_dtype, seeded
from uae_train.models.tiny_vlm import build_tiny_qwen

log = logging.getLogger(__name__)

CAPTION_PROMPT = "Describe this image in detail."
GENERATE_ROLE = "generate"  # UAE's chat role for re-encoding a caption as a generation condition
LORA_DIR = "lora"  # a saved encoder's LoRA adapter lives here, beside the base weights
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class Encoder(CaptionSampling, CaptionScoring):
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

        device: default cuda if available, else cpu (`resolve_device`); dtype: default bf16 on cuda, fp32 on cpu.
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
        device = resolve_device(device)
        dtype = resolve_dtype(dtype, device)
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

            with seeded(seed, torch.device("cpu")):
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
        model, processor = build_tiny_qwen(image_size, seed, lora, text_width, text_layers, vision_width,
                                           vision_patch, cell_embedding)
        move_model(model, resolve_device(device), resolve_dtype(dtype, torch.device("cpu")))
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
        move_model(self.model, device, None if dtype is None else resolve_dtype(dtype, torch.device("cpu")))
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

    # ------------------------------------------------------------ prompts (captioning and scoring share them)

    def _prompt_text(self, prompt: str | None) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt or self.prompt}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _prompt_inputs(self, images: Sequence[ImageLike], prompt: str | None) -> dict[str, torch.Tensor]:
        """Processor output for image + instruction + assistant header, left-padded, on the model's device."""
        pil = [as_pil(im) for im in images]
        inputs = self.processor(text=[self._prompt_text(prompt)] * len(pil), images=pil, padding=True,
                                padding_side="left", return_tensors="pt")
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in inputs.items()}

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
        if isinstance(backbone, torch.nn.Module) and accepts_kwarg(backbone, "input_ids"):
            hidden = backbone(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
        else:
            hidden = core(input_ids=input_ids, attention_mask=mask.long(), output_hidden_states=True).hidden_states[-1]
        return (hidden, mask, n_cut) if return_truncated else (hidden, mask)
