"""Pretraining recipe on the scene corpus: the metric moves, and --resume continues bit for bit."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from uae_data.core.config import ConfigError, load_config
from uae_train.stages.pretrain import PretrainConfig, pretrain

from conftest import ROOT


@pytest.fixture(scope="module")
def corpus(scene_corpus):
    return scene_corpus(200, 32)


def cfg(corpus, *over):
    return load_config(PretrainConfig, ROOT / "manifests/train/pretrain-scene.yaml",
                       [f"corpus={corpus}", "image_size=32", "batch_size=4", "warmup_steps=2", "log_every=1", *over],
                       kind="pretrain")


DECODER_RUN = ("model=decoder", "decoder_steps=2", "checkpoint_every=1", "decoder_options={patch_size: 4}")


@pytest.fixture(scope="module")
def decoder_run(corpus, tmp_path_factory):
    """A finished 2-step decoder run (config DECODER_RUN), trained once; tests that damage it work on a copy."""
    run = tmp_path_factory.mktemp("decoder-run") / "run"
    pretrain(cfg(corpus, *DECODER_RUN), run)
    return run


def losses(run_dir):
    return [(r["phase"], r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.mark.unit
def test_resume_after_interruption_reproduces_the_loss_curve(corpus, tmp_path):
    c_over = ("encoder_steps=4", "decoder_steps=4", "checkpoint_every=2")
    c = cfg(corpus, *c_over)
    pretrain(c, tmp_path / "full")

    calls = {"n": 0}

    class Interrupt:
        def __init__(self, desc):
            pass

        def __enter__(self):
            def update(done, total, **kw):
                calls["n"] += 1
                if calls["n"] == 6:  # encoder finished (4), decoder at step 2 (just checkpointed)
                    raise KeyboardInterrupt
            return update

        def __exit__(self, *a):
            return False

    with pytest.raises(KeyboardInterrupt):
        pretrain(c, tmp_path / "cut", progress=Interrupt)
    assert (tmp_path / "cut/encoder/.done").exists() and not (tmp_path / "cut/decoder/.done").exists()
    pretrain(c, tmp_path / "cut")  # the same command again resumes, as the interrupt message says
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")
    with pytest.raises(ConfigError, match=r"holds a run with another config \(seed differ"):
        pretrain(cfg(corpus, "seed=1", *c_over), tmp_path / "full")


@pytest.mark.unit
def test_encoder_sft_raises_token_accuracy_and_decoder_loss_falls(corpus, tmp_path):
    # decoder batches of 8 as the encoder's (the manifest's 32 cost 2.3x the time; the loss falls as fast per step)
    summary = pretrain(cfg(corpus, "encoder_steps=40", "decoder_steps=40", "batch_size=8", "decoder_batch_size=8",
                           "checkpoint_every=100", "encoder_lr=0.003", "decoder_options={patch_size: 4}"),
                       tmp_path / "run")  # UAE states path
    enc, dec = summary["encoder"], summary["decoder"]
    assert enc["last_token_accuracy"] > enc["first_token_accuracy"] + 0.2
    assert dec["last_loss"] < 0.7 * dec["first_loss"]
    assert (tmp_path / "run/decoder/decoder_config.json").exists() and (tmp_path / "run/encoder/config.json").exists()


@pytest.mark.integration
def test_cli_pretrain_rejects_a_corpus_without_shards(tmp_path, uae):
    (tmp_path / "empty").mkdir()
    r = uae("train", "pretrain", f"corpus={tmp_path / 'empty'}", "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "no shards" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.integration
def test_cli_scores_a_pretrained_decoder_on_scene_geneval(corpus, tmp_path, uae, uae_in_process):
    pretrain(cfg(corpus, "encoder_steps=2", "decoder_steps=2"), tmp_path / "run")
    r = uae_in_process("eval", "geneval", "limit=3", "images_per_prompt=2", "image_size=32",
                       "--decoder", str(tmp_path / "run/decoder"), "--steps", "2", "--out", str(tmp_path / "ge"))
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "ge/results.json").read_text())
    assert res["n_items"] == 6 and res["model"]["name"] == "uae:decoder"
    assert res["model"]["config"]["encoder"].endswith("run/encoder")
    bad = uae("eval", "geneval", "--decoder", str(tmp_path / "nowhere"), "--encoder", str(tmp_path / "run/encoder"),
              "--out", str(tmp_path / "ge2"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.unit
def test_decoder_ema_is_saved_and_resumes_exactly(corpus, tmp_path):
    from safetensors.torch import load_file

    c = cfg(corpus, "model=decoder", "decoder_steps=4", "checkpoint_every=2", "ema_decay=0.9")
    pretrain(c, tmp_path / "full")

    class Stop:
        def __init__(self, desc):
            pass

        def __enter__(self):
            def update(done, total, **kw):
                if done == 2:
                    raise KeyboardInterrupt
            return update

        def __exit__(self, *a):
            return False

    with pytest.raises(KeyboardInterrupt):
        pretrain(c, tmp_path / "cut", progress=Stop)
    pretrain(c, tmp_path / "cut", resume=True)
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")
    from uae_train.models.decoder import Decoder

    full = Decoder.from_pretrained(tmp_path / "full" / "decoder").state_dict()
    cut = Decoder.from_pretrained(tmp_path / "cut" / "decoder").state_dict()
    assert all(torch.equal(full[k], cut[k]) for k in full)
    raw = load_file(tmp_path / "full" / "checkpoints" / "decoder" / "trainable.safetensors")
    diffs = [float((full[k] - raw[k]).abs().max()) for k in raw if k in full]
    assert diffs and max(diffs) > 0  # the saved decoder is the EMA, not the last raw weights


class _Payload:
    """Unpickling this runs code (writes a marker file): what a hostile optim.pt would carry."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.unit
def test_resume_refuses_an_optimizer_state_that_would_run_code(corpus, decoder_run, tmp_path):
    from uae_data.core.errors import InputError

    c = cfg(corpus, *DECODER_RUN)
    shutil.copytree(decoder_run, tmp_path / "run")  # = pretrain(c, tmp_path / "run")
    optim = tmp_path / "run/checkpoints/decoder/optim.pt"
    assert optim.exists()
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Payload(str(marker))}, optim)
    (tmp_path / "run/decoder/.done").unlink()  # as if interrupted before the phase finished
    with pytest.raises(InputError, match="optim.pt: cannot resume"):
        pretrain(c, tmp_path / "run", resume=True)
    assert not marker.exists()


@pytest.mark.unit
@pytest.mark.parametrize("name, damage", [
    ("trainable.safetensors", lambda b: b[: len(b) // 2]),
    ("optim.pt", lambda b: b[: len(b) // 2]),
    ("state.json", lambda b: b[:5]),
])
def test_resume_from_a_corrupt_checkpoint_names_the_file_and_loads_nothing(corpus, decoder_run, tmp_path, name, damage):
    from uae_data.core.errors import InputError

    c = cfg(corpus, *DECODER_RUN)
    shutil.copytree(decoder_run, tmp_path / "run")  # = pretrain(c, tmp_path / "run")
    f = tmp_path / "run/checkpoints/decoder" / name
    f.write_bytes(damage(f.read_bytes()))
    (tmp_path / "run/decoder/.done").unlink()  # as if interrupted before the phase finished
    before = (tmp_path / "run/metrics.jsonl").read_text()
    with pytest.raises(InputError, match=rf"checkpoints/decoder/{name}: cannot resume from it .*start a new --out"):
        pretrain(c, tmp_path / "run")
    assert (tmp_path / "run/metrics.jsonl").read_text() == before  # nothing cut or rewritten
