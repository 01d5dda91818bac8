"""The decoder's folder format: what `Decoder.save_pretrained` writes and `Decoder.from_pretrained` reads.

A saved decoder is decoder_config.json (DecoderConfig + format tag), connector.safetensors (connector and
pooled vector), scheduler/, transformer_lora.safetensors with LoRA, and, unless saved without its base,
transformer/ + vae/ as plain diffusers folders. Hub names resolve to a snapshot of only these files.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
from safetensors.torch import load_file, save_file
from torch import nn

from uae_data.core.errors import ModelLoadError

CONFIG_FILE = "decoder_config.json"
CONNECTOR_FILE = "connector.safetensors"
LORA_FILE = "transformer_lora.safetensors"
FORMAT = "uae-decoder"
FORMAT_VERSION = 1
# What a hub snapshot of a decoder needs (never the 9 GB T5 of an SD3 repo).
_HUB_PATTERNS = [CONFIG_FILE, CONNECTOR_FILE, LORA_FILE, "model_index.json", "transformer/*", "vae/*",
                 "scheduler/*", "text_encoder/*", "text_encoder_2/*", "tokenizer/*", "tokenizer_2/*"]


def resolve_folder(name_or_path: str | Path) -> Path:
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
    return resolve_folder(local)


def read_config(file: Path, known: set[str]) -> dict:
    """The DecoderConfig fields (`known`) recorded in a decoder_config.json; other keys are dropped."""
    try:
        record = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{file}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if record.get("format") != FORMAT:
        raise ModelLoadError(f"{file}: format {record.get('format')!r} is not {FORMAT!r}")
    return {k: v for k, v in record.items() if k in known}


def load_diffusers_parts(base: Path, torch_dtype: torch.dtype | None):
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


def empty_prompt_pooled(base: Path, dim: int) -> torch.Tensor | None:
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


def base_state_dict(transformer: nn.Module) -> dict[str, torch.Tensor]:
    """The DiT's weights without LoRA, under their original names (peft renames w → base_layer.w)."""
    out = {}
    for key, value in transformer.state_dict().items():
        if "lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value.detach().contiguous().cpu()
    return out


def save_decoder(decoder: nn.Module, path: str | Path, include_base: bool = True) -> Path:
    """`Decoder.save_pretrained`'s body (see its docstring)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if not include_base and not decoder.config.base_model:
        raise ValueError("include_base=False needs config.base_model: the DiT weights would be lost")
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(decoder.config)}
    record["lora_targets"] = list(decoder.config.lora_targets)
    (path / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    own = {f"connector.{k}": v for k, v in decoder.connector.state_dict().items()}
    own["pooled"] = decoder.pooled.detach()
    save_file({k: v.detach().contiguous().cpu() for k, v in own.items()}, str(path / CONNECTOR_FILE))
    decoder.scheduler.save_pretrained(path / "scheduler")
    if decoder.has_lora:
        from peft.utils import get_peft_model_state_dict

        lora = get_peft_model_state_dict(decoder.transformer)
        save_file({k: v.detach().contiguous().cpu() for k, v in lora.items()}, str(path / LORA_FILE))
    if include_base:
        if decoder.has_lora:
            decoder.transformer.save_config(path / "transformer")
            save_file(base_state_dict(decoder.transformer), str(path / "transformer" / "diffusion_pytorch_model.safetensors"))
        else:
            decoder.transformer.save_pretrained(path / "transformer")
        if decoder.vae is not None:
            decoder.vae.save_pretrained(path / "vae")
    return path


def load_own_weights(decoder: nn.Module, root: Path, lora: bool = True) -> None:
    """Connector, pooled vector and (lora: the folder was saved with one) LoRA of a saved folder into a decoder
    built from its config. With lora False a decoder's LoRA is a fresh one (stage 2 adding an adapter)."""
    own = load_file(str(root / CONNECTOR_FILE))
    decoder.connector.load_state_dict({k.removeprefix("connector."): v for k, v in own.items() if k != "pooled"})
    with torch.no_grad():
        decoder.pooled.copy_(own["pooled"])
    if decoder.has_lora and lora:
        if not (root / LORA_FILE).is_file():
            raise ModelLoadError(f"{root} records lora_rank={decoder.config.lora_rank} but has no {LORA_FILE}")
        from peft.utils import set_peft_model_state_dict

        result = set_peft_model_state_dict(decoder.transformer, load_file(str(root / LORA_FILE)))
        if getattr(result, "unexpected_keys", None):
            raise ModelLoadError(f"{root / LORA_FILE} does not match the LoRA config "
                                 f"({len(result.unexpected_keys)} unexpected keys)")
