"""`uae demo` end to end at toy size: every stage and control runs, the headline rows and report appear,
a re-run resumes; the shipped scene models load and see."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "uae_train" / "scene_models"
TOY = ["seeds=1", "corpus_size=64", "recon_limit=8", "geneval_limit=3", "geneval_images_per_prompt=1", "mmt_limit=4",
       "dpg_limit=2", "dpg_tiles=1",
       "sampling_steps=2",
       "stage1=[steps=1, images_per_step=2, group_size=2, max_new_tokens=12, decoder_steps=2, eval_images=2, mmt_limit=2]",
       "stage2=[steps=1, images_per_step=2, group_size=2, max_new_tokens=12, rollout_steps=2, eval_images=2, eval_steps=2]"]


@pytest.mark.integration
def test_demo_runs_every_stage_beside_its_controls_and_resumes(tmp_path, uae, uae_in_process):
    r = uae("demo", *TOY, "shuffled_controls=true", "--out", str(tmp_path / "d"), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    d = tmp_path / "d"
    for part in ("s1-shuffled/encoder", "s2-shuffled/decoder", "eval/stage2-shuffled/geneval/results.json",
                 "pre/encoder", "pre/decoder", "s1/encoder", "s2/decoder", "s1-constant/encoder", "s2-constant/decoder",
                 "s1/results/results.json", "s2/results/results.json", "eval/pretrain/geneval/results.json",
                 "eval/unified-grpo/recon/results.json", "eval/unified-grpo/mmt-bench/results.json",
                 "eval/unified-grpo/scene-captions/results.json", "eval/stage1-constant/mmt-bench/results.json",
                 "eval/stage2-constant/geneval/results.json", "eval/blind-encoder/scene-captions/results.json",
                 "eval/pretrain/dpg-bench/results.json", "eval/unified-grpo/dpg-bench/results.json",
                 "eval/noise/dpg-bench/results.json", "eval/random/dpg-bench/results.json",
                 "eval/stage2-constant/dpg-bench/results.json", "eval/stage2-shuffled/dpg-bench/results.json",
                 "eval/noise/geneval/results.json", "eval/random/geneval/results.json", "report.html",
                 # the web-caption setting (the default): the length-reward control and the exact-caption ceiling
                 "s1-length/encoder", "eval/stage1-length/mmt-bench/results.json",
                 "eval/exact-caption-encoder/scene-captions/results.json"):
        assert (d / part).exists(), part
    assert json.loads((d / "pre/summary.json").read_text())["source"] == "shipped web models"
    assert json.loads((d / "corpus/manifest.json").read_text())["caption_audit"]["objects_named"] < 0.8
    head = json.loads((d / "headline.json").read_text())
    metrics = [row["metric"] for row in head["rows"]]
    assert any(m.startswith("GenEval-scene") for m in metrics) and any(m.startswith("MMT-scene") for m in metrics)
    for name in ("object recall", "attribute precision", "words per caption"):
        web_row = next(row for row in head["rows"] if name in row["metric"])
        ctrl = {c["name"]: c for c in web_row["controls"]}
        assert {"constant reward", "shuffled-image reward", "length reward", "exact-caption encoder",
                "blind encoder"} <= set(ctrl), name
        assert ctrl["constant reward"]["gain"]["mean"] == 0.0  # the constant reward leaves the encoder as it was
        assert "true_minus_control" in ctrl["length reward"] and "mean" in web_row["gain"] and "ci95" in web_row["gain"]
    geneval = next(row for row in head["rows"] if row["metric"].startswith("GenEval-scene"))
    names = [c["name"] for c in geneval["controls"]]
    assert names[:2] == ["constant reward", "shuffled-image reward"]
    assert "object-free images" in names and "random scenes" in names
    dpg = next(row for row in head["rows"] if row["metric"].startswith("Scene-DPG"))
    assert {"constant reward", "shuffled-image reward", "object-free images", "random scenes"} <= {
        c["name"] for c in dpg["controls"]}
    assert geneval["gain"]["ci95"] is None  # one seed: no interval claimed
    assert "report:" in r.stdout and "gain" in r.stdout
    html = (d / "report.html").read_text()
    assert html.index("constant reward") < html.index("unified-grpo-stage1")  # the headline comes first
    # then the stage-1 curves and the before/after samples, before the per-benchmark sections
    assert html.index("object recall over steps") < html.index("before stage 1") < html.index("unified-grpo-stage1")
    before = (d / "report.html").stat().st_mtime_ns
    r2 = uae_in_process("demo", *TOY, "shuffled_controls=true", "--out", str(tmp_path / "d"))  # everything done: only the report is rebuilt
    assert r2.returncode == 0 and "stage1 ->" not in r2.stdout and (d / "report.html").stat().st_mtime_ns >= before


@pytest.mark.integration
def test_demo_from_scratch_pretrains_and_two_seeds_give_an_interval(tmp_path, uae):
    toy = TOY + ["pretrain=[encoder_steps=2, decoder_steps=2, batch_size=4, decoder_batch_size=4, warmup_steps=1]",
                 "controls=false", "pretrain_corpus=[source.n=120, shard_size=60]",
                 "web_encoder=[encoder_steps=2, batch_size=4, warmup_steps=1]"]
    r = uae("demo", *toy, "--seeds", "2", "--from-scratch", "--out", str(tmp_path / "d"), timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    d = tmp_path / "d"
    assert (d / "pre/metrics.jsonl").exists() and (d / "seed-1/s2/decoder").exists()
    pre_corpus = json.loads((d / "pretrain-corpus/manifest.json").read_text())
    assert pre_corpus["counts"]["samples"] == 120  # the pretraining corpus, with its prompt scenes
    assert "pretrain-corpus" in (d / "pre-exact/config.yaml").read_text()
    # the web-caption encoder: SFT of the freshly pretrained encoder on the demo's web-caption corpus
    web_sft = (d / "pre/config.yaml").read_text()
    assert "pre-exact/encoder" in web_sft and "image_word_weight: 0" in web_sft and (d / "pre/decoder").is_dir()
    assert not (d / "s1-constant").exists()
    head = json.loads((d / "headline.json").read_text())
    row = next(row for row in head["rows"] if row["metric"].startswith("GenEval-scene"))
    assert row["after"]["n"] == 2 and len(row["gain"]["ci95"]) == 2


@pytest.mark.unit
def test_shipped_scene_models_load_with_provenance_and_see_colour_and_cell():
    from uae_data import scenes
    from uae_eval.scene_captions import aggregate, score_caption
    from uae_train.models.decoder import Decoder
    from uae_train.models.encoder import Encoder

    prov = json.loads((SHIPPED / "provenance.json").read_text())
    assert "uae train pretrain manifests/train/pretrain-scene.yaml" in prov["command"] and prov["git_hash"] and "metrics" in prov
    assert (SHIPPED / "MODEL_CARD.md").read_text().count(prov["git_hash"]) >= 1
    enc = Encoder.from_pretrained(SHIPPED / "encoder", device="cpu")
    dec = Decoder.from_pretrained(SHIPPED / "decoder", text_hidden_size=enc.hidden_size)
    assert dec.config.text_input == "sentences"
    truths = [scenes.sample_scene(7_000_000 + i) for i in range(16)]
    texts = enc.caption([scenes.render(s, 48) for s in truths], sample=False, max_new_tokens=192)
    m = aggregate([score_caption(t, s) for t, s in zip(texts, truths)])
    assert m["occupancy"] > 0.9 and m["color"] > 0.8, m  # a blind encoder: ~0.6 and ~0.1


@pytest.mark.unit
def test_demo_stage2_rollouts_paint_what_the_ode_sampler_paints():
    """Stage 2 learns from its SDE rollouts, so at the demo's settings they must be clean paintings: with Flow-GRPO's
    noise level 0.7, 6 steps and CFG 8 they kept visible noise and scored 0.05 where ODE paintings score 1.0."""
    import torch

    from uae_data import scenes
    from uae_data.core.config import load_config
    from uae_train.demo.run import DemoConfig
    from uae_train.models.decoder import Decoder
    from uae_train.models.encoder import Encoder
    from uae_train.rl.rewards import build_reward
    from uae_train.stages.und_for_gen import Stage2Config, rollout

    demo = load_config(DemoConfig, ROOT / "manifests/demo/scene-cpu.yaml", [], kind="demo")
    cfg = load_config(Stage2Config, ROOT / "manifests/train/stage2-scene.yaml",
                      [f"guidance={demo.guidance}", *demo.stage2], kind="stage2")
    enc = Encoder.from_pretrained(SHIPPED / "encoder", device="cpu").eval()
    dec = Decoder.from_pretrained(SHIPPED / "decoder", text_hidden_size=enc.hidden_size).eval()
    truths = [scenes.sample_scene(7_100_000 + i) for i in range(12)]
    hidden, mask = dec.reader(enc).encode_text([scenes.write_caption(s, i) for i, s in enumerate(truths)],
                                               max_length=cfg.max_text_tokens)
    with torch.no_grad():
        context = dec.context(hidden.float(), mask)
    *_, paintings = rollout(cfg, dec, context, list(range(len(truths))))
    reward, _ = build_reward({"scene-soft": 1.0})([scenes.render(s, 48) for s in truths], paintings, truths)
    assert float(reward.mean()) > 0.85, float(reward.mean())


@pytest.mark.unit
def test_demo_overrides_with_a_typo_fail_before_any_work():
    from uae_data.core.config import load_config
    from uae_data.core.errors import ConfigError
    from uae_train.demo.run import DemoConfig

    manifest = ROOT / "manifests/demo/scene-cpu.yaml"
    assert load_config(DemoConfig, manifest, ["pretrain_corpus=[source.n=500]"], kind="demo").pretrain_corpus
    for bad, where in (("pretrain_corpus=[source.prompt_scene=0.2]", "pretrain_corpus"),
                       ("pretrain_corpus=[source.prompt_scenes=2]", "pretrain_corpus"),
                       ("stage2=[lr_typo=1]", "stage2"), ("web_encoder=[encoder_step=3]", "web_encoder")):
        with pytest.raises((ConfigError, ValueError), match=where):
            load_config(DemoConfig, manifest, [bad], kind="demo")
