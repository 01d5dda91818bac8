"""`hf` captioner: any transformers image-text-to-text model (Qwen2.5-VL, LLaVA, ...) by hub name or folder.

Greedy, batched generation with the long-caption prompt and max_new_tokens from the manifest.
A caption is flagged truncated when generation stopped at max_new_tokens without an end token
(the transformers equivalent of vLLM's finish_reason == "length", facts/corpus.md §5): a cut
caption is kept but flagged, so training can drop or down-weight it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from uae_data.captioners.base import CAPTIONERS, Caption, CaptionerConfig
from uae_data.core.device import resolve_device
from uae_data.core.errors import ModelLoadError
from uae_data.sources import SourceItem

LONG_CAPTION_PROMPT = (
    "Describe this image in one long, dense paragraph. Name every visible object with its colour, size, material "
    "and count; say where each one is and how the objects relate to each other; transcribe any visible text; "
    "describe the background, the lighting and the style. Do not guess what is not visible."
)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@CAPTIONERS.register("hf")
class HFCaptioner:
    """Loads the model once per process (per actor under Ray); call it on lists of items."""

    def __init__(self, cfg: CaptionerConfig, seed: int) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if not cfg.model:
            raise ModelLoadError("captioner 'hf' needs captioner.model (a hub name or a local folder; CLI --caption-model)")
        from uae_data.model_refs import require_model

        require_model(cfg.model, "--caption-model (captioner.model)", "captioner")
        path = Path(cfg.model)
        if path.exists() and not (path / "config.json").is_file():
            raise ModelLoadError(f"{cfg.model}: not a model folder (no config.json)")
        self.cfg, self.seed, self.torch = cfg, seed, torch
        self.prompt = cfg.prompt or LONG_CAPTION_PROMPT
        opts: dict[str, Any] = dict(cfg.options)
        self.device = resolve_device(opts.pop("device", None))
        dtype = opts.pop("dtype", None) or ("bfloat16" if self.device.type == "cuda" else "float32")
        try:
            self.processor = AutoProcessor.from_pretrained(cfg.model)
            self.model = AutoModelForImageTextToText.from_pretrained(cfg.model, dtype=getattr(torch, dtype), **opts)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ModelLoadError(f"cannot load an image-text-to-text model from {cfg.model}: {_first_line(e)}") from None
        if getattr(self.processor, "chat_template", None) is None:
            raise ModelLoadError(f"{cfg.model}: its processor has no chat template; it cannot be prompted as a captioner")
        self.model.to(self.device).eval()
        tok = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        self.stops = set([eos] if isinstance(eos, int) else list(eos or []))
        if tok.eos_token_id is not None:
            self.stops.add(tok.eos_token_id)
        self.pad = self.model.generation_config.pad_token_id
        self.pad = self.pad if self.pad is not None else (tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    def _text(self) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def __call__(self, items: list[SourceItem]) -> list[Caption]:
        torch = self.torch
        out: list[Caption] = []
        text = self._text()
        bs = self.cfg.batch_size
        torch.manual_seed(self.seed)
        for k in range(0, len(items), bs):
            images = [it.pil() for it in items[k:k + bs]]
            inputs = self.processor(text=[text] * len(images), images=images, padding=True, padding_side="left",
                                    return_tensors="pt").to(self.device)
            with torch.no_grad():
                ids = self.model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=False,
                                          num_beams=1, pad_token_id=self.pad, eos_token_id=sorted(self.stops) or None)
            for row in ids[:, inputs["input_ids"].shape[1]:].tolist():
                end = next((j for j, t in enumerate(row) if t in self.stops), None)
                kept = row if end is None else row[:end]
                caption = self.processor.tokenizer.decode(kept, skip_special_tokens=True).strip()
                out.append(Caption(caption, model=self.cfg.model, truncated=end is None and len(row) >= self.cfg.max_new_tokens))
        return out
