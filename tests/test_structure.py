"""The package structure stays as designed: layers point one way, no import cycle, no module over 500 lines
(tools/check_structure.py, also runnable by hand)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_structure", ROOT / "tools" / "check_structure.py")
check_structure = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_structure)

pytestmark = pytest.mark.unit


def test_the_repository_has_no_layer_breach_no_import_cycle_and_no_module_over_500_lines():
    assert check_structure.problems(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"cli.py": "", "uae_data/__init__.py": "", "uae_eval/__init__.py": "",
                       "uae_train/__init__.py": "", **files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_checker_finds_an_upward_import_even_inside_a_function(tmp_path):
    root = _tree(tmp_path, {"uae_data/low.py": "def f():\n    from uae_train import high\n",
                            "uae_train/high.py": ""})
    assert check_structure.problems(root) == ["layer: uae_data.low imports uae_train.high (a higher layer)"]


def test_the_checker_finds_a_cycle_through_a_package_init_and_a_long_module(tmp_path):
    root = _tree(tmp_path, {"uae_eval/reg/__init__.py": "def build():\n    from uae_eval.reg import plug\n",
                            "uae_eval/reg/plug.py": "from uae_eval.reg import REGISTRY\n" + "x = 1\n" * 30})
    found = check_structure.problems(root, max_lines=20)
    assert found == ["cycle: uae_eval.reg <-> uae_eval.reg.plug", "size: uae_eval/reg/plug.py has 31 lines (> 20)"]
