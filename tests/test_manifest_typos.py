"""A typo in any nested option of any shipped manifest fails `uae validate` (one ConfigError), not a run.

Every key below the top level of every shipped manifest is renamed in turn (key -> key_typo), and so is every
key of the demo manifests' stage overrides (`decoder_options={patch_size: 8}` -> `{patch_size_typo: 8}`).
"""
from __future__ import annotations

import copy
import importlib
from pathlib import Path

import pytest
import yaml

import cli
from uae_data.core.config import ConfigError, validate_manifest
from uae_eval.benchmarks import load_all

pytestmark = pytest.mark.unit
MANIFESTS = Path(cli.MANIFESTS)


@pytest.fixture(scope="module", autouse=True)
def kinds():
    for module in cli.CONFIG_MODULES:
        importlib.import_module(module)
    load_all()


def _nested_keys(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            if path:
                yield path + (key,)
            yield from _nested_keys(value, path + (key,))


def _renamed(data: dict, path: tuple) -> dict:
    data = copy.deepcopy(data)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[f"{path[-1]}_typo"] = node.pop(path[-1])
    return data


def _accepted(data: dict, tmp_path: Path, name: str) -> bool:
    (tmp_path / name).write_text(yaml.safe_dump(data))
    try:
        validate_manifest(tmp_path / name)
    except ConfigError:
        return False
    return True


def _shipped() -> list[tuple[Path, dict]]:
    out = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if isinstance(data, dict) and "kind" in data:
            out.append((path, data))
    return out


def test_every_nested_key_of_every_shipped_manifest_is_checked(tmp_path):
    tried, missed = 0, []
    for path, data in _shipped():
        assert _accepted(data, tmp_path, path.name), f"{path} itself does not validate"
        for keys in _nested_keys(data):
            tried += 1
            if _accepted(_renamed(data, keys), tmp_path, path.name):
                missed.append(f"{path.relative_to(MANIFESTS)}: {'.'.join(map(str, keys))}")
    assert not missed, f"typos that pass validation: {missed}"
    assert tried >= 30  # the shipped manifests hold this many nested keys (source, detector, metric options...)


def test_every_key_of_the_demo_stage_overrides_is_checked(tmp_path):
    tried, missed = 0, []
    for path, data in _shipped():
        if data["kind"] != "demo":
            continue
        for stage in ("pretrain", "stage1", "stage2"):
            for i, item in enumerate(data.get(stage) or []):
                key, raw = item.split("=", 1)
                variants = [f"{key}_typo={raw}"]
                value = yaml.safe_load(raw)
                if isinstance(value, dict):
                    variants += [f"{key}={yaml.safe_dump(_renamed(value, (k,)), default_flow_style=True).strip()}"
                                 for k in value]
                for variant in variants:
                    bad = copy.deepcopy(data)
                    bad[stage][i] = variant
                    tried += 1
                    if _accepted(bad, tmp_path, path.name):
                        missed.append(f"{path.name} {stage}: {variant}")
    assert not missed, f"typos that pass validation: {missed}"
    assert tried >= 40
