"""Options that would be ignored are refused in one line, before anything runs or is written (issue 34 item 3),
eval --out folders holding another benchmark's results or unrelated files are refused (item 6), and a corpus
build refuses --workers < 1 and exits 2 when no row made it (item 7)."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("args,needle", [
    (["eval", "geneval", "--encoder", "{run}/encoder"], "--encoder without --decoder"),
    (["eval", "geneval", "--images", "{tmp}", "--generator", "random"], "--images with --generator"),
    (["eval", "geneval", "--detections", "{tmp}/d.jsonl", "--pipeline", "x"], "--detections with --pipeline"),
    (["eval", "geneval", "--generator", "random", "--decoder", "{run}/decoder"], "--generator with --decoder"),
    (["eval", "geneval", "--steps", "4"], "--steps without --decoder"),
    (["eval", "geneval", "--allow-partial"], "--allow-partial without --images or --detections"),
    (["eval", "mmt-bench", "--model", "random", "--encoder", "{run}/encoder"], "--encoder with --model random"),
    (["eval", "mmt-bench", "--predictions", "{tmp}/d.jsonl", "--model", "random"], "--predictions with --model"),
    (["eval", "mmt-bench", "--allow-missing"], "--allow-missing without --predictions"),
    (["eval", "recon", "--reconstructions", "{tmp}", "--decoder", "{run}/decoder"], "--reconstructions with --decoder"),
    (["eval", "recon", "--allow-partial"], "--allow-partial without --reconstructions"),
    (["build-corpus", "--input", "{tmp}"], "source.input"),
    (["build-corpus", "--caption-model", "{run}/encoder"], "captioner.model"),
])
def test_an_option_that_would_be_ignored_is_refused(args, needle, uae_in_process, tiny_run, tmp_path):
    (tmp_path / "d.jsonl").write_text("")
    out = tmp_path / "out"
    r = uae_in_process(*[a.format(run=tiny_run, tmp=tmp_path) for a in args], "--out", str(out))
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not out.exists()


def test_an_eval_out_holding_another_benchmarks_results_or_other_files_is_refused(uae_in_process, tmp_path):
    out = tmp_path / "run"
    assert uae_in_process("eval", "mmt-bench", "--model", "random", "--out", str(out)).returncode == 0
    before = (out / "results.json").read_text()
    r = uae_in_process("eval", "geneval", "--generator", "oracle", "--out", str(out))
    assert r.returncode == 2 and "holds results of mmt-bench" in r.stderr
    assert (out / "results.json").read_text() == before and not (out / "images").exists()
    assert uae_in_process("eval", "mmt-bench", "--model", "random", "--out", str(out)).returncode == 0  # same: rerun
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    r = uae_in_process("eval", "mmt-bench", "--model", "random", "--out", str(other))
    assert r.returncode == 2 and "notes.txt" in r.stderr and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("workers", ["0", "-3"])
def test_build_corpus_refuses_fewer_than_one_worker(workers, uae_in_process, tmp_path):
    r = uae_in_process("build-corpus", "--limit", "2", "--workers", workers, "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "--workers" in r.stderr and not (tmp_path / "c").exists()


def test_a_build_where_every_row_fails_exits_2_naming_the_commonest_reason(uae_in_process, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        (photos / f"{i}.png").write_bytes(b"not a png")
    out = tmp_path / "c"
    r = uae_in_process("build-corpus", "--source", "folder", "--input", str(photos), "--captioner", "keep",
                       "--workers", "1", "--out", str(out))
    assert r.returncode == 2 and "no sample made it" in r.stderr and "commonest reason" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and (out / "stats.parquet").is_file()  # kept to inspect


def test_a_run_that_fails_before_its_first_step_leaves_no_config_behind(uae_in_process, scene_corpus, tiny_run,
                                                                         tmp_path):
    """A decoder whose connector.safetensors is garbage fails after config.yaml was written: the folder goes, so
    the next good run into the same --out is not refused as "another config"."""
    import shutil

    init = tmp_path / "init"
    shutil.copytree(tiny_run, init)
    (init / "decoder" / "connector.safetensors").write_bytes(b"garbage" * 10)
    out = tmp_path / "run"
    r = uae_in_process("train", "stage1", "--init", str(init), "--corpus", str(scene_corpus(16, 32)), "--out", str(out))
    assert r.returncode == 2 and "connector.safetensors" in r.stderr and "--init" in r.stderr, r.stderr
    assert not out.exists()
