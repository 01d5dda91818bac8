"""Answer extraction for MMT-Bench: VLMEvalKit's can_infer, with its older rule sets.

Rule sets (facts §4 History):
- "vlmevalkit-2026": VK HEAD — last-4-tokens rule, 2x length cap, "answer is X" regex.
- "vlmevalkit-2025-08": as above without the regex (VK Aug 2025 – Jun 2026).
- "mmt-2024": MMT-Bench's 2024 copy — one letter anywhere wins, no length cap, no regex.
Returns a choice letter, "Z" (refusal / bare Z), or None (nothing found; the scorer
then uses Z, which is always wrong). VERBOSE mode of VK is not reproduced.
"""
from __future__ import annotations

import re
import string

RULE_SETS = ("vlmevalkit-2026", "vlmevalkit-2025-08", "mmt-2024")

_API_FAILURE = "Failed to obtain answer via API"
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
_PUNCT = ".()[],:;!*#{}"
_ANSWER_IS = re.compile(r"(?:correct )?answer is \**([A-D])", re.IGNORECASE)


def _option_rule(text: str, choices: list[str], rules: str) -> str | None:
    if _API_FAILURE in text:
        return None
    if any(r in text for r in _REFUSALS):
        return "Z"
    cleaned = text
    for ch in _PUNCT:
        cleaned = cleaned.replace(ch, " ")
    tokens = cleaned.split()
    found = [c for c in choices if c in tokens]
    if len(found) == 1:
        letter = found[0]
        if rules == "mmt-2024":
            return letter
        if tokens.index(letter) >= len(tokens) - 4:
            return letter
    elif not found and "Z" in tokens:
        return "Z"
    if rules == "vlmevalkit-2026":
        m = _ANSWER_IS.search(text)
        if m and m.group(1).upper() in choices:
            return m.group(1).upper()
    return None


def _text_rule(text: str, options: dict[str, str], rules: str) -> str | None:
    low = text.lower()
    if rules != "mmt-2024" and len(low) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    hits = [k for k, v in options.items() if str(v).lower() in low]
    return hits[0] if len(hits) == 1 else None


def extract_choice(prediction: str, options: dict[str, str], rules: str = "vlmevalkit-2026") -> str | None:
    """The letter a free-text `prediction` picks among `options` ({"A": text, ...}, non-NaN only)."""
    if rules not in RULE_SETS:
        raise ValueError(f"unknown rule set {rules!r}; choose one of {', '.join(RULE_SETS)}")
    text = str(prediction)
    choices = list(options)
    return _option_rule(text, choices, rules) or _text_rule(text, options, rules)
