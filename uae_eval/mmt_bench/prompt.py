"""The VLMEvalKit ImageMCQDataset prompt (facts §3); images go before this text."""
from __future__ import annotations

import math
import string


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def row_options(row) -> dict[str, str]:
    """The row's non-NaN option cells A..Z, in letter order."""
    return {c: str(row[c]) for c in string.ascii_uppercase if c in row and _present(row[c])}


def build_prompt(row) -> str:
    """Hint (only when present), Question, Options and the fixed instruction (note its space before \\n)."""
    text = ""
    if "hint" in row and _present(row["hint"]):
        text += f"Hint: {row['hint']}\n"
    text += f"Question: {row['question']}\n"
    options = row_options(row)
    if options:
        text += "Options:\n"
        for k, v in options.items():
            text += f"{k}. {v}\n"
        text += "Please select the correct answer from the options above. \n"
    return text
