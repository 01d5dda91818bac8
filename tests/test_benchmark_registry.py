"""The benchmark registry (uae_eval.benchmarks): adding a benchmark is one module plus one manifest, with no
edit to uae's files; the CLI, `uae validate` and `uae report` find it by name."""
from __future__ import annotations

import json
import os

import pytest

TOY = '''
"""Toy benchmark: how many sentences of the manifest have at least min_words words."""
from dataclasses import dataclass
from pathlib import Path

from uae_data.core.config import help_field, to_dict
from uae_eval.benchmarks import Benchmark, register
from uae_eval.results import Results, write_results


@dataclass
class ToyConfig:
    sentences: list[str] = help_field(["one", "two words", "three whole words"], help="sentences to score")
    min_words: int = help_field(2, help="a sentence passes with at least this many words")


def run(cfg, out):
    samples = [{"text": s, "words": len(s.split()), "correct": len(s.split()) >= cfg.min_words} for s in cfg.sentences]
    res = Results(benchmark="toy", benchmark_version="toy-1", model={"name": "word-counter", "path": None, "config": {}},
                  metrics={"pass_rate": sum(s["correct"] for s in samples) / len(samples),
                           "mean_words": sum(s["words"] for s in samples) / len(samples)},
                  primary_metric="pass_rate", higher_is_better=True, n_items=len(samples), config=to_dict(cfg))
    write_results(Path(out), res, samples)
    return res


def toy_tables(names):
    return [("Toy headline: pass rate", [n for n in names if n == "pass_rate"]),
            ("Toy details", [n for n in names if n != "pass_rate"])]


register(Benchmark("toy", ToyConfig, run, help="Toy: sentences with enough words", tables=toy_tables))
'''


@pytest.fixture
def toy(tmp_path):
    """(module path, manifest path) of the toy benchmark, written outside the repository."""
    module = tmp_path / "toy_bench.py"
    module.write_text(TOY)
    manifest = tmp_path / "toy.yaml"
    manifest.write_text("kind: toy\nsentences: [a, b c, d e f, g h i j]\nmin_words: 3\n")
    return module, manifest


@pytest.mark.integration
def test_a_toy_benchmark_module_and_manifest_join_eval_validate_and_report(uae, tmp_path, toy):
    module, manifest = toy
    env = {"UAE_BENCHMARKS": str(module), "COLUMNS": "200"}

    r = uae("eval", "--help", env=env)
    assert r.returncode == 0 and "toy" in r.stdout and "Toy: sentences with enough words" in r.stdout
    r = uae("eval", "toy", "--help", env=env)
    assert r.returncode == 0 and "Example: uae eval toy" in r.stdout and "[MANIFEST] [key=value ...]" in r.stdout

    r = uae("validate", str(manifest), env=env)
    assert r.returncode == 0, r.stderr
    assert f"{manifest} (toy)" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: toy\nmin_words: three\n")
    r = uae("validate", str(bad), env=env)
    assert r.returncode == 2 and "bad.yaml: min_words: expected an integer, got 'three'" in r.stderr

    out = tmp_path / "runs" / "toy"
    r = uae("eval", "toy", str(manifest), "--out", str(out), env=env)
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "results.json").read_text())
    assert data["benchmark"] == "toy" and data["metrics"] == {"pass_rate": 0.5, "mean_words": 2.5}
    assert "toy pass_rate=0.5  mean_words=2.5 over 4 items" in r.stdout  # the generic summary line
    r = uae("eval", "toy", str(manifest), "min_words=1", "--out", str(tmp_path / "runs" / "all"), env=env)
    assert r.returncode == 0 and json.loads((tmp_path / "runs" / "all" / "results.json").read_text())[
        "metrics"]["pass_rate"] == 1.0  # key=value overrides work as for every other command

    report = tmp_path / "report.html"
    r = uae("report", str(out), "--out", str(report), env=env)
    assert r.returncode == 0, r.stderr
    html = report.read_text()
    assert "Benchmark: toy" in html and "Toy headline: pass rate" in html and "Toy details" in html


@pytest.mark.integration
def test_without_its_module_the_toy_benchmark_is_unknown(uae, toy):
    r = uae("eval", "toy", str(toy[1]), "--out", "unused", env={"UAE_BENCHMARKS": ""})
    assert r.returncode == 2 and "No such command 'toy'" in r.stderr
    r = uae("validate", str(toy[1]), env={"UAE_BENCHMARKS": ""})
    assert r.returncode == 2 and "unknown kind 'toy'" in r.stderr


@pytest.mark.integration
def test_an_installed_plugin_is_found_through_its_entry_point(uae, tmp_path, toy):
    """A pip-installed benchmark package declares `[project.entry-points."uae.benchmarks"] toy = "toy_bench"`;
    the installed metadata (a .dist-info beside the module on the path) is all uae reads."""
    site = tmp_path / "site"
    (site / "toy_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "toy_bench.py").write_text(TOY)
    (site / "toy_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (site / "toy_plugin-0.1.dist-info" / "entry_points.txt").write_text("[uae.benchmarks]\ntoy = toy_bench\n")
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {"PYTHONPATH": path, "UAE_BENCHMARKS": "", "COLUMNS": "200"}
    r = uae("eval", "--help", env=env)
    assert r.returncode == 0 and "Toy: sentences with enough words" in r.stdout
    r = uae("validate", str(toy[1]), env=env)
    assert r.returncode == 0 and "(toy)" in r.stdout, r.stderr


@pytest.mark.integration
def test_a_plugin_list_naming_a_missing_module_is_one_line_and_spares_other_commands(uae, toy):
    env = {"UAE_BENCHMARKS": "no_such_benchmark_module"}
    r = uae("eval", "--help", env=env)
    assert r.returncode == 0 and "geneval" in r.stdout
    assert "UAE_BENCHMARKS: cannot import benchmark module 'no_such_benchmark_module'" in r.stderr
    r = uae("validate", str(toy[1]), env=env)
    assert r.returncode == 2 and "no_such_benchmark_module" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.unit
def test_builtin_benchmarks_declare_kind_default_manifest_and_tables():
    from uae_data.core.config import CONFIG_KINDS
    from uae_data.core.paths import manifests_dir
    from uae_eval.benchmarks import BUILTIN, find, generic_tables, load_all

    names = {b.name for b in load_all()}
    assert set(BUILTIN) <= names
    for name in BUILTIN:
        bench = find(name)
        assert CONFIG_KINDS[name] is bench.config  # the record is where the manifest kind comes from
        assert (manifests_dir() / bench.manifest).is_file()
    assert find("mmt-bench").tables is generic_tables and find("recon").tables is not generic_tables
    assert find("never-registered") is None


@pytest.mark.unit
def test_a_second_benchmark_with_a_taken_name_is_refused():
    from uae_data.core.errors import ConfigError
    from uae_eval.benchmarks import Benchmark, find, register

    taken = find("geneval")
    with pytest.raises(ConfigError, match="'geneval' is declared twice"):
        register(Benchmark("geneval", dict, lambda cfg, out: None))
    assert find("geneval") is taken
