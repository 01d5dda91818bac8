"""The `uae` command line as a user meets it: help, validation, exit codes."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_help_lists_every_command(uae):
    r = uae("--help")
    assert r.returncode == 0
    for cmd in ("build-corpus", "train", "eval", "report", "check", "validate", "demo"):
        assert cmd in r.stdout


@pytest.mark.parametrize("cmd", [["build-corpus"], ["train", "pretrain"], ["train", "stage1"], ["train", "stage2"],
                                 ["eval", "geneval"], ["eval", "mmt-bench"], ["eval", "recon"], ["eval", "alignment"],
                                 ["report"], ["check"], ["validate"], ["demo"]])
def test_every_command_help_has_an_example(uae, cmd):
    r = uae(*cmd, "--help")
    assert r.returncode == 0 and "Example: uae" in r.stdout


def test_validate_accepts_every_shipped_manifest(uae):
    r = uae("validate")
    assert r.returncode == 0, r.stderr
    assert "manifests/corpus/scenes.yaml (corpus)" in r.stdout and "geneval-scene.yaml (geneval)" in r.stdout


def test_validate_names_file_and_field_of_a_bad_manifest(uae, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: geneval\nimages_per_prompt: four\n")
    r = uae("validate", str(bad))
    assert r.returncode == 2
    assert "bad.yaml: images_per_prompt: expected an integer, got 'four'" in r.stderr


def test_override_on_command_line_is_validated(uae, tmp_path):
    r = uae("build-corpus", "image_size=tiny", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "image_size: expected an integer" in r.stderr
    assert not (tmp_path / "c").exists()
