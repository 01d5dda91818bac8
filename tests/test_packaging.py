"""The built wheel works without the source tree: manifests ship as package data and are found from anywhere."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.integration
def test_wheel_installed_elsewhere_finds_its_manifests(tmp_path):
    wheels, target, elsewhere = tmp_path / "wheel", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(wheels)], check=True,
                   capture_output=True, timeout=300)
    (wheel,) = wheels.glob("uae-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target), "OMP_NUM_THREADS": "1"}

    def uae(*args):
        return subprocess.run([sys.executable, "-c", "import cli; cli.main()", *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=600)

    where = subprocess.run([sys.executable, "-c", "import cli, uae_data.core.paths as p; print(cli.__file__, p.manifests_dir())"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert where.split() == [str(target / "cli.py"), str(target / "uae_manifests")]  # the wheel, not the checkout
    v = uae("validate")
    assert v.returncode == 0 and "geneval-scene.yaml (geneval)" in v.stdout and "uae_manifests/" in v.stdout, v.stderr
    g = uae("eval", "geneval", "images_per_prompt=1", "limit=12", "--out", "g")
    assert g.returncode == 0 and "overall=1.0000 over 12 images" in g.stdout, g.stderr
    d = uae("eval", "dpg-bench", "limit=4", "--out", "d")  # Scene-DPG's csv and prompts/ ship in the wheel
    assert d.returncode == 0 and "overall=100.00 over 3 images" in d.stdout, d.stderr
    c = uae("build-corpus", "--limit", "8", "--workers", "1", "--out", "c")
    assert c.returncode == 0 and "8 samples" in c.stdout, c.stderr
    m = uae("eval", "mmt-bench", "--model", "oracle", "limit=5", "--out", "m")
    assert m.returncode == 0 and "overall=1.0000" in m.stdout, m.stderr
