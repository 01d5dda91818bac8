"""A stock diffusers text-to-image pipeline as a decoder baseline.

Unified-Bench's baselines (SD3, FLUX, SANA, ...) paint from the caption text with their own text encoders;
`PipelineDecoder` puts them behind one call with per-image seeds, like `Decoder.generate`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from uae_data.core.errors import ModelLoadError


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
