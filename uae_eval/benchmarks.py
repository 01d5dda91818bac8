"""The benchmark registry: a benchmark is one module that declares a `Benchmark` record; the CLI
(`uae eval NAME`), `uae validate` (the manifest kind) and `uae report` (its tables) find it by name.

A record says everything uae needs to run and show a benchmark (lm-evaluation-harness's idea of a task
found by name): its name (the `uae eval` command, the manifests' `kind:` and the results' `benchmark`),
its config dataclass, its harness `run(cfg, out, **inputs) -> Results`, how its metric names split into
report tables, the one line the CLI prints after a run, and its default manifest.

How a benchmark module is found, in this order:

1. built-in: `BUILTIN` below maps each of uae's own benchmarks to its module. It names modules instead of
   scanning the package because importing every uae_eval module would load torch and the metric
   backbones on every `uae` call; one line here is the price of a benchmark shipped inside uae.
2. installed plugins: the entry-point group `uae.benchmarks` (entry name = benchmark name, value = its
   module), declared in the plugin package's own pyproject:
   `[project.entry-points."uae.benchmarks"] toy = "my_pkg.toy_bench"`. This is how a pip-installable
   benchmark joins uae without any edit to uae's files.
3. `UAE_BENCHMARKS`: a comma-separated list of module names (importable from sys.path) or paths of
   .py files, for a benchmark that is just a file beside your data: no package, no install, no edit
   to uae (`UAE_BENCHMARKS=./toy_bench.py uae eval toy toy.yaml --out runs/toy`).

A manifest field naming the module was not chosen: `uae eval --help` must list a benchmark before any
manifest is read. A plugin whose name clashes with another benchmark's is refused in one line.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable

from uae_data.core.errors import ConfigError
from uae_data.core.registry import Registry

ENTRY_POINTS = "uae.benchmarks"
ENV = "UAE_BENCHMARKS"
BUILTIN: dict[str, str] = {
    "geneval": "uae_eval.geneval.benchmark",
    "mmt-bench": "uae_eval.mmt_bench.harness",
    "recon": "uae_eval.recon",
    "alignment": "uae_eval.alignment",
    "dpg-bench": "uae_eval.dpg_bench.benchmark",
}

MetricTables = list[tuple[str, list[str]]]


def generic_tables(names: list[str]) -> MetricTables:
    """Plain names in one table; names with a "prefix/" (MMT-Bench's "category/x") in one table per prefix."""
    plain = [n for n in names if "/" not in n]
    groups: dict[str, list[str]] = {}
    for n in names:
        if "/" in n:
            groups.setdefault(n.split("/", 1)[0], []).append(n)
    return ([("metrics", plain)] if plain else []) + list(groups.items())


def generic_summary(res: Any, out: Path) -> str:
    """`name k=v ... over N items -> out` with the plain metrics (no "prefix/" names, no CI bounds)."""
    shown = "  ".join(f"{k}={v:.4g}" for k, v in res.metrics.items()
                      if "/" not in k and not k.endswith(("_ci_low", "_ci_high")))
    return f"{res.benchmark} {shown} over {res.n_items} items -> {out}"


@dataclass(frozen=True)
class Benchmark:
    """One benchmark as uae finds it by name."""

    name: str  # the `uae eval` command, the manifests' `kind:`, the results' `benchmark`
    config: type  # dataclass config, loaded from the manifest (fields with help_field)
    run: Callable[..., Any]  # run(cfg, out, **inputs) -> Results; the generic command passes no inputs
    help: str = ""  # first line: the command's one-line help
    manifest: str | None = None  # default manifest, relative to manifests/ or absolute; None: MANIFEST required
    tables: Callable[[list[str]], MetricTables] = field(default=generic_tables)  # first table = headline
    summary: Callable[[Any, Path], str] = field(default=generic_summary)  # what the CLI prints after a run


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")


def register(bench: Benchmark) -> Benchmark:
    """Declare a benchmark (call it at the bottom of its module); its config becomes the manifest kind `name`."""
    if bench.name in BENCHMARKS:
        raise ConfigError(f"benchmark {bench.name!r} is declared twice ({BENCHMARKS.get(bench.name).run.__module__} "
                          f"and {bench.run.__module__}); rename one of them")
    from uae_data.core.config import config_kind  # here, not at the top: `uae --help` need not load YAML

    config_kind(bench.name)(bench.config)
    return BENCHMARKS.register(bench.name)(bench)


def _import(module: str, source: str) -> None:
    """Import a module name or a .py path; a missing one is a one-line error naming where it was listed."""
    try:
        if module.endswith(".py"):
            _import_file(Path(module))
        else:
            importlib.import_module(module)
    except (ImportError, FileNotFoundError) as e:
        raise ConfigError(f"{source}: cannot import benchmark module {module!r} ({e}); "
                          "fix the name or path, or remove it") from None


@functools.cache
def _import_file(path: Path) -> None:
    path = path.resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    name = f"uae_benchmark_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and type hints look the module up by name while it runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise


@functools.cache
def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINTS)}


def _env_modules() -> list[str]:
    return [m.strip() for m in os.environ.get(ENV, "").split(",") if m.strip()]


def _load_plugins(skip: Iterable[str] = ()) -> None:
    for name, module in _entry_points().items():
        if name not in skip and name not in BENCHMARKS:
            _import(module, f"entry point {ENTRY_POINTS}:{name}")
    for module in _env_modules():
        _import(module, ENV)


def find(name: str) -> Benchmark | None:
    """The benchmark called `name`, importing only its module when it is built in; None when no module declares it."""
    if name not in BENCHMARKS:
        if name in BUILTIN:
            importlib.import_module(BUILTIN[name])
        else:
            _load_plugins()
    return BENCHMARKS.get(name) if name in BENCHMARKS else None


def load_all(skip: Iterable[str] = ()) -> list[Benchmark]:
    """Every benchmark (built-in and plugins) except those named in `skip`, whose built-in modules stay unimported."""
    skip = set(skip)
    for name, module in BUILTIN.items():
        if name not in skip:
            importlib.import_module(module)
    _load_plugins(skip)
    return [BENCHMARKS.get(n) for n in BENCHMARKS.names() if n not in skip]


def tables(benchmark: str, names: list[str]) -> MetricTables:
    """Titled tables of a run's metric names (first = headline); unknown benchmarks get `generic_tables`."""
    bench = find(benchmark)
    return (bench.tables if bench else generic_tables)(list(names))
