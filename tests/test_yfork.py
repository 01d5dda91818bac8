"""Y-fork: exact scene image tokens, the shared-trunk/branch structure, training, and the CLI end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from uae_data.scenes import render, sample_scene, write_caption
from uae_train.models.yfork import YFork, YForkModelConfig

from conftest import ROOT

TINY = dict(hidden_size=32, num_layers=4, shared_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=64,
            image_size=32)


@pytest.fixture(scope="module")
def yfork() -> YFork:
    return YFork(YForkModelConfig(**TINY), seed=0).eval()


@pytest.mark.unit
@pytest.mark.parametrize("size", [32, 64])
def test_image_tokenizer_is_exact_on_scene_renders(yfork, size):
    from uae_train.models.yfork import SceneImageTokenizer

    tok = SceneImageTokenizer(size)
    scenes = [sample_scene(i) for i in range(30)]
    codes = tok.encode([render(s, size) for s in scenes])
    assert codes.shape == (30, 9)
    assert [tok.to_scene(c.tolist()) for c in codes] == scenes
    assert all(np.array_equal(np.asarray(a), np.asarray(render(s, size))) for a, s in zip(tok.decode(codes), scenes))


@pytest.mark.unit
def test_text_tokens_round_trip_captions_and_geneval_prompts(yfork):
    v = yfork.vocab
    for text in [write_caption(sample_scene(i), i) for i in range(10)] + ["a photo of two red circles"]:
        ids = v.text_ids(text)
        assert v["<unk>"] not in ids
        assert v.text.decode([i - v.text_offset for i in ids]) == text


@pytest.mark.unit
def test_branches_share_the_trunk_and_fork_on_top(yfork):
    und, gen = yfork.task_layers("und"), yfork.task_layers("gen")
    assert len(und) == len(gen) == 4
    assert all(a is b for a, b in zip(und[:2], gen[:2]))
    assert all(a is not b for a, b in zip(und[2:], gen[2:]))
    assert yfork.norm("und") is not yfork.norm("gen")
    ids = torch.tensor([yfork.vocab.understanding(list(range(9)), "a red circle .")[0]])
    (_, h_und), (_, h_gen) = yfork(ids, "und", True), yfork(ids, "gen", True)
    assert torch.equal(h_und[2], h_gen[2])  # identical through the shared layers (the copy starts equal, too)


@pytest.mark.unit
def test_fully_shared_baseline_has_one_path_and_fewer_parameters(yfork):
    shared = YFork(YForkModelConfig(**{**TINY, "shared_layers": 4}), seed=0)
    assert shared.task_layers("und") == shared.task_layers("gen")
    assert shared.norm("und") is shared.norm("gen")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(shared) < n(yfork)


@pytest.mark.unit
def test_attention_is_causal_and_cached_decoding_matches_full_forward(yfork):
    ids = torch.tensor([yfork.vocab.generation("a photo of a red circle", list(range(9)))[0]])
    logits, _ = yfork(ids, "gen")
    changed = ids.clone()
    changed[0, -1] = 3
    assert torch.allclose(yfork(changed, "gen")[0][0, :-1], logits[0, :-1], atol=1e-6)
    a = yfork.generate_codes(["a photo of a red circle"] * 2, [1, 1])
    assert torch.equal(a[0], a[1])  # each image depends only on its seed
    prefix = torch.tensor([yfork.vocab.generation("a photo of a red circle", None)[0]])
    greedy = yfork.generate_codes(["a photo of a red circle"], [0], temperature=0)[0]
    full = torch.cat([prefix, greedy[None, :-1] + yfork.vocab.image_offset], 1)
    step_logits = yfork(full, "gen")[0][0, -9:, yfork.vocab.image_offset:]
    assert torch.equal(step_logits.argmax(-1), greedy)


@pytest.mark.unit
def test_save_and_load_round_trip(yfork, tmp_path):
    yfork.save_pretrained(tmp_path / "m")
    back = YFork.from_pretrained(tmp_path / "m")
    ids = torch.tensor([yfork.vocab.understanding(list(range(9)), "a blue star .")[0]])
    assert torch.equal(back(ids, "und")[0], yfork(ids, "und")[0])


@pytest.mark.unit
def test_a_few_training_steps_lower_both_losses():
    from uae_data.short_captions import short_caption
    from uae_train.stages.yfork_train import task_batches

    model = YFork(YForkModelConfig(**TINY), seed=0)
    scenes = [sample_scene(i) for i in range(4)]
    codes = model.vocab.image.encode([render(s, 32) for s in scenes])
    caps = [short_caption(s, i) for i, s in enumerate(scenes)]  # short: a fast test
    (ui, ul), (gi, gl) = task_batches(model, codes, caps, caps)
    assert (gl != -100).sum() == 4 * 9  # generation is scored on the image tokens only
    assert (ul != -100).sum() == sum(len(model.vocab.text_ids(c)) + 1 for c in caps)  # caption words + <eot>
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(8):
        und, gen = model.loss(ui, ul, "und")[0], model.loss(gi, gl, "gen")[0]
        losses.append((und.item(), gen.item()))
        opt.zero_grad()
        (und + gen).backward()
        opt.step()
    assert losses[-1][0] < losses[0][0] - 0.5 and losses[-1][1] < losses[0][1] - 0.5


@pytest.fixture(scope="module")
def corpus(scene_corpus):
    return scene_corpus(40, 64)


@pytest.mark.integration
def test_cli_trains_a_yfork_and_reports_its_alignment_with_pretrain_checkpoints(uae_in_process, corpus, tmp_path):
    from uae_data.core.config import load_config
    from uae_train.stages.pretrain import PretrainConfig, pretrain

    pre = tmp_path / "pre"  # RUN/encoder and RUN/decoder as `uae train pretrain` writes them
    pretrain(load_config(PretrainConfig, ROOT / "manifests/train/pretrain-scene.yaml",
                         [f"corpus={corpus}", "image_size=32", "batch_size=2", "encoder_steps=1", "decoder_steps=1",
                          "warmup_steps=1"], kind="pretrain"), pre)
    sizes = [f"{k}={v}" for k, v in TINY.items()] + ["steps=3", "batch_size=4", "limit=20", "log_every=1"]
    r = uae_in_process("train", "yfork", "manifests/train/yfork-scene.yaml", "--corpus", str(corpus), "--out", str(tmp_path / "y"), *sizes)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "y/metrics.jsonl").read_text().splitlines()) == 3
    assert json.loads((tmp_path / "y/summary.json").read_text())["name"] == "yfork"
    small = ["limit=24", "k=5", "batch_size=12"]
    for name, model in (("enc", pre / "encoder"), ("dec", pre / "decoder")):
        r = uae_in_process("eval", "alignment", "manifests/eval/alignment-scene.yaml", "--model", str(model), "--data", str(corpus),
                "--out", str(tmp_path / f"a-{name}"), *small)
        assert r.returncode == 0, r.stderr
        assert "mutual kNN by layer" in r.stdout
    _alignment_in_process(tmp_path / "y/model", corpus, tmp_path / "a-y")  # the same path, without another start-up
    tasks = {n: json.loads((tmp_path / f"a-{n}/results.json").read_text())["extra"]["tasks"] for n in ("y", "enc", "dec")}
    assert tasks == {"y": ["understanding", "generation"], "enc": ["understanding"], "dec": ["generation"]}
    from uae_eval.report import build_report

    text = build_report([tmp_path / f"a-{n}" for n in ("y", "enc", "dec")], tmp_path / "r.md").read_text()
    assert "alignment curve understanding: mutual_knn" in text and "alignment curve generation: mutual_knn" in text


def _alignment_in_process(model, corpus, out) -> None:
    from uae_eval.alignment import AlignmentConfig, run
    from uae_data.pairs import load_pairs
    from uae_train.evaluation.layer_features import model_features

    cfg = AlignmentConfig(data=str(corpus), limit=24, k=5, batch_size=12, image_size=32)
    features, info = model_features(model, load_pairs(corpus, cfg.limit, cfg.image_size), batch_size=cfg.batch_size)
    run(cfg, out, features, model=info)


@pytest.mark.unit
def test_alignment_refuses_a_folder_that_is_no_model(tmp_path):
    from uae_data.core.errors import ModelLoadError
    from uae_train.evaluation.layer_features import model_features

    with pytest.raises(ModelLoadError, match="not an encoder, decoder or Y-fork folder"):
        model_features(tmp_path, [])
