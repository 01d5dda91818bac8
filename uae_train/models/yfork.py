"""UniFork's Y-shaped model: shared shallow transformer layers, task-specific deep branches.

UniFork (facts/unified_grpo.md §4) forks Qwen2: the first layers are shared, the understanding branch
(image → text) keeps the original top layers, the generation branch (text → image) gets a copy of them plus
its own RMSNorm, and both are trained by next-token prediction over text + VQ image tokens. Here the same
layout is built from Qwen2's own `Qwen2DecoderLayer` over a joint vocabulary (scene caption words + scene
image codes); `shared_layers == num_layers` is the fully shared baseline of the same depth and width (one
stack, one norm; the Y-fork has the extra parameters of its second branch).

Sequences (right-padded; causal attention, so padding never reaches a real token):
  understanding  <boi> i1..i9 <eoi> <bot> w1..wn <eot>     loss on w1..wn <eot>
  generation     <bot> w1..wn <eot> <boi> i1..i9 <eoi>     loss on i1..i9
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn

from uae_data.core.errors import ModelLoadError
from uae_data.scenes import COLORS, GRID, SHAPES, SIZES, Scene, SceneObject, render, render_array, scene_vocabulary, tokenize_words

CONFIG_FILE = "yfork_config.json"
WEIGHTS_FILE = "model.safetensors"
TASKS = ("und", "gen")
SPECIALS = ("<pad>", "<unk>", "<boi>", "<eoi>", "<bot>", "<eot>")
PROMPT_WORDS = ("a", "an", "photo", "of")  # GenEval-style short prompts ("a photo of two red circles")
_PUNCT = (".", ",", ":", ";", "!", "?")


# ---------------------------------------------------------------- tokenizers

class SceneImageTokenizer:
    """Exact image tokenizer of the scene world: one token per grid cell (9 per image).

    It stands in for VILA-U's VQ tokenizer that UniFork uses: a VQ tokenizer maps each patch to its
    nearest codebook entry; here a patch is one grid cell and the codebook is every appearance a cell can
    have (empty, or a shape × colour × size glyph: 211 codes), assigned by nearest rendered template in
    pixel L2. Flat colours make it lossless on scene renders, and any other image still gets its
    nearest codes. A per-pixel palette map was rejected: at 64 px a cell would need ~16 tokens to keep a
    star apart from a circle, too long a sequence for CPU training.
    """

    def __init__(self, image_size: int = 64) -> None:
        self.image_size = image_size
        self.codes: list[tuple[str, str, str] | None] = [None] + [(s, c, z) for s in SHAPES for c in COLORS for z in SIZES]

    def __len__(self) -> int:
        return len(self.codes)

    @staticmethod
    @lru_cache(maxsize=4)
    def _templates(image_size: int) -> tuple[tuple[tuple[int, int, int, int], np.ndarray], ...]:
        """Per cell: its pixel box and (codes, h, w, 3) int32 renders of every code in that cell."""
        cell = image_size / GRID
        out = []
        for r in range(GRID):
            for c in range(GRID):
                y0, y1 = int(r * cell), min(image_size, int(np.ceil((r + 1) * cell)))
                x0, x1 = int(c * cell), min(image_size, int(np.ceil((c + 1) * cell)))
                crops = [render_array(Scene(()), image_size)[y0:y1, x0:x1]]
                for s in SHAPES:
                    for col in COLORS:
                        for z in SIZES:
                            img = render_array(Scene((SceneObject(s, col, z, r, c),)), image_size)
                            crops.append(img[y0:y1, x0:x1])
                out.append(((y0, y1, x0, x1), np.stack(crops).astype(np.int32)))
        return tuple(out)

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """(B, 9) code ids, cells in row-major order; images are resized to image_size first."""
        rows = []
        for im in images:
            arr = np.asarray(im.convert("RGB").resize((self.image_size, self.image_size), Image.NEAREST), np.int32)
            row = []
            for (y0, y1, x0, x1), tmpl in self._templates(self.image_size):
                dist = ((tmpl - arr[y0:y1, x0:x1][None]) ** 2).sum(axis=(1, 2, 3))
                row.append(int(dist.argmin()))
            rows.append(row)
        return torch.tensor(rows, dtype=torch.long)

    def to_scene(self, codes: Sequence[int]) -> Scene:
        objs = []
        for cell, code in enumerate(codes):
            spec = self.codes[int(code)]
            if spec is not None:
                objs.append(SceneObject(spec[0], spec[1], spec[2], cell // GRID, cell % GRID))
        return Scene(tuple(objs))

    def decode(self, codes: torch.Tensor | Sequence[Sequence[int]], size: int | None = None) -> list[Image.Image]:
        """RGB renders of (B, 9) code ids."""
        return [render(self.to_scene(list(map(int, row))), size or self.image_size) for row in codes]


class SceneTextTokenizer:
    """Word-level ids over the scene caption words + GenEval prompt words (`uae_data.scenes.tokenize_words`)."""

    def __init__(self) -> None:
        self.words = sorted(set(scene_vocabulary()) | set(PROMPT_WORDS))
        self.index = {w: i for i, w in enumerate(self.words)}

    def encode(self, text: str) -> list[int]:
        """Word indices (not yet offset into the joint vocabulary); unknown words → -1 (the caller's <unk>)."""
        return [self.index.get(w, -1) for w in tokenize_words(text)]

    def decode(self, ids: Sequence[int]) -> str:
        text = " ".join(self.words[i] for i in ids)
        for p in _PUNCT:
            text = text.replace(" " + p, p)
        return text


class JointVocab:
    """Specials, then text words, then image codes: one id space for the transformer."""

    def __init__(self, image_size: int = 64) -> None:
        self.text = SceneTextTokenizer()
        self.image = SceneImageTokenizer(image_size)
        self.special = {s: i for i, s in enumerate(SPECIALS)}
        self.text_offset = len(SPECIALS)
        self.image_offset = self.text_offset + len(self.text.words)
        self.size = self.image_offset + len(self.image)

    def __getitem__(self, special: str) -> int:
        return self.special[special]

    def text_ids(self, text: str) -> list[int]:
        return [self.text_offset + i if i >= 0 else self["<unk>"] for i in self.text.encode(text)]

    def understanding(self, codes: Sequence[int], text: str | None) -> tuple[list[int], int]:
        """(ids, index of <bot>): image then caption; text None gives the captioning prompt only."""
        ids = [self["<boi>"], *(self.image_offset + int(c) for c in codes), self["<eoi>"], self["<bot>"]]
        bot = len(ids) - 1
        if text is not None:
            ids += [*self.text_ids(text), self["<eot>"]]
        return ids, bot

    def generation(self, text: str, codes: Sequence[int] | None) -> tuple[list[int], int]:
        """(ids, index of <boi>): caption then image; codes None gives the generation prompt only."""
        ids = [self["<bot>"], *self.text_ids(text), self["<eot>"], self["<boi>"]]
        boi = len(ids) - 1
        if codes is not None:
            ids += [*(self.image_offset + int(c) for c in codes), self["<eoi>"]]
        return ids, boi


# ---------------------------------------------------------------- model

@dataclass
class YForkModelConfig:
    """Architecture of a Y-fork; saved as yfork_config.json beside the weights."""

    hidden_size: int = 64
    num_layers: int = 4
    shared_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    max_positions: int = 512
    image_size: int = 64
    rope_theta: float = 10000.0

    def validate(self) -> None:
        if not 1 <= self.shared_layers <= self.num_layers:
            raise ValueError(f"shared_layers must be in 1..num_layers={self.num_layers}, got {self.shared_layers}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, and num_heads by num_kv_heads")

    @property
    def fully_shared(self) -> bool:
        return self.shared_layers == self.num_layers


class YFork(nn.Module):
    """Shared Qwen2 layers + an understanding and a generation branch (see the module docstring)."""

    def __init__(self, config: YForkModelConfig, seed: int = 0) -> None:
        super().__init__()
        from transformers import Qwen2Config
        from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer, Qwen2RMSNorm, Qwen2RotaryEmbedding

        config.validate()
        self.config = config
        self.vocab = JointVocab(config.image_size)
        self.qwen_config = Qwen2Config(
            vocab_size=self.vocab.size, hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads, max_position_embeddings=config.max_positions,
            rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
            bos_token_id=None, eos_token_id=None, pad_token_id=0)
        self.qwen_config._attn_implementation = "sdpa"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers = [Qwen2DecoderLayer(self.qwen_config, i) for i in range(config.num_layers)]
            self.embed = nn.Embedding(self.vocab.size, config.hidden_size)
            self.lm_head = nn.Linear(config.hidden_size, self.vocab.size, bias=False)
            for module in [self.embed, self.lm_head, *layers]:
                for m in module.modules():
                    if isinstance(m, (nn.Linear, nn.Embedding)):
                        nn.init.normal_(m.weight, std=0.02)
                        if getattr(m, "bias", None) is not None:
                            nn.init.zeros_(m.bias)
        s = config.shared_layers
        self.shared = nn.ModuleList(layers[:s])
        top = nn.ModuleList(layers[s:])
        # UniFork: the generation branch starts as a copy of the understanding top layers, with its own norm.
        self.branches = nn.ModuleDict({"und": top, "gen": copy.deepcopy(top)}) if not config.fully_shared else None
        self.norms = nn.ModuleDict({t: Qwen2RMSNorm(config.hidden_size, eps=self.qwen_config.rms_norm_eps)
                                    for t in (("und",) if config.fully_shared else TASKS)})
        self.rotary = Qwen2RotaryEmbedding(self.qwen_config)

    # ------------------------------------------------------------ structure
    def task_layers(self, task: str) -> list[nn.Module]:
        """The layer path of a task: shared layers, then the task's branch (none when fully shared)."""
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        return [*self.shared, *(self.branches[task] if self.branches is not None else [])]

    def norm(self, task: str) -> nn.Module:
        return self.norms[task] if task in self.norms else self.norms["und"]

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def forward(self, input_ids: torch.Tensor, task: str, output_hidden_states: bool = False,
                past_key_values=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(logits (B, T, V), hidden states) along `task`'s path; hidden[0] = embeddings, hidden[l] = output
        of layer l (before the final norm), filled only with output_hidden_states."""
        from transformers.masking_utils import create_causal_mask

        x = self.embed(input_ids)  # (B, T, H)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        position_ids = (torch.arange(input_ids.shape[1], device=x.device) + past)[None]
        mask = create_causal_mask(config=self.qwen_config, inputs_embeds=x, attention_mask=None,
                                  past_key_values=past_key_values, position_ids=position_ids)
        rope = self.rotary(x, position_ids)
        hidden = [x] if output_hidden_states else []
        for layer in self.task_layers(task):
            x = layer(x, attention_mask=mask, position_ids=position_ids, past_key_values=past_key_values,
                      use_cache=past_key_values is not None, position_embeddings=rope)
            if output_hidden_states:
                hidden.append(x)
        return self.lm_head(self.norm(task)(x)), hidden

    # ------------------------------------------------------------ training
    def loss(self, ids: torch.Tensor, labels: torch.Tensor, task: str) -> tuple[torch.Tensor, float]:
        """(mean next-token cross-entropy on labelled positions, their token accuracy); labels -100 = ignored."""
        logits, _ = self(ids.to(self.device), task)
        labels = labels.to(self.device)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        keep = labels != -100
        acc = float((logits.argmax(-1)[keep] == labels[keep]).float().mean()) if keep.any() else 0.0
        return loss, acc

    # ------------------------------------------------------------ inference
    def _decode(self, prefix: torch.Tensor, task: str, steps: int, allowed: torch.Tensor,
                generators: list[torch.Generator] | None, temperature: float, stop: int | None) -> torch.Tensor:
        """(B, ≤steps) tokens after a same-length prefix (B, P): greedy, or sampled per row from its generator."""
        from transformers import DynamicCache

        cache = DynamicCache(config=self.qwen_config)
        logits, _ = self(prefix.to(self.device), task, past_key_values=cache)
        out, done = [], torch.zeros(prefix.shape[0], dtype=torch.bool)
        for _ in range(steps):
            step = logits[:, -1].float().cpu().masked_fill(~allowed, float("-inf"))
            if generators is None:
                nxt = step.argmax(-1)
            else:
                probs = torch.softmax(step / temperature, -1)
                nxt = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])
            if stop is not None:
                nxt = torch.where(done, torch.full_like(nxt, stop), nxt)
                done |= nxt == stop
            out.append(nxt)
            if stop is not None and bool(done.all()):
                break
            logits, _ = self(nxt[:, None].to(self.device), task, past_key_values=cache)
        return torch.stack(out, 1)

    @torch.no_grad()
    def caption(self, images: Sequence[Image.Image], max_new_tokens: int = 200, batch_size: int = 64) -> list[str]:
        """Greedy captions (image → text through the understanding branch), restricted to text tokens."""
        v = self.vocab
        allowed = torch.zeros(v.size, dtype=torch.bool)
        allowed[v.text_offset:v.image_offset] = True
        allowed[v["<eot>"]] = True
        texts: list[str] = []
        for i in range(0, len(images), batch_size):
            codes = v.image.encode(images[i:i + batch_size])
            prefix = torch.tensor([v.understanding(row.tolist(), None)[0] for row in codes])
            out = self._decode(prefix, "und", max_new_tokens, allowed, None, 1.0, v["<eot>"])
            for row in out.tolist():
                end = row.index(v["<eot>"]) if v["<eot>"] in row else len(row)
                texts.append(v.text.decode([t - v.text_offset for t in row[:end] if v.text_offset <= t < v.image_offset]))
        return texts

    @torch.no_grad()
    def generate_codes(self, prompts: Sequence[str], seeds: Sequence[int], temperature: float = 1.0) -> torch.Tensor:
        """(B, 9) image codes sampled through the generation branch; row i from its own seed."""
        v = self.vocab
        allowed = torch.zeros(v.size, dtype=torch.bool)
        allowed[v.image_offset:] = True
        result = torch.zeros(len(prompts), GRID * GRID, dtype=torch.long)
        by_length: dict[int, list[int]] = {}
        prefixes = [v.generation(p, None)[0] for p in prompts]
        for i, p in enumerate(prefixes):
            by_length.setdefault(len(p), []).append(i)
        for rows in by_length.values():  # same-length prefixes batch without padding
            gens = [torch.Generator().manual_seed(int(seeds[i])) for i in rows]
            out = self._decode(torch.tensor([prefixes[i] for i in rows]), "gen", GRID * GRID, allowed,
                               gens if temperature > 0 else None, max(temperature, 1e-6), None)
            result[rows] = out - v.image_offset
        return result

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], temperature: float = 1.0,
                 size: int | None = None) -> list[Image.Image]:
        """Images for prompts (text → image tokens → exact render); `generate(prompts, seeds)` for harnesses."""
        return self.vocab.image.decode(self.generate_codes(prompts, seeds, temperature), size)

    # ------------------------------------------------------------ saving
    def save_pretrained(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, path / WEIGHTS_FILE)
        (path / CONFIG_FILE).write_text(json.dumps({"format": "uae-yfork", **asdict(self.config)}, indent=2) + "\n")
        return path

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> "YFork":
        path = Path(path)
        if not (path / CONFIG_FILE).is_file():
            raise ModelLoadError(f"{path} is not a Y-fork folder (no {CONFIG_FILE})")
        raw = json.loads((path / CONFIG_FILE).read_text())
        raw.pop("format", None)
        model = cls(YForkModelConfig(**raw))
        model.load_state_dict(load_file(path / WEIGHTS_FILE))
        return model.to(device).eval()
