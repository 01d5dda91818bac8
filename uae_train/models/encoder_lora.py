"""The encoder's LoRA settings (UAE's: r 32, alpha 64 on every linear layer) as a peft LoraConfig."""
from __future__ import annotations

from typing import Any

LORA_DEFAULTS: dict[str, Any] = {"r": 32, "alpha": 64, "target_modules": "all-linear", "dropout": 0.0,
                                 "init": "gaussian"}  # UAE's encoder LoRA


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
