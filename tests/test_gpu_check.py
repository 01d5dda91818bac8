"""benchmarks/gpu_check.py at tiny size on CPU: the one-shot GPU check's every section runs (the same uae code
paths as the real run, tiny models of the same classes) and its result file has what the real one must have."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # subprocesses of the script, as the lead runs it

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("decoder_pretrain", "stage1_step", "stage2_step", "geneval_paint", "geneval_score")


@pytest.fixture(scope="module")
def gpu_check_report(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("gpu_check")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return (out / "gpu_check_cpu-tiny.txt").read_text()


def section(report: str, name: str) -> dict[str, str]:
    block = re.search(rf"^\[\d\] {name}\n((?:  .*\n?)*)", report, re.M)
    assert block, f"no section {name} in\n{report}"
    return dict(line.strip().split(": ", 1) for line in block.group(1).splitlines())


def test_gpu_check_tiny_every_section_reports_time_and_memory(gpu_check_report: str) -> None:
    for name in SECTIONS:
        fields = section(gpu_check_report, name)
        assert fields["status"] == "ok", (name, fields["status"])
        assert float(fields["time"].split()[0]) > 0, name
        assert float(fields["throughput"].split()[0]) > 0, name
        # on CPU memory is the process's peak RSS so far (documented in the script's docstring)
        assert re.match(r"\d+\.\d+ GiB \(cpu: process peak RSS so far\)", fields["peak memory"]), fields
        assert "error" not in fields["status"]


def test_gpu_check_header_names_device_versions_commit_date_and_real_shapes(gpu_check_report: str) -> None:
    head = gpu_check_report.split("\n[1]")[0]
    assert "device: cpu (cpu-tiny)" in head
    for package in ("torch", "transformers", "diffusers", "peft"):
        assert re.search(rf"{package} \d", head), package
    assert re.search(r"^git commit: \S+", head, re.M)
    assert re.search(r"^date: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", head, re.M)
    # the real run's sizes, counted on the meta device even by the tiny run
    shapes = re.search(r"^real shapes \(meta device\): (.*)$", head, re.M).group(1)
    assert "encoder 3.75B" in shapes and "DiT 2.24B" in shapes and "CLIP 428M" in shapes, shapes
    assert "324 image tokens" in shapes


def test_gpu_check_budget_skips_sections(tmp_path: Path) -> None:
    """A spent budget records 'skipped: budget' for every section, without building a model."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(tmp_path),
                           "--budget-s", "0", "--sections", "4,5"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (tmp_path / "gpu_check_cpu-tiny.txt").read_text()
    assert section(report, "geneval_paint")["status"] == "skipped: budget"
    assert section(report, "geneval_score")["status"] == "skipped: budget"
    assert "[1] decoder_pretrain" not in report
