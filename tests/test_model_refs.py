"""Model references fail in seconds, in one line naming the option, when they cannot load offline."""
from __future__ import annotations

import pytest

from uae_data import model_refs
from uae_data.core.errors import ModelLoadError

OFFLINE = {"HF_HUB_OFFLINE": "1"}


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_refs.hub_reachable.cache_clear()
    yield
    model_refs.hub_reachable.cache_clear()


@pytest.mark.unit
def test_hub_name_offline_and_uncached_names_the_local_path_option(offline):
    with pytest.raises(ModelLoadError, match=r"^no-such-org/no-such-model: detector is not a local folder, not in the "
                                             r"Hugging Face cache.*offline.*with --det PATH$"):
        model_refs.require_model("no-such-org/no-such-model", "--det PATH", "detector")


@pytest.mark.unit
def test_missing_local_path_is_named_and_an_existing_one_passes(offline, tmp_path):
    with pytest.raises(ModelLoadError, match=r"nope/model: captioner folder not found; .* --caption-model"):
        model_refs.require_model(str(tmp_path / "nope/model"), "--caption-model", "captioner")
    assert model_refs.require_model(str(tmp_path), "--x") == str(tmp_path)
    with pytest.raises(ModelLoadError, match="CLIP checkpoint file not found"):
        model_refs.require_open_clip("ViT-B-32", str(tmp_path / "w.pt"), "filters.clip.pretrained")
    model_refs.require_open_clip("ViT-B-32", None, "x")  # random weights: nothing to fetch
    with pytest.raises(ModelLoadError, match=r"ViT-L-14 / openai: CLIP weights are not downloaded .* colour_options"):
        model_refs.require_open_clip("ViT-L-14", "openai", "colour_options.pretrained")


@pytest.mark.integration
def test_cli_hub_defaults_and_missing_folders_fail_fast(tmp_path, uae):
    r = uae("eval", "geneval", "manifests/eval/geneval-hf-mask2former.yaml", "--generator", "random",
            "--out", str(tmp_path / "g"), env=OFFLINE)
    assert r.returncode == 2 and "detector_options.model=PATH" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "g").exists()
    # the official manifest's detector is a file the user downloads: without it, one line naming the option
    r = uae("eval", "geneval", "manifests/eval/geneval-official.yaml", "--generator", "random",
            "--out", str(tmp_path / "g"), env=OFFLINE)
    assert r.returncode == 2 and "detector.checkpoint=PATH" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "g").exists()
    (tmp_path / "imgs").mkdir()
    r = uae("build-corpus", "--source", "folder", "--input", str(tmp_path / "imgs"), "--captioner", "hf",
            "--caption-model", str(tmp_path / "missing"), "--out", str(tmp_path / "c"), env=OFFLINE)
    assert r.returncode == 2 and "missing: not found (given with --caption-model)" in r.stderr and "--caption-model" in r.stderr
    assert not (tmp_path / "c").exists()
    r = uae("eval", "mmt-bench", "--model", "Qwen/Qwen2.5-VL-3B-Instruct", "--out", str(tmp_path / "m"), env=OFFLINE)
    assert r.returncode == 2 and "Qwen/Qwen2.5-VL-3B-Instruct" in r.stderr and "local folder" in r.stderr
