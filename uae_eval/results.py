"""The one results schema every benchmark writes; `uae report` and `uae check` read only this.

A results folder holds:
  results.json   {schema_version, benchmark, benchmark_version, model: {name, path, config}, metrics: {name: number},
                  primary_metric, higher_is_better, metric_higher_is_better?, n_items, created (ISO 8601 UTC),
                  git_hash, versions, config, step, extra}
  samples.jsonl  one JSON object per item (inputs, outputs, decision, reason, ...); an optional "image" field is
                 a path relative to the results folder (absolute paths are accepted too) for the report's grid.

Numbers JSON cannot hold: metric values must be finite or +-inf (PSNR of identical images is inf); NaN is
rejected. Infinities are written as the JSON strings "inf" / "-inf" (and, outside metrics, NaN as "nan"), which
`float()` parses back; `read_results` turns metric strings back into floats. The files are strict JSON.

Directions: `higher_is_better` is the direction of the primary metric and the default for every metric;
`metric_higher_is_better` overrides it per metric (e.g. {"lpips": false} in a reconstruction run).
`step` (training step or None) lets a report plot metrics over steps across results of one benchmark.
"""
from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from uae_data.core.io import atomic_write
from uae_data.core.versions import git_hash, package_versions

__all__ = ["Results", "ResultsError", "write_results", "read_results", "read_samples", "results_file",
           "samples_file", "results_from_dict", "git_hash", "package_versions", "utc_now", "to_json_text",
           "SCHEMA_VERSION"]

SCHEMA_VERSION = 1
RESULTS_NAME = "results.json"
SAMPLES_NAME = "samples.jsonl"


class ResultsError(ValueError):
    """A results/baseline file is missing, not JSON, or breaks the schema. The message is one line for users."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Results:
    """One benchmark run. Harnesses fill the first nine fields; provenance fills itself when left out."""

    benchmark: str
    benchmark_version: str
    model: dict  # {name: str, path: str | None, config: dict}
    metrics: dict[str, float]
    primary_metric: str
    higher_is_better: bool
    n_items: int | None  # None only in baselines that did not record it
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    step: int | None = None
    metric_higher_is_better: dict[str, bool] = field(default_factory=dict)
    created: str | None = field(default_factory=utc_now)
    git_hash: str | None = field(default_factory=git_hash)
    versions: dict[str, str] = field(default_factory=lambda: dict(package_versions()))  # a copy: the source is cached

    def is_higher_better(self, metric: str) -> bool:
        return bool(self.metric_higher_is_better.get(metric, self.higher_is_better))

    @property
    def primary_value(self) -> float | None:
        return self.metrics.get(self.primary_metric)

    def to_dict(self) -> dict:
        """The results.json object (metric infinities still floats; `to_json_text` encodes them)."""
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}


# ---------------------------------------------------------------- encoding

def _encode(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats -> "inf"/"-inf"/"nan", numpy scalars/arrays -> Python, Path -> str."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # numpy scalar or array, torch tensor
        return _encode(obj.tolist())
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        return _encode(float(obj))
    return str(obj)


def to_json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON (no NaN/Infinity tokens) with non-finite numbers as strings."""
    return json.dumps(_encode(obj), indent=indent, allow_nan=False, ensure_ascii=False)


def write_results(out_dir: str | os.PathLike, results: Results, samples: Iterable[dict] = ()) -> Path:
    """Write samples.jsonl then results.json into `out_dir`, each atomically; returns the results.json path.

    results.json is written last, so its presence means the run is complete. Metrics are validated first
    (a NaN or a missing primary metric raises ResultsError before anything is written).
    """
    from uae_eval.scored_set import ScoredSet

    out = Path(out_dir)
    data = _encode(results.to_dict())
    results_from_dict(data, out / RESULTS_NAME)  # validate before writing anything
    scored = ScoredSet()

    def fill_samples(f) -> None:
        for i, s in enumerate(samples):
            if not isinstance(s, dict):
                raise ResultsError(f"{out / SAMPLES_NAME}: sample {i} must be a dict, got {type(s).__name__}")
            scored.add(s)
            f.write(to_json_text(s, indent=None) + "\n")

    atomic_write(out / SAMPLES_NAME, fill_samples)
    results.extra["scored"] = scored.record(bool(results.extra.get("partial")))  # what `uae check` compares
    data["extra"]["scored"] = results.extra["scored"]
    atomic_write(out / RESULTS_NAME, lambda f: f.write(json.dumps(data, indent=2, allow_nan=False,
                                                                   ensure_ascii=False) + "\n"))
    return out / RESULTS_NAME


# what a benchmark's unfinished run leaves that its rerun continues from (GenEval, DPG-Bench: images/ + generation.json)
RESUMES_FROM = {"geneval": {"images"}, "dpg-bench": {"images"}}


def claim_out(out_dir: str | os.PathLike, benchmark: str) -> None:
    """Refuse an --out that holds another benchmark's results or unrelated files (a run once overwrote GenEval's
    results.json with MMT-Bench's, beside GenEval's images); the same benchmark's results, or what its rerun
    continues from, may stay. Nothing is written here."""
    out = Path(out_dir)
    if not out.is_dir() or not any(out.iterdir()):
        return
    found = out / RESULTS_NAME
    if found.is_file():
        try:
            other = json.loads(found.read_text(encoding="utf-8")).get("benchmark")
        except (OSError, ValueError, AttributeError):
            other = None
        if other != benchmark:
            raise ResultsError(f"{out}: holds results of {other or 'something else'} ({found}), not {benchmark}; "
                               "choose another --out (nothing was written)")
        return
    strangers = sorted(p.name for p in out.iterdir() if p.name not in RESUMES_FROM.get(benchmark, set()))
    if strangers:
        raise ResultsError(f"{out}: is not empty ({', '.join(strangers[:3])}) and holds no {benchmark} run to "
                           "continue; choose another --out (nothing was written)")


# ---------------------------------------------------------------- reading

def results_file(path: str | os.PathLike) -> Path:
    """A results folder or a results.json path -> the results.json path."""
    p = Path(path)
    return p / RESULTS_NAME if p.is_dir() else p


def samples_file(path: str | os.PathLike) -> Path:
    """A results folder, results.json or samples.jsonl path -> the samples.jsonl path."""
    p = Path(path)
    if p.is_dir():
        return p / SAMPLES_NAME
    return p if p.suffix == ".jsonl" else p.with_name(SAMPLES_NAME)


def load_json(path: str | os.PathLike, what: str = "results") -> dict:
    """Parse a JSON object file; every failure is a one-line ResultsError naming the file."""
    p = Path(path)
    if p.is_dir():
        raise ResultsError(f"{p}: is a folder without {RESULTS_NAME}; give a results folder or a {what} JSON file")
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such file; give a results folder or a {what} JSON file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"{p}: cannot read ({e.__class__.__name__}: {e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{p}: must hold a JSON object, got {type(data).__name__}")
    return data


def read_results(path: str | os.PathLike) -> Results:
    """Read and validate a results folder or results.json file."""
    p = results_file(path)
    return results_from_dict(load_json(p), p)


def read_samples(path: str | os.PathLike) -> Iterator[dict]:
    """Stream the samples of a results folder (or of samples.jsonl directly); yields nothing when absent."""
    p = samples_file(path)
    if not p.exists():
        return
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ResultsError(f"{p}: line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise ResultsError(f"{p}: line {n}: must be a JSON object, got {type(rec).__name__}")
            yield rec


def _type_name(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _metric_value(v: Any, where: str) -> float:
    if isinstance(v, str) and v.strip().lower() == "nan":
        raise ResultsError(f"{where} is NaN; a metric must be a number or +-inf")
    if isinstance(v, str) and v.strip().lower() in ("inf", "+inf", "infinity", "-inf", "-infinity"):
        return float(v.strip().lower().replace("infinity", "inf"))
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ResultsError(f"{where} must be a number (or \"inf\"/\"-inf\"), got {_type_name(v)} {v!r}")
    v = float(v)
    if math.isnan(v):
        raise ResultsError(f"{where} is NaN; a metric must be a number or +-inf")
    return v


def results_from_dict(data: dict, source: str | os.PathLike = "<results>", partial: bool = False) -> Results:
    """Validate a results.json object. `partial` (baselines) lets `model` and `n_items` be absent."""
    src = str(source)

    def get(name: str, types: tuple, required: bool = True, default: Any = None, nullable: bool = False):
        if name not in data:
            if required:
                raise ResultsError(f"{src}: missing field '{name}'")
            return default
        v = data[name]
        if v is None and nullable:
            return None
        if isinstance(v, bool) and bool not in types or not isinstance(v, types):
            want = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
            raise ResultsError(f"{src}: field '{name}' must be {want}, got {_type_name(v)}")
        return v

    version = get("schema_version", (int,), required=False, default=SCHEMA_VERSION)
    if version > SCHEMA_VERSION:
        raise ResultsError(f"{src}: schema_version {version} is newer than this uae reads ({SCHEMA_VERSION}); upgrade uae")
    benchmark = get("benchmark", (str,))
    if not benchmark:
        raise ResultsError(f"{src}: field 'benchmark' must not be empty")
    raw_metrics = get("metrics", (dict,))
    metrics = {str(k): _metric_value(v, f"{src}: field 'metrics.{k}'") for k, v in raw_metrics.items()}
    primary = get("primary_metric", (str,))
    if primary not in metrics:
        raise ResultsError(f"{src}: field 'primary_metric' names {primary!r}, which is not in metrics "
                           f"({', '.join(metrics) or 'none'})")
    model = get("model", (dict,), required=not partial, default={})
    for key, types in (("name", (str,)), ("path", (str,)), ("config", (dict,))):
        if key in model and model[key] is not None and not isinstance(model[key], types):
            raise ResultsError(f"{src}: field 'model.{key}' must be {types[0].__name__} or null, "
                               f"got {_type_name(model[key])}")
    if not partial and not isinstance(model.get("name"), str):
        raise ResultsError(f"{src}: field 'model.name' must be a string, got {_type_name(model.get('name'))}")
    n_items = get("n_items", (int,), required=not partial, nullable=partial)
    if n_items is not None and n_items < 0:
        raise ResultsError(f"{src}: field 'n_items' must be >= 0, got {n_items}")
    directions = get("metric_higher_is_better", (dict,), required=False, default={})
    for k, v in directions.items():
        if not isinstance(v, bool):
            raise ResultsError(f"{src}: field 'metric_higher_is_better.{k}' must be true or false, got {_type_name(v)}")
    created = get("created", (str,), required=False, nullable=True)
    if created is not None:
        try:
            datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            raise ResultsError(f"{src}: field 'created' must be an ISO 8601 time, got {created!r}") from None
    versions = get("versions", (dict,), required=False, default={})
    return Results(
        benchmark=benchmark,
        benchmark_version=get("benchmark_version", (str,)),
        model=model,
        metrics=metrics,
        primary_metric=primary,
        higher_is_better=get("higher_is_better", (bool,)),
        n_items=n_items,
        config=get("config", (dict,), required=False, default={}),
        extra=get("extra", (dict,), required=False, default={}),
        step=get("step", (int,), required=False, nullable=True),
        metric_higher_is_better=dict(directions),
        created=created,
        git_hash=get("git_hash", (str,), required=False, nullable=True),
        versions={str(k): str(v) for k, v in versions.items()},
    )
