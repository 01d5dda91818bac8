"""What a result scored, recorded so `uae check` compares like with like.

A score over 6 of GenEval's 553 prompts, or over another question file, is another number; comparing it with
a baseline passes or fails by chance. Every results.json therefore records `extra.scored`: how many samples
it scored and the sha256 of their identities (the fields that say *which* item a sample is: prompt index
and text, question index and text and answer, image key ...; not outputs and not file paths, so the same
prompts scored from a folder or from a generator are the same set), plus whether it was partial.
"""
from __future__ import annotations

import hashlib
import json

# fields that identify an item across benchmarks (a sample has some of them); outputs and paths are not here
IDENTITY_KEYS = ("prompt_index", "image_index", "tag", "prompt", "index", "question", "answer", "key",
                 "item_id", "tile", "proposition_id")


class ScoredSet:
    """Fed every sample as it is written; `record()` is the `extra.scored` object."""

    def __init__(self) -> None:
        self.rows: list[str] = []

    def add(self, sample: dict) -> None:
        self.rows.append(json.dumps({k: sample[k] for k in IDENTITY_KEYS if k in sample}, sort_keys=True,
                                    default=str))

    def record(self, partial: bool) -> dict:
        digest = hashlib.sha256("\n".join(sorted(self.rows)).encode()).hexdigest()
        return {"samples": len(self.rows), "set_sha256": digest, "partial": bool(partial)}


def describe(scored: dict) -> str:
    return (f"{scored.get('samples')} samples, set {str(scored.get('set_sha256'))[:12]}"
            + (", partial" if scored.get("partial") else ""))


def mismatch(results_scored: dict | None, baseline_scored: dict | None, results_n: int | None,
             baseline_n: int | None) -> str | None:
    """Why the two cannot be compared, or None. A baseline without `scored` (hand-written, or older) is
    compared on n_items and partial only."""
    r, b = results_scored or {}, baseline_scored or {}
    if b and bool(r.get("partial")) != bool(b.get("partial")):
        return (f"the results are {'partial' if r.get('partial') else 'complete'} but the baseline is "
                f"{'partial' if b.get('partial') else 'complete'}: they scored different sets")
    if r and b:
        if r["set_sha256"] != b["set_sha256"]:
            return f"they scored different items (results: {describe(r)}; baseline: {describe(b)})"
        return None
    if results_n is not None and baseline_n is not None and results_n != baseline_n:
        return f"they scored different numbers of items (results: {results_n}, baseline: {baseline_n})"
    return None
