"""Every option that takes a path, given a bad one, ends in exit 2 and one line on stderr naming it, with no
traceback and nothing written (uae_data.core.user_paths + cli.friendly).

The options are found from the Typer app (user_paths.path_options reads each command's signature), so a new
option is walked without being listed here. Tests run as root, where `chmod 000` does not stop a read: an
"unreadable" input here is a FIFO (a named pipe, not a file), and an "undecodable" one is random bytes.
"""
from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import pytest

import cli
from uae_data.core import user_paths

pytestmark = pytest.mark.unit


class NeedsCode:
    """Pickled by reference: loading it needs this module's code, which weights_only loaders refuse."""


def _commands():
    """(command words, callback) for every leaf command of the app."""
    from typer.main import get_command

    def walk(cmd, words):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, words + [name])
        else:
            yield words, cmd.callback

    return list(walk(get_command(cli.app), []))


def _pickled_run(tiny_run: Path, dest: Path, bin_file: bool) -> Path:
    """A copy of a saved run whose weight files hold a pickle that needs code: renamed to *.safetensors, or
    (bin_file) a pytorch_model.bin in place of model.safetensors."""
    shutil.copytree(tiny_run, dest)
    blob = pickle.dumps({"w": NeedsCode()})
    for f in dest.rglob("*.safetensors"):
        if bin_file and f.name == "model.safetensors":
            f.unlink()
            (f.parent / "pytorch_model.bin").write_bytes(blob)
        else:
            f.write_bytes(blob)
    return dest


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, scene_corpus, tiny_run):
    """The bad inputs (missing, folder, file, FIFO, garbage, pickled runs) and the good ones a command needs."""
    root = tmp_path_factory.mktemp("paths")
    (root / "folder").mkdir()
    (root / "folder" / "x.txt").write_text("x")
    (root / "file.txt").write_text("just text\n")
    (root / "garbage.bin").write_bytes(os.urandom(4096))
    os.mkfifo(root / "fifo")
    fake = root / "fake-shard"  # a corpus whose first shard is not a tar
    shutil.copytree(scene_corpus(16, 32), fake)
    sorted(fake.rglob("*.tar"))[0].write_bytes(os.urandom(4096))
    (root / "junk-images").mkdir()
    (root / "junk-images" / "a.png").write_bytes(os.urandom(4096))  # named as an image, not one
    results = root / "results"
    r = cli_run("eval", "mmt-bench", "--model", "random", "--out", str(results))
    assert r.returncode == 0, r.stderr
    return {"root": root, "corpus": scene_corpus(16, 32), "run": tiny_run, "results": results,
            "pickled": _pickled_run(tiny_run, root / "pickled", False),
            "pickled_bin": _pickled_run(tiny_run, root / "pickled_bin", True)}


def cli_run(*args: str):
    from tests.conftest import run_uae_in_process

    return run_uae_in_process(*args)


def _base(words: list[str], tested: str, inp: dict, out: Path) -> list[str]:
    """Good values for the options each command requires, except the one under test."""
    good = {"--out": str(out), "--corpus": str(inp["corpus"]), "--data": str(inp["corpus"]),
            "--init": str(inp["run"]), "RESULTS": str(inp["results"])}
    need = {"report": ["RESULTS", "--out"], "check": ["RESULTS", "--baseline"], "validate": [],
            "train stage1": ["--out", "--corpus", "--init"], "train stage2": ["--out", "--corpus", "--init"],
            "train pretrain": ["--out", "--corpus"], "train yfork": ["--out", "--corpus"],
            "eval recon": ["--out", "--data"], "eval alignment": ["--out", "--model", "--data"]}
    good["--model"] = str(inp["run"] / ("decoder" if tested == "--encoder" else "encoder"))
    good["--baseline"] = str(inp["results"] / "results.json")
    if words == ["report"]:
        good["--out"] = str(out) + ".html"
    args = list(words)
    if words == ["build-corpus"]:  # the options under test need their source / captioner; a small build
        args += ["--limit", "2"] + {"--input": ["--source", "folder", "--captioner", "keep"],
                                    "--caption-model": ["--captioner", "hf"]}.get(tested, [])
    for flag in need.get(" ".join(words), ["--out"]):
        if flag == tested:
            continue
        args += [good[flag]] if flag.isupper() else [flag, good[flag]]
    return args


def _cases(opt: user_paths.PathOption, inp: dict) -> list[tuple[str, str]]:
    root = inp["root"]
    if opt.kind == "output":
        return [("a file", str(root / "file.txt")), ("under a file", str(root / "file.txt" / "x")),
                ("read-only", str(root / "ro" / "out"))]
    if opt.kind == "output-file":
        return [("a folder", str(root / "folder")), ("under a file", str(root / "file.txt" / "x.json"))]
    cases = [("missing", str(root / "missing" / "x")), ("fifo", str(root / "fifo"))]
    if opt.kind in ("file", "args"):
        cases += [("a folder", str(root / "folder")), ("garbage", str(root / "garbage.bin"))]
    if opt.kind in ("folder", "model"):
        cases += [("a file", str(root / "file.txt"))]
    if opt.kind == "either":
        cases += [("garbage", str(root / "garbage.bin"))]
    if opt.flag in ("--corpus", "--data"):
        cases += [("fake shard", str(root / "fake-shard"))]
    if opt.flag == "--data":
        cases += [("undecodable image", str(root / "junk-images"))]
    if opt.kind == "model" or opt.flag in ("--init", "--encoder", "--decoder", "--model"):
        sub = "" if opt.flag == "--init" else "decoder" if opt.flag in ("--decoder", "--pipeline") else "encoder"
        cases += [("pickle renamed", str(inp["pickled"] / sub)), ("pytorch_model.bin pickle", str(inp["pickled_bin"] / sub))]
    return cases


def _all_cases():
    for words, fn in _commands():
        for opt in user_paths.path_options(fn):
            yield words, opt


@pytest.mark.parametrize("words,opt", list(_all_cases()), ids=lambda x: x.flag if hasattr(x, "flag") else " ".join(x))
def test_every_path_option_refuses_bad_paths_in_one_line_and_writes_nothing(words, opt, inputs, tmp_path, monkeypatch):
    real_statvfs = os.statvfs
    ro_root = inputs["root"] / "ro"
    ro_root.mkdir(exist_ok=True)

    def statvfs(path):  # a read-only mount cannot be made in a test: report one for ro/
        st = real_statvfs(path)
        if Path(path).resolve() == ro_root.resolve():
            return os.statvfs_result((*st[:8], st.f_flag | os.ST_RDONLY, st.f_namemax))
        return st

    monkeypatch.setattr(user_paths.os, "statvfs", statvfs)
    for label, value in _cases(opt, inputs):
        out = tmp_path / f"out-{label.replace(' ', '-')}"
        args = _base(words, opt.flag, inputs, out)
        args += [value] if opt.flag.isupper() or opt.kind == "args" else [opt.flag, value]
        r = cli_run(*args)
        what = f"{' '.join(words)} {opt.flag} {label}: {args}"
        assert r.returncode == 2, f"{what}: exit {r.returncode}\n{r.stdout[-500:]}\n{r.stderr[-2000:]}"
        lines = [ln for ln in r.stderr.strip().splitlines() if "%|" not in ln]  # progress bars are not errors
        assert len(lines) == 1 and "Traceback" not in r.stderr, f"{what}: {r.stderr[-2000:]}"
        assert not out.exists() or not any(out.iterdir()), f"{what}: wrote {sorted(out.iterdir())}"


def test_a_manifest_key_given_twice_is_refused_with_file_key_and_line(tmp_path):
    m = tmp_path / "dup.yaml"
    m.write_text("kind: corpus\nfilters:\n  min_side: 1\n  min_side: 2\n")
    r = cli_run("validate", str(m))
    assert r.returncode == 2 and "line 4" in r.stderr and "min_side" in r.stderr and str(m) in r.stderr


@pytest.mark.parametrize("override", ["detector.checkpoint", "filters.clip.pretrained"])
def test_a_pickle_given_by_override_is_refused_in_one_line(override, inputs, tmp_path):
    bad = inputs["root"] / "weights.pt"
    bad.write_bytes(pickle.dumps({"w": NeedsCode()}))
    words = ["eval", "geneval", "manifests/eval/geneval-official.yaml", "--generator", "random"] if override.startswith("detector") else ["build-corpus", "--limit", "2",
                                                                          "filters.clip.model=ViT-B-32"]
    r = cli_run(*words, f"{override}={bad}", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "weights.pt" in r.stderr


def test_a_refused_model_after_a_good_one_is_one_line_with_no_loading_bar(inputs, tmp_path, uae):
    """The encoder loads (transformers draws its "Loading weights" bar), then the decoder's pickle is refused:
    stderr, a pipe here, holds the error line alone."""
    r = uae("eval", "recon", "manifests/eval/recon-scene.yaml", "--data", str(inputs["corpus"]), "--encoder",
            str(inputs["run"] / "encoder"), "--decoder", str(inputs["pickled"] / "decoder"), "--out",
            str(tmp_path / "o"), "limit=2", env={"HF_HUB_DISABLE_PROGRESS_BARS": ""})
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o").exists()
