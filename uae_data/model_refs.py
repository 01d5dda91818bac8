"""Check a model reference (local folder, or a hub name) before loading it, so a bad one fails in seconds.

Why: offline, transformers / diffusers / open_clip retry the hub for minutes and then print a paragraph;
a missing local folder is only noticed when the first item needs the model. `require_model` turns
both into one line that names the option to set, before any work starts.
"""
from __future__ import annotations

import functools
import os
import socket
import threading
from pathlib import Path

from uae_data.core.errors import ModelLoadError

HUB_HOST = "huggingface.co"


def looks_like_path(ref: str) -> bool:
    """A reference the hub could never resolve: absolute, ./ ../ ~, a backslash, or more than one '/'."""
    return (ref.startswith(("/", "./", "../", "~")) or "\\" in ref or ref.count("/") > 1
            or ref in (".", ".."))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """False when HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE is set or the hub host cannot be reached quickly."""
    if any(os.environ.get(k, "").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return False
    result: list[bool] = []

    def probe() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((HUB_HOST, 443), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout + 0.5)
    return bool(result and result[0])


def in_hub_cache(repo_id: str, filename: str = "config.json") -> bool:
    """True when the Hugging Face cache already holds `filename` of `repo_id` (loads offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id.rstrip("/"), filename), str)
    except Exception:  # noqa: BLE001  an invalid repo id is simply "not cached"
        return False


def require_model(ref: str | os.PathLike, option: str, what: str = "model",
                  cache_file: str | None = "config.json") -> str:
    """Return `ref` if it can load: an existing local path, a cached hub repo, or a hub name while online.

    Otherwise raise ModelLoadError naming `ref` and `option` (the flag or manifest field that takes a
    local path). `cache_file` is the file whose presence in the hub cache means "downloaded".
    """
    text = str(ref)
    if Path(text).expanduser().exists():
        return text
    if looks_like_path(text):
        raise ModelLoadError(f"{text}: {what} folder not found; give an existing local path with {option}")
    if cache_file is not None and in_hub_cache(text, cache_file):
        return text
    if not hub_reachable():
        raise ModelLoadError(f"{text}: {what} is not a local folder, not in the Hugging Face cache, and the hub "
                             f"cannot be reached (offline); download it where you have internet and pass its "
                             f"local folder with {option}")
    return text


def require_open_clip(model: str, pretrained: str | None, option: str) -> None:
    """The open_clip twin of `require_model`: a local folder/file, a cached or reachable hub copy, or no weights."""
    name = str(model)
    if name.startswith("hf-hub:"):
        require_model(name[len("hf-hub:"):], option, "open_clip model", "open_clip_config.json")
        return
    if name.startswith("local-dir:") or Path(name).is_dir():
        require_model(name.removeprefix("local-dir:"), option, "open_clip model", None)
        return
    if not pretrained:
        return  # random weights: nothing to download
    if Path(pretrained).expanduser().exists():
        return
    if looks_like_path(pretrained) or pretrained.endswith((".pt", ".bin", ".safetensors")):
        raise ModelLoadError(f"{pretrained}: CLIP checkpoint file not found; give an existing file with {option}")
    try:
        import open_clip

        tag = open_clip.get_pretrained_cfg(name, pretrained) or {}
    except Exception:  # noqa: BLE001  unknown names: open_clip's own error is one line
        return
    repo = (tag.get("hf_hub") or "").rstrip("/")
    if repo and any(in_hub_cache(repo, f) for f in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")):
        return
    if not hub_reachable():
        raise ModelLoadError(f"{name} / {pretrained}: CLIP weights are not downloaded and the hub cannot be reached "
                             f"(offline); download them where you have internet and give the local file with {option}")
