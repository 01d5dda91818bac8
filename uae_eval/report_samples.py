"""The report's samples: a card grid (failures first) and, for reconstruction runs, rows of
original | caption | reconstruction (uae_eval.recon's samples: "original", "reconstructions", "caption").

`run` arguments are anything with a `.folder` (uae_eval.report.Run): image paths in samples.jsonl are relative
to the results folder (absolute paths are accepted too).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterable

from uae_eval.report_doc import Card, Triple
from uae_eval.report_plots import DB, metric_unit
from uae_eval.results import read_samples

THUMB = 256  # longest side of embedded sample images, pixels
MAX_TRIPLES = 12  # recon rows: the 10 worst first, then the two best


def _fmt(v: float) -> str:
    return ("inf" if v > 0 else "-inf") if abs(v) == float("inf") else f"{v:.4f}"


OK_WORDS = {"correct", "ok", "pass", "passed", "true", "yes", "success", "right", "match"}
BAD_WORDS = {"incorrect", "wrong", "fail", "failed", "false", "no", "failure", "error", "mismatch"}
TEXT_KEYS = ("prompt", "question", "caption", "inputs", "answer", "prediction", "target", "outputs", "tag")


def sample_ok(s: dict) -> bool | None:
    for key in ("decision", "correct"):
        d = s.get(key)
        if isinstance(d, bool):
            return d
        if isinstance(d, str) and d.strip().lower() in OK_WORDS | BAD_WORDS:
            return d.strip().lower() in OK_WORDS
    return None


def pick_samples(samples: Iterable[dict], n: int) -> list[tuple[int, dict]]:
    """Up to n samples, failures first, then unknown, then successes; those with an image preferred."""
    buckets = {(img, ok): [] for img in (True, False) for ok in (False, None, True)}
    for i, s in enumerate(samples):
        b = buckets[("image" in s and bool(s["image"]), sample_ok(s))]
        if len(b) < n:
            b.append((i, s))
    for img in (True, False):
        chosen = [x for ok in (False, None, True) for x in buckets[(img, ok)]]
        if chosen:
            return chosen[:n]
    return []


def thumbnail(path: Path) -> bytes | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            im.thumbnail((THUMB, THUMB))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def _short(v) -> str:
    s = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= 400 else s[:397] + "..."


def sample_cards(run, n: int) -> list[Card]:
    cards = []
    for i, s in pick_samples(read_samples(run.folder), n):
        ok = sample_ok(s)
        lines = [(k, _short(s[k])) for k in TEXT_KEYS if k in s and s[k] not in (None, "")]
        if s.get("reason") not in (None, ""):
            lines.append(("reason", _short(s["reason"])))
        png = None
        if s.get("image"):
            p = Path(s["image"])
            png = thumbnail(p if p.is_absolute() else run.folder / p)
            if png is None:
                lines.append(("image missing", str(s["image"])))
        if png is None and not lines and ok is None:
            continue  # e.g. a stage's eval rows: numbers only, already in the curves
        decision = str(s.get("decision", {True: "correct", False: "incorrect", None: "—"}[ok]))
        cards.append(Card(f"#{i}", ok, decision, lines, png))
    return cards


def _image(run, rel) -> bytes | None:
    if not rel:
        return None
    p = Path(rel)
    return thumbnail(p if p.is_absolute() else run.folder / p)


def is_recon_sample(s: dict) -> bool:
    return bool(s.get("original")) and bool(s.get("reconstructions") or s.get("reconstruction"))


def recon_triples(run, n: int) -> list[Triple]:
    """original | caption | reconstruction rows (samples are stored worst first): the n-2 worst, then the 2 best."""
    samples = [s for s in read_samples(run.folder) if is_recon_sample(s)]
    if len(samples) > n:
        best = min(2, n // 2)
        samples = samples[:n - best] + samples[len(samples) - best:]
    out = []
    for s in samples:
        rec = s.get("reconstruction") or (s.get("reconstructions") or [None])[0]
        scores = [(k, _fmt(float(v)) + (" dB" if metric_unit(k) == DB else ""))
                  for k, v in (s.get("metrics") or {}).items() if isinstance(v, (int, float, str))]
        title = f"#{s.get('rank_worst_first', len(out))} {s.get('key', '')}".strip()
        if s.get("caption_of"):
            title += f" (caption of {s['caption_of']})"
        out.append(Triple(title, _image(run, s["original"]), str(s.get("caption", "")), scores, _image(run, rec)))
    return out
