"""The pass-through `source.options` a source accepts: img2dataset's download() arguments (urls) and its
Resizer's options (folder, parquet, shards), read from img2dataset's own signatures.

Why a module of its own: SourceConfig.validate checks them before anything runs, and the sources check
them again when they build; both import this module, which imports no source (no import cycle).
"""
from __future__ import annotations

import inspect
import os
from typing import Any

from uae_data.core.errors import ConfigError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations (img2dataset) phones home on import

RESIZE_DEFAULTS = {"resize_mode": "border", "resize_only_if_bigger": False}
# Set by the urls source from the corpus config; a manifest may not override them.
OWNED = {"url_list", "output_folder", "output_format", "input_format", "url_col", "caption_col", "image_size",
         "encode_format", "number_sample_per_shard", "incremental_mode", "save_additional_columns"}


def resizer_option_names() -> set[str]:
    from img2dataset.resizer import Resizer

    names = set(inspect.signature(Resizer.__init__).parameters)
    return names - {"self", "image_size", "encode_format", "blurrer"}


def check_resize_options(options: dict[str, Any], where: str = "source.options") -> None:
    allowed = resizer_option_names()
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown resize option '{unknown[0]}' (known: {', '.join(sorted(allowed))})")


def check_download_options(options: dict[str, Any]) -> None:
    from img2dataset import download

    known = set(inspect.signature(download).parameters) - OWNED
    bad = sorted(set(options) - known)
    if bad:
        where = "set by uae" if bad[0] in OWNED else "unknown img2dataset option"
        raise ConfigError(f"source.options.{bad[0]}: {where} (allowed: {', '.join(sorted(known))})")


def check_source_options(name: str, options: dict[str, Any]) -> None:
    """source.options of source `name` (the scene source takes none)."""
    if name == "urls":
        check_download_options(options)
    elif name == "scenes":
        if options:
            raise ConfigError(f"source.options.{sorted(options)[0]}: the scenes source takes no options")
    else:
        check_resize_options(options)
