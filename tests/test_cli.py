"""The `uae` command line as a user meets it: help, validation, exit codes.

Help pages and validation run in process (`uae_in_process`, conftest.py: the same parsing, rich help and
typer.Exit codes, without a Python start-up each); tests about the process itself (the entry point's exit
code, no traceback on stderr, an environment without CUDA, the installed version) start the real `uae`.
"""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_help_lists_every_command(uae_in_process):
    r = uae_in_process("--help")
    assert r.returncode == 0
    for cmd in ("build-corpus", "train", "eval", "report", "check", "validate", "demo"):
        assert cmd in r.stdout


@pytest.mark.parametrize("cmd", [["build-corpus"], ["train", "pretrain"], ["train", "stage1"], ["train", "stage2"],
                                 ["eval", "geneval"], ["eval", "mmt-bench"], ["eval", "recon"], ["eval", "alignment"],
                                 ["report"], ["check"], ["validate"], ["demo"]])
def test_every_command_help_has_an_example(uae_in_process, cmd):
    r = uae_in_process(*cmd, "--help")
    assert r.returncode == 0 and "Example: uae" in r.stdout


@pytest.mark.parametrize("group, example", [("train", "uae train stage1 --init out/pre"),
                                            ("eval", "uae eval mmt-bench --tsv MMT-Bench_VAL.tsv --predictions")])
def test_train_and_eval_group_pages_show_examples(uae_in_process, group, example):
    r = uae_in_process(group, "--help", env={"COLUMNS": "200"})
    assert r.returncode == 0 and "Examples:" in r.stdout and example in r.stdout


@pytest.mark.parametrize("cmd", [["build-corpus"], ["train", "pretrain"], ["train", "stage2"], ["eval", "geneval"],
                                 ["eval", "recon"], ["demo"]])
def test_manifest_overrides_are_explained_where_they_are_taken(uae_in_process, cmd):
    r = uae_in_process(*cmd, "--help", env={"COLUMNS": "200"})
    text = " ".join(r.stdout.split())
    assert "[MANIFEST] [key=value ...]" in text and "dotted keys reach nested sections" in text


def test_validate_accepts_every_shipped_manifest(uae_in_process):
    r = uae_in_process("validate")
    assert r.returncode == 0, r.stderr
    assert "manifests/corpus/scenes.yaml (corpus)" in r.stdout and "geneval-scene.yaml (geneval)" in r.stdout


def test_validate_names_file_and_field_of_a_bad_manifest(uae_in_process, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: geneval\nimages_per_prompt: four\n")
    r = uae_in_process("validate", str(bad))
    assert r.returncode == 2
    assert "bad.yaml: images_per_prompt: expected an integer, got 'four'" in r.stderr


def test_override_on_command_line_is_validated(uae_in_process, tmp_path):
    r = uae_in_process("build-corpus", "image_size=tiny", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "image_size: expected an integer" in r.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.integration
def test_version_prints_the_installed_version(uae):
    from importlib.metadata import version

    r = uae("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"uae {version('uae')}"


@pytest.mark.integration
@pytest.mark.parametrize("cmd", [["build-corpus", "manifests/corpus/scenes.yaml", "--limit", "2"],
                                 ["eval", "geneval", "--generator", "oracle", "limit=1"],
                                 ["train", "pretrain", "encoder_steps=1", "decoder_steps=1"],
                                 ["demo"]])
def test_out_pointing_at_a_file_is_one_line_and_the_file_is_kept(uae, tmp_path, cmd):
    target = tmp_path / "taken.txt"
    target.write_text("keep me\n")
    r = uae(*cmd, "--out", str(target))
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr
    assert target.read_text() == "keep me\n"


@pytest.mark.integration
def test_demo_scale_gpu_without_cuda_refuses_instead_of_running_on_cpu(uae, tmp_path):
    r = uae("demo", "--scale", "gpu", "--out", str(tmp_path / "d"), env={"CUDA_VISIBLE_DEVICES": ""})  # no CUDA
    assert r.returncode == 2 and "--scale gpu needs a CUDA device" in r.stderr
    assert not (tmp_path / "d").exists()
