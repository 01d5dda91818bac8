"""Unified-GRPO stages on tiny models: they run, log what facts §5 asks, keep the frozen side frozen,
do not move under a constant reward, and resume bit for bit."""
from __future__ import annotations

import json

import pytest

from uae_data.core.config import load_config
from uae_train.models.decoder import Decoder
from uae_train.models.encoder import Encoder
from uae_train.stages.gen_for_und import Stage1Config, stage1
from uae_train.stages.und_for_gen import Stage2Config, stage2

from conftest import ROOT

TIMING = {"rollout_s", "reward_s", "step_time_s", "images_per_s"}


@pytest.fixture(scope="module")
def world(tmp_path_factory, scene_corpus):
    """The 200-scene 32 px corpus of the session (as `corpus`) and an init folder with a random tiny encoder
    and decoder."""
    root = tmp_path_factory.mktemp("grpo")
    enc = Encoder.tiny(image_size=32, seed=0)
    enc.save_pretrained(root / "init" / "encoder")
    # PyTorch's init: a random decoder whose paintings differ by caption (DiT's init paints one flat image)
    Decoder.tiny(enc.hidden_size, image_size=32, seed=0, init="torch").save_pretrained(root / "init" / "decoder")
    (root / "corpus").symlink_to(scene_corpus(200, 32), target_is_directory=True)
    return root


def s1cfg(world, *over) -> Stage1Config:
    return load_config(Stage1Config, ROOT / "manifests/train/stage1-scene.yaml",
                       [f"init={world / 'init'}", f"corpus={world / 'corpus'}", "steps=2", "images_per_step=2",
                        "group_size=3", "max_new_tokens=16", "decoder_steps=2", "eval_images=4", "mmt_limit=3",
                        "micro_batch=4", "lr=0.001", "reward={scene-soft: 1.0, pixel: 1.0}", *over], kind="stage1")


def s2cfg(world, *over) -> Stage2Config:
    return load_config(Stage2Config, ROOT / "manifests/train/stage2-scene.yaml",
                       [f"init={world / 'init'}", f"corpus={world / 'corpus'}", "steps=2", "images_per_step=2",
                        "group_size=3", "max_new_tokens=16", "rollout_steps=3", "eval_images=4", "eval_steps=2",
                        "micro_batch=4", "lr=0.001", "reward={scene-soft: 1.0, pixel: 1.0}", *over], kind="stage2")


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def untimed(path):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows(path)]


def max_change(a, b) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


class StopAt:
    """A progress factory whose update raises KeyboardInterrupt at a given step (a Ctrl-C mid-run)."""

    def __init__(self, step):
        self.step = step

    def __call__(self, desc):
        return self

    def __enter__(self):
        def update(done, total, **kw):
            if done == self.step:
                raise KeyboardInterrupt
        return update

    def __exit__(self, *a):
        return False


@pytest.mark.unit
def test_stage1_updates_the_encoder_only_and_logs_grpo_stats(world, tmp_path):
    out = tmp_path / "s1"
    summary = stage1(s1cfg(world), out)
    log = rows(out / "metrics.jsonl")
    assert [r["step"] for r in log] == [1, 2]
    for r in log:
        assert r["first_ratio_min"] == pytest.approx(1.0, abs=1e-6) and r["first_ratio_max"] == pytest.approx(1.0, abs=1e-6)
        assert 0 <= r["zero_std_groups"] <= 1 and r["reward_std"] >= 0 and r["caption_words"] >= 0
        assert {"reward_mean", "kl", "clip_fraction", "reward_scene-soft", "reward_pixel", "truncated"} <= r.keys()
    ev = rows(out / "eval.jsonl")
    assert [r["step"] for r in ev] == [0, 2]
    assert {"heldout_reward", "caption_exact_scene", "mmt_caption_reader"} <= ev[0].keys()
    assert summary["first_eval"] == ev[0]
    res = json.loads((out / "results" / "results.json").read_text())
    assert res["benchmark"] == "unified-grpo-stage1" and "heldout_reward/end" in res["metrics"]
    assert res["extra"]["curves"]["heldout_reward"]["x"] == [0, 2]
    init_dec = Decoder.from_pretrained(world / "init" / "decoder")
    assert max_change(Decoder.from_pretrained(out / "decoder"), init_dec) == 0.0
    init_enc = Encoder.from_pretrained(world / "init" / "encoder", device="cpu")
    assert max_change(Encoder.from_pretrained(out / "encoder", device="cpu").model, init_enc.model) > 0


@pytest.mark.unit
def test_stage1_kl_reference_is_the_initial_encoder_with_a_word_table_decoder(world, tmp_path):
    """beta > 0 scores the KL against the frozen initial encoder, also when the decoder reads captions through
    its own word table (the shipped decoder's text input), whose reader is not an encoder."""
    init = tmp_path / "init"
    enc = Encoder.from_pretrained(world / "init" / "encoder", device="cpu")
    enc.save_pretrained(init / "encoder")
    Decoder.tiny(enc.hidden_size, image_size=32, seed=0, init="torch", text_input="sentences",
                 vocab_size=len(enc.tokenizer)).save_pretrained(init / "decoder")
    out = tmp_path / "kl"
    stage1(s1cfg(world, f"init={init}", "beta=0.5", "mmt_tsv="), out)
    log = rows(out / "metrics.jsonl")
    assert log[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as its reference
    assert log[1]["kl"] > 1e-6  # after one update it has moved away from it


@pytest.mark.unit
def test_stage1_constant_reward_control_leaves_the_encoder_unchanged(world, tmp_path):
    stage1(s1cfg(world, "reward={constant: 1.0}", "mmt_tsv="), tmp_path / "c")
    log = rows(tmp_path / "c" / "metrics.jsonl")
    assert all(r["zero_std_groups"] == 1.0 and r["reward_std"] == 0 for r in log)
    init_enc = Encoder.from_pretrained(world / "init" / "encoder", device="cpu")
    assert max_change(Encoder.from_pretrained(tmp_path / "c" / "encoder", device="cpu").model, init_enc.model) == 0.0


@pytest.mark.unit
def test_stage1_resume_reproduces_the_run(world, tmp_path):
    cfg = s1cfg(world, "steps=3", "checkpoint_every=1", "mmt_tsv=")
    stage1(cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        stage1(cfg, tmp_path / "cut", progress=StopAt(2))
    stage1(cfg, tmp_path / "cut", resume=True)
    assert untimed(tmp_path / "cut" / "metrics.jsonl") == untimed(tmp_path / "full" / "metrics.jsonl")
    assert rows(tmp_path / "cut" / "eval.jsonl") == rows(tmp_path / "full" / "eval.jsonl")


@pytest.mark.unit
def test_stage2_updates_the_decoder_only_with_flow_grpo_stats(world, tmp_path):
    out = tmp_path / "s2"
    stage2(s2cfg(world), out)
    log = rows(out / "metrics.jsonl")
    assert [r["step"] for r in log] == [1, 2]
    first = log[0]
    # fresh rollouts: the re-scored log-probs equal the sampled ones, so ρ = 1 and KL = 0 at the start
    assert first["first_ratio_min"] == pytest.approx(1.0, abs=1e-4) and first["first_ratio_max"] == pytest.approx(1.0, abs=1e-4)
    assert first["kl"] == pytest.approx(0.0, abs=1e-8)
    assert {"reward_mean", "reward_std", "clip_fraction", "images_per_s", "zero_std_groups"} <= first.keys()
    ev = rows(out / "eval.jsonl")
    assert [r["step"] for r in ev] == [0, 2] and {"heldout_reward", "exact_caption_reward"} <= ev[0].keys()
    # fidelity monitors beside a scene reward: SSIM in [-1, 1], PSNR finite and positive
    assert -1.0 <= ev[0]["heldout_ssim"] <= 1.0 and 0.0 < ev[0]["heldout_psnr"] < 100.0
    init_enc = Encoder.from_pretrained(world / "init" / "encoder", device="cpu")
    assert max_change(Encoder.from_pretrained(out / "encoder", device="cpu").model, init_enc.model) == 0.0
    assert max_change(Decoder.from_pretrained(out / "decoder"), Decoder.from_pretrained(world / "init" / "decoder")) > 0


def test_stage2_geneval_hook_scores_a_subset_with_every_tag_and_the_report_gets_its_curve(world, tmp_path):
    from uae_eval.results import read_results
    from uae_train.stages.und_for_gen import geneval_subset

    meta = geneval_subset("manifests/geneval/scene_metadata.jsonl", 12, tmp_path / "m.jsonl")
    tags = [json.loads(line)["tag"] for line in meta.read_text().splitlines()]
    assert 12 <= len(tags) <= 13 and len(set(tags)) == 6
    out = tmp_path / "s2"
    stage2(s2cfg(world, "steps=1", "eval_geneval_prompts=12"), out)
    ev = rows(out / "eval.jsonl")
    assert [r["step"] for r in ev] == [0, 1] and all(0.0 <= r["geneval_subset"] <= 1.0 for r in ev)
    scored = read_results(out / "evals" / "step-000001" / "geneval")
    assert scored.n_items == len(tags) and scored.metrics["overall"] == ev[1]["geneval_subset"]
    res = read_results(out / "results")
    assert "geneval_subset/start" in res.metrics and "geneval_subset" in res.extra["curves"]


@pytest.mark.unit
def test_stage2_constant_reward_control_and_resume(world, tmp_path):
    stage2(s2cfg(world, "reward={constant: 1.0}", "weight_decay=0"), tmp_path / "c")
    assert max_change(Decoder.from_pretrained(tmp_path / "c" / "decoder"),
                      Decoder.from_pretrained(world / "init" / "decoder")) == 0.0
    cfg = s2cfg(world, "steps=3", "checkpoint_every=1")
    stage2(cfg, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        stage2(cfg, tmp_path / "cut", progress=StopAt(2))
    stage2(cfg, tmp_path / "cut", resume=True)
    assert untimed(tmp_path / "cut" / "metrics.jsonl") == untimed(tmp_path / "full" / "metrics.jsonl")


@pytest.mark.integration
def test_cli_stage_without_init_models_is_one_line_exit_2(tmp_path, uae_in_process):
    r = uae_in_process("train", "stage1", "--init", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "nothing: not found (given with --init)" in r.stderr
    (tmp_path / "empty").mkdir()
    r = uae_in_process("train", "stage1", "--init", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no encoder/" in r.stderr + r.stdout and len(r.stderr.strip().splitlines()) == 1
    r = uae_in_process("train", "stage2", "--init", str(tmp_path), "--out", str(tmp_path / "o2"), "lr=abc")
    assert r.returncode == 2 and "lr" in r.stderr + r.stdout


@pytest.mark.unit
def test_shuffled_reward_control_scores_against_the_next_image_and_stage1_still_scores_the_policy_image():
    from uae_train.training.data import shift_by_one

    imgs, scs = ["a", "b", "c"], [1, 2, 3]
    assert shift_by_one(imgs, False) == imgs and shift_by_one(scs, False) == scs
    assert shift_by_one(imgs, True) == ["b", "c", "a"] and shift_by_one(scs, True) == [2, 3, 1]
    assert shift_by_one(["a"], True) == ["a"]  # one image: nothing to shuffle with


@pytest.mark.unit
def test_stage1_and_stage2_run_with_the_shuffled_reward_control(world, tmp_path):
    stage1(s1cfg(world, "shuffle_reward_images=true", "mmt_tsv="), tmp_path / "s1")
    stage2(s2cfg(world, "shuffle_reward_images=true"), tmp_path / "s2")
    assert json.loads((tmp_path / "s1/results/results.json").read_text())["config"]["shuffle_reward_images"] is True
    assert json.loads((tmp_path / "s2/results/results.json").read_text())["config"]["shuffle_reward_images"] is True


def test_stage2_paints_short_prompts_and_is_rewarded_by_geneval(world, tmp_path):
    out = tmp_path / "s2g"
    stage2(s2cfg(world, "prompts=short", "reward={geneval: 1.0, geneval-partial: 1.0}"), out)
    log = rows(out / "metrics.jsonl")
    assert [r["step"] for r in log] == [1, 2] and {"reward_geneval", "reward_geneval-partial"} <= log[0].keys()
    assert all(0.0 <= r["reward_geneval"] <= r["reward_geneval-partial"] <= 1.0 for r in log)
    ev = rows(out / "eval.jsonl")
    assert "heldout_geneval" in ev[0] and "exact_caption_reward" not in ev[0]
    with pytest.raises(Exception, match="eval_corpus"):  # at load, before a run folder exists
        s2cfg(world, "prompts=short", f"eval_corpus={world / 'corpus'}")
    assert max_change(Decoder.from_pretrained(out / "decoder"), Decoder.from_pretrained(world / "init" / "decoder")) > 0
    with pytest.raises(Exception, match="set prompts: short"):
        s2cfg(world, "reward={geneval: 1.0}")


@pytest.mark.unit
def test_short_prompt_stage_is_judged_on_held_out_scenes_its_prompts_describe():
    """prompts: short evaluates on framed prompt scenes (a random scene's short caption names one or two of its
    objects, so no painting of it can match the scene): deterministic, every form, each render correct."""
    from uae_data.scenes import SHAPES
    from uae_eval.geneval.prompts import prompt_metadata
    from uae_eval.geneval.reward import GenEvalReward
    from uae_train.training.data import heldout_prompts

    images, scenes_, prompts = heldout_prompts(60, 2024, 48)
    again = heldout_prompts(60, 2024, 48)
    assert again[2] == prompts and [im.tobytes() for im in again[0]] == [im.tobytes() for im in images]
    assert heldout_prompts(60, 2025, 48)[2] != prompts and images[0].size == (48, 48)
    metas = [prompt_metadata(p, SHAPES) for p in prompts]
    assert len({m["tag"] for m in metas}) == 6
    assert all(len(sc.objects) == sum(i["count"] for i in m["include"]) for sc, m in zip(scenes_, metas))
    assert GenEvalReward()(images, metas).tolist() == [1.0] * len(metas)


@pytest.mark.unit
def test_stage2_flags_rollouts_that_score_far_below_the_ode_paintings():
    from uae_train.stages.und_for_gen import rollout_warning

    line = rollout_warning(0.05, 1.0)  # the demo's old rollouts: 6 SDE steps at noise level 0.7, CFG 8
    assert line and "noise_level" in line and "0.050" in line
    assert rollout_warning(0.93, 1.0) is None and rollout_warning(0.6, 0.9) is None
    assert rollout_warning(0.0, 0.1) is None  # a decoder that paints nothing yet: no baseline to compare with


@pytest.mark.unit
def test_stage2_shared_group_noise_and_ode_tail_leave_the_trained_steps_as_the_only_spread(world):
    """group_noise: shared starts every painting of a group from one latent; ode_after_trained makes the untrained
    steps ODE steps (log-prob 0, no noise). Then a group's paintings differ only through the steps the update
    trains, so its reward spread is credit the policy gradient can assign."""
    import torch

    from uae_train.stages.und_for_gen import rollout

    cfg = s2cfg(world, "rollout_steps=4", "timestep_fraction=0.5", "noise_level=0.7", "ode_after_trained=true",
                "group_noise=shared")
    enc = Encoder.from_pretrained(world / "init" / "encoder", device="cpu")
    dec = Decoder.from_pretrained(world / "init" / "decoder", text_hidden_size=enc.hidden_size).eval()
    hidden, mask = dec.reader(enc).encode_text(["a red circle."] * 3, max_length=16)
    with torch.no_grad():
        context = dec.context(hidden.float(), mask)
    traj, logps, sigmas, _ = rollout(cfg, dec, context, [5, 6, 7], [5, 5, 5])
    assert torch.equal(traj[0, 0], traj[0, 1]) and torch.equal(traj[0, 0], traj[0, 2])
    assert not torch.equal(traj[2, 0], traj[2, 1])  # the two trained SDE steps spread the group
    assert bool((logps[:2] != 0).all()) and bool((logps[2:] == 0).all())
    with torch.no_grad():  # an untrained step is the Euler step of the flow ODE
        v = dec.velocity_from_context(traj[2], sigmas[2], context, cfg.guidance)
    torch.testing.assert_close(traj[3], traj[2] + (sigmas[3] - sigmas[2]) * v, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="group_noise"):
        s2cfg(world, "group_noise=same").validate()


@pytest.mark.unit
def test_stage2_nft_moves_the_decoder_only_and_its_constant_reward_control_is_a_no_op(world, tmp_path):
    nft = load_config(Stage2Config, ROOT / "manifests/train/stage2-scene-nft.yaml",
                      [f"init={world / 'init'}", f"corpus={world / 'corpus'}", "image_size=32", "steps=1",
                       "images_per_step=2", "group_size=3", "rollout_steps=3", "eval_images=4", "eval_steps=2",
                       "reward={scene-soft: 1.0, pixel: 1.0}"],  # a random decoder's paintings all fail GenEval's judge
                      kind="stage2")
    assert nft.algorithm == "nft" and nft.prompts == "short" and not nft.train_on_eval_prompts
    stage2(nft, tmp_path / "n")
    first = rows(tmp_path / "n" / "metrics.jsonl")[0]
    assert 0.0 <= first["r_mean"] <= 1.0 and first["kl"] == pytest.approx(0.0, abs=1e-8)
    init_dec = Decoder.from_pretrained(world / "init" / "decoder")
    assert max_change(Decoder.from_pretrained(tmp_path / "n" / "decoder"), init_dec) > 0
    init_enc = Encoder.from_pretrained(world / "init" / "encoder", device="cpu")
    assert max_change(Encoder.from_pretrained(tmp_path / "n" / "encoder", device="cpu").model, init_enc.model) == 0.0
    stage2(s2cfg(world, "algorithm=nft", "reward={constant: 1.0}", "weight_decay=0"), tmp_path / "c")
    assert max_change(Decoder.from_pretrained(tmp_path / "c" / "decoder"), init_dec) == 0.0


@pytest.mark.unit
def test_stage2_short_prompts_skip_corpus_rows_whose_prompt_geneval_scores():
    from uae_train.stages.und_for_gen import Stage2, eval_prompt_filter

    metadata = "manifests/geneval/scene_metadata.jsonl"
    scored = json.loads((ROOT / metadata).read_text().splitlines()[0])["prompt"]
    keep = eval_prompt_filter(metadata)
    assert not keep({"meta": {"short_caption": scored}}) and not keep({"meta": {"short_caption": scored.upper()}})
    assert keep({"meta": {"short_caption": "a photo of nine purple wombats"}}) and keep({"meta": {}})
    cfg = Stage2Config(prompts="short", reward={"geneval-partial": 1.0}, eval_corpus="")
    assert Stage2().keep(cfg) is not None
    assert Stage2().keep(Stage2Config(prompts="short", train_on_eval_prompts=True)) is None
    assert Stage2().keep(Stage2Config()) is None  # captions of corpus images: nothing to skip


@pytest.mark.unit
def test_a_filter_that_drops_every_row_is_a_corpus_error_not_a_hang(world):
    from uae_data.core.errors import CorpusError
    from uae_train.training.data import sample_stream

    stream = sample_stream(world / "corpus", 16, 0, keep=lambda sample: False)
    with pytest.raises(CorpusError, match="train_on_eval_prompts"):
        next(stream)
