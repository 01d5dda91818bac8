"""Per-layer image-side and text-side features of paired samples (`uae_data.pairs`), for `uae_eval.alignment`.

UniFork measures image/text alignment layer by layer; its exact features are unverified (facts
§4), so what each extractor pools is stated here, once:

- encoder (understanding direction): `output_hidden_states` of the VLM (index 0 = token embeddings, l = output
  of decoder layer l, as transformers returns them). Image side: the image fed with the captioning prompt,
  mean over the image-placeholder tokens. Text side: the caption fed alone as plain text (no chat
  template, no image), mean over its tokens.
- decoder (generation direction): forward pre-hooks on every joint transformer block of the MMDiT at a fixed
  noise level t on the noised original image (seeded noise), conditioned on the caption through the encoder
  and connector. Layer l = the input of block l (l = 0: patch embeddings and projected context), so the
  last block's output, which has no text stream (context_pre_only), is not a layer. Image side: the image
  stream, mean over patches; text side: the context stream, mean over real caption tokens.
- Y-fork: the hidden states along each task's layer path (0 = embeddings, before the final norm), on the
  task's own sequence: understanding = image tokens then caption, generation = caption then image
  tokens. Image side: mean over the 9 image tokens; text side: mean over the caption words.
Arrays are float32 numpy (N, D), one per layer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

LayerFeatures = dict[str, list[np.ndarray]]


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """hidden (B, T, H), mask (B, T) bool → (B, H) float32 mean over the masked tokens."""
    m = mask.to(hidden.device, hidden.dtype)[..., None]
    return ((hidden * m).sum(1) / m.sum(1).clamp(min=1)).float().cpu().numpy()


def _stack(chunks: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-batch lists of per-layer arrays → per-layer arrays over all batches."""
    return [np.concatenate(layer) for layer in zip(*chunks)]


@torch.no_grad()
def encoder_features(encoder, images: Sequence[Image.Image], captions: Sequence[str],
                     batch_size: int = 32) -> LayerFeatures:
    """Understanding direction of a VLM `Encoder` (see the module docstring)."""
    core = encoder._core()
    config = core.config
    image_token = getattr(config, "image_token_id", None)
    if image_token is None:
        image_token = getattr(config, "image_token_index")
    tok = encoder.tokenizer
    img_chunks, txt_chunks = [], []
    for i in range(0, len(images), batch_size):
        inputs = encoder._prompt_inputs(images[i:i + batch_size], None)
        hidden = core(**inputs, output_hidden_states=True).hidden_states
        img_mask = inputs["input_ids"] == image_token
        img_chunks.append([_masked_mean(h, img_mask) for h in hidden])
        text = tok(list(captions[i:i + batch_size]), add_special_tokens=False, padding=True, padding_side="right",
                   return_tensors="pt").to(encoder.device)
        hidden = core(input_ids=text["input_ids"], attention_mask=text["attention_mask"],
                      output_hidden_states=True).hidden_states
        txt_chunks.append([_masked_mean(h, text["attention_mask"].bool()) for h in hidden])
    return {"image": _stack(img_chunks), "text": _stack(txt_chunks)}


@torch.no_grad()
def decoder_features(decoder, encoder, images: Sequence[Image.Image], captions: Sequence[str],
                     timestep: float = 0.5, seed: int = 0, batch_size: int = 32) -> LayerFeatures:
    """Generation direction of a `Decoder` conditioned through `encoder.encode_text` (module docstring)."""
    size = decoder.image_size
    blocks = list(decoder.transformer.transformer_blocks)
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module, args, kwargs):
        captured.append((kwargs["hidden_states"], kwargs["encoder_hidden_states"]))

    handles = [b.register_forward_pre_hook(hook, with_kwargs=True) for b in blocks]
    img_chunks, txt_chunks = [], []
    try:
        for i in range(0, len(images), batch_size):
            batch = [im.resize((size, size)) for im in images[i:i + batch_size]]
            g = torch.Generator().manual_seed(seed * 1_000_003 + i)
            x = decoder.encode_images(batch, g)
            noise = torch.randn(x.shape, generator=g).to(x.device, x.dtype)
            x_t = (1 - timestep) * x + timestep * noise
            hidden, mask = decoder.reader(encoder).encode_text(list(captions[i:i + batch_size]))
            context = decoder.context(hidden.float(), mask)
            captured.clear()
            decoder.velocity_from_context(x_t, timestep, context)
            image_all = torch.ones(x.shape[0], captured[0][0].shape[1], dtype=torch.bool)
            img_chunks.append([_masked_mean(h, image_all) for h, _ in captured])
            txt_chunks.append([_masked_mean(c, context[1]) for _, c in captured])
    finally:
        for h in handles:
            h.remove()
    return {"image": _stack(img_chunks), "text": _stack(txt_chunks)}


@torch.no_grad()
def yfork_features(model, images: Sequence[Image.Image], captions: Sequence[str],
                   batch_size: int = 64) -> dict[str, LayerFeatures]:
    """{"understanding", "generation"} features of a `YFork` along each task's path (module docstring)."""
    v = model.vocab
    n_img = 9
    out: dict[str, LayerFeatures] = {}
    for task, name in (("und", "understanding"), ("gen", "generation")):
        img_chunks, txt_chunks = [], []
        for i in range(0, len(images), batch_size):
            codes = v.image.encode(images[i:i + batch_size])
            seqs, img_pos, txt_pos = [], [], []
            for c, text in zip(codes.tolist(), captions[i:i + batch_size]):
                if task == "und":
                    ids, bot = v.understanding(c, text)
                    img_pos.append(range(1, 1 + n_img))
                    txt_pos.append(range(bot + 1, len(ids) - 1))
                else:
                    ids, boi = v.generation(text, c)
                    img_pos.append(range(boi + 1, boi + 1 + n_img))
                    txt_pos.append(range(1, boi - 1))
                seqs.append(ids)
            length = max(map(len, seqs))
            ids = torch.full((len(seqs), length), v["<pad>"], dtype=torch.long)
            img_mask = torch.zeros(len(seqs), length, dtype=torch.bool)
            txt_mask = torch.zeros_like(img_mask)
            for r, s in enumerate(seqs):
                ids[r, :len(s)] = torch.tensor(s)
                img_mask[r, list(img_pos[r])] = True
                txt_mask[r, list(txt_pos[r])] = True
            _, hidden = model(ids.to(model.device), task, output_hidden_states=True)
            img_chunks.append([_masked_mean(h, img_mask) for h in hidden])
            txt_chunks.append([_masked_mean(h, txt_mask) for h in hidden])
        out[name] = {"image": _stack(img_chunks), "text": _stack(txt_chunks)}
    return out


def model_features(model_path: Path, pairs: list[dict], encoder_path: Path | None = None, timestep: float = 0.5,
                   seed: int = 0, batch_size: int = 32) -> tuple[dict[str, LayerFeatures], dict]:
    """(task features, model info) for a saved folder: an encoder (config.json) → understanding; a decoder
    (decoder_config.json; its encoder from `encoder_path` or the sibling encoder/) → generation; a Y-fork
    (yfork_config.json) → both. Raises ModelLoadError for anything else."""
    from uae_data.core.device import default_device
    from uae_data.core.errors import ModelLoadError
    from uae_train.models.decoder_files import CONFIG_FILE as DECODER_CONFIG
    from uae_train.models.yfork import CONFIG_FILE as YFORK_CONFIG

    path = Path(model_path)
    images, captions = [p["image"] for p in pairs], [p["caption"] for p in pairs]
    device = default_device()
    info = {"name": path.name, "path": str(path), "config": {"timestep": timestep}}
    if encoder_path is not None and not (path / DECODER_CONFIG).is_file():  # it would be ignored
        raise ModelLoadError(f"--encoder {encoder_path}: only a decoder --model reads an encoder, and {path} is not a "
                             "decoder folder; drop --encoder")
    if (path / YFORK_CONFIG).is_file():
        from uae_train.models.yfork import YFork

        model = YFork.from_pretrained(path, device=device)
        info["name"] = _yfork_name(path, model)
        return yfork_features(model, images, captions, batch_size), info
    from uae_train.models.factory import load_decoder, load_encoder

    if (path / DECODER_CONFIG).is_file():
        enc_path = Path(encoder_path) if encoder_path else path.parent / "encoder"
        encoder = load_encoder(enc_path, device)
        decoder = load_decoder(path, encoder.hidden_size, device)
        info["config"]["encoder"] = str(enc_path)
        info["name"] = f"decoder:{path.parent.name}/{path.name}"
        return {"generation": decoder_features(decoder, encoder, images, captions, timestep, seed, batch_size)}, info
    if (path / "config.json").is_file():
        encoder = load_encoder(path, device)
        info["name"] = f"encoder:{path.parent.name}/{path.name}"
        return {"understanding": encoder_features(encoder, images, captions, batch_size)}, info
    raise ModelLoadError(f"{path}: not an encoder, decoder or Y-fork folder (no config.json, "
                         f"{DECODER_CONFIG} or {YFORK_CONFIG})")


def _yfork_name(path: Path, model) -> str:
    """The training run's name (config.yaml beside model/) or a name from the architecture."""
    cfg_file = path.parent / "config.yaml"
    if cfg_file.is_file():
        import yaml

        name = (yaml.safe_load(cfg_file.read_text()) or {}).get("name")
        if name:
            return str(name)
    c = model.config
    return "shared" if c.fully_shared else f"yfork-{c.shared_layers}of{c.num_layers}"
