"""UAE's real-size recipe (manifests/train/uae/): every manifest validates, names the paper's models by hub id,
refuses a typo in any key, and runs two steps per phase with `tiny: true` (tiny models of the same classes)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from uae_data.core.config import load_config, read_yaml, validate_manifest
from uae_data.core.errors import ConfigError
from uae_train.stages.gen_for_und import Stage1Config, stage1
from uae_train.stages.pretrain import PretrainConfig, pretrain
from uae_train.stages.und_for_gen import Stage2Config, stage2

from conftest import ROOT

RECIPES = sorted((ROOT / "manifests/train/uae").glob("*.yaml"))
CONFIGS = {"pretrain": PretrainConfig, "stage1": Stage1Config, "stage2": Stage2Config}
SIZES = ("large", "medium")


def test_recipe_manifests_exist_for_both_sizes_and_validate():
    names = {p.name for p in RECIPES}
    assert names == {f"{phase}-sd35-{size}.yaml" for phase in CONFIGS for size in SIZES}
    for path in RECIPES:
        assert validate_manifest(path) == path.stem.split("-")[0], path  # the kind it validated as


def test_recipe_names_the_papers_models_by_hub_id():
    for size in SIZES:
        pre = read_yaml(ROOT / f"manifests/train/uae/pretrain-sd35-{size}.yaml")
        assert pre["encoder"] == "Qwen/Qwen2.5-VL-3B-Instruct"
        assert pre["decoder"] == f"stabilityai/stable-diffusion-3.5-{size}"
        for stage in ("stage1", "stage2"):
            data = read_yaml(ROOT / f"manifests/train/uae/{stage}-sd35-{size}.yaml")
            assert data["reward"] == {"uae-clip": 1.0}
            assert data["reward_options"]["uae-clip"]["model"] == "openai/clip-vit-large-patch14"
    s1 = read_yaml(ROOT / "manifests/train/uae/stage1-sd35-large.yaml")
    assert s1["encoder_lora"] == {"r": 32, "alpha": 64, "target_modules": "all-linear", "init": "gaussian"}
    s2 = read_yaml(ROOT / "manifests/train/uae/stage2-sd35-large.yaml")
    assert (s2["rollout_steps"], s2["noise_level"], s2["clip_range"], s2["beta"]) == (10, 0.7, 0.0001, 0.04)


def test_recipe_every_key_says_whose_setting_it_is():
    """Each setting line is marked [paper], [code], [flow-grpo] or [ours], except plumbing (paths, sizes of
    checkpoints and logs, the seed)."""
    plumbing = {"kind", "corpus", "init", "seed", "mixed_precision", "checkpoint_every", "log_every", "eval_every",
                "eval_images", "reliance_samples", "encoder_options", "mmt_tsv"}
    for path in RECIPES:
        for line in path.read_text().splitlines():
            if not line or line.startswith("#") or ":" not in line or line.rstrip().endswith(":"):
                continue  # comments and section openers (their entries carry the tags)
            key = line.split(":")[0].strip()
            if key in plumbing:
                continue
            assert any(tag in line for tag in ("[paper]", "[code]", "[flow-grpo]", "[ours]")), (path.name, line)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_refuses_a_typo_in_any_key(path, tmp_path):
    data = read_yaml(path)
    kind = data["kind"]
    sections = {k: v for k, v in data.items() if isinstance(v, dict) and v}
    for key in [k for k in data if k != "kind"]:
        bad = {("x" + k if k == key else k): v for k, v in data.items()}
        target = tmp_path / "typo.yaml"
        target.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError, match="unknown key"):
            load_config(CONFIGS[kind], target, kind=kind)
    for name, section in sections.items():
        if name == "reward":
            continue  # weights of terms: an unknown term is refused too, with its own message
        inner = next(iter(section))
        bad = {**data, name: {**{k: v for k, v in section.items() if k != inner}, inner + "x": section[inner]}}
        target = tmp_path / "typo.yaml"
        target.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError):
            load_config(CONFIGS[kind], target, kind=kind)


def test_recipe_tiny_switch_swaps_models_caps_sizes_and_keeps_the_method():
    real = load_config(Stage2Config, ROOT / "manifests/train/uae/stage2-sd35-large.yaml", kind="stage2")
    tiny = load_config(Stage2Config, ROOT / "manifests/train/uae/stage2-sd35-large.yaml", ["tiny=true"],
                       kind="stage2")
    assert tiny.reward_options["uae-clip"]["model"] == "tiny" and real.reward_options["uae-clip"]["model"] != "tiny"
    assert (tiny.image_size, tiny.group_size, tiny.rollout_steps) == (32, 2, 3)
    for same in ("noise_level", "clip_range", "beta", "guidance", "lr", "decoder_options", "steps", "algorithm"):
        assert getattr(tiny, same) == getattr(real, same), same
    pre = load_config(PretrainConfig, ROOT / "manifests/train/uae/pretrain-sd35-large.yaml", ["tiny=true"],
                      kind="pretrain")
    assert (pre.encoder, pre.decoder, pre.decoder_options["latent"]) == ("tiny", "tiny", "vae")
    assert pre.decoder_options["connector_mult"] == 2 and pre.fsdp and pre.tiny


@pytest.mark.parametrize("size", SIZES)
def test_recipe_runs_two_steps_per_phase_with_tiny_models(size, tmp_path, scene_corpus):
    corpus = scene_corpus(200, 32)
    recipe = ROOT / "manifests/train/uae"
    common = ["tiny=true", f"corpus={corpus}", f"eval_corpus={corpus}", "device=cpu"]
    pre = load_config(PretrainConfig, recipe / f"pretrain-sd35-{size}.yaml",
                      ["tiny=true", f"corpus={corpus}", "device=cpu", "decoder_steps=2"], kind="pretrain")
    summary = pretrain(pre, tmp_path / "pre")
    assert summary["decoder"]["steps"] == 2
    assert (tmp_path / "pre/encoder/config.json").is_file() and (tmp_path / "pre/decoder/vae").is_dir()
    s1 = load_config(Stage1Config, recipe / f"stage1-sd35-{size}.yaml",
                     [*common, f"init={tmp_path / 'pre'}", "steps=2"], kind="stage1")
    stage1(s1, tmp_path / "s1")
    m1 = [json.loads(x) for x in (tmp_path / "s1/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in m1] == [1, 2] and all(-1 <= r["reward_uae-clip"] <= 1 for r in m1)
    assert (tmp_path / "s1/encoder/lora/adapter_config.json").is_file()
    s2 = load_config(Stage2Config, recipe / f"stage2-sd35-{size}.yaml",
                     [*common, f"init={tmp_path / 's1'}", "steps=2"], kind="stage2")
    stage2(s2, tmp_path / "s2")
    m2 = [json.loads(x) for x in (tmp_path / "s2/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in m2] == [1, 2] and all(-1 <= r["reward_uae-clip"] <= 1 for r in m2)
    saved = yaml.safe_load((tmp_path / "s2/config.yaml").read_text())
    assert saved["tiny"] is True and saved["reward_options"]["uae-clip"]["model"] == "tiny"
    assert Path(tmp_path / "s2/decoder/transformer_lora.safetensors").is_file()


@pytest.mark.unit
def test_recipe_precision_can_change_between_runs_in_one_process():
    """The demo and the tests run several recipes in one process; accelerate alone refuses a second precision."""
    from types import SimpleNamespace

    import torch

    from uae_train.training.precision import make_accelerator

    cpu = torch.device("cpu")
    assert make_accelerator(SimpleNamespace(mixed_precision="no"), cpu).mixed_precision == "no"
    assert make_accelerator(SimpleNamespace(mixed_precision="bf16"), cpu).mixed_precision == "bf16"
    assert make_accelerator(SimpleNamespace(mixed_precision="auto"), cpu).mixed_precision == "no"
