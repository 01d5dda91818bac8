"""`uae demo`: the whole UAE loop on the scene world in one command, each step resumable.

scene corpus → pretrained scene models (shipped, or `from_scratch`) → stage 1 (encoder policy) → stage 2
(decoder policy), for each RL seed, beside its controls: the same stages with a constant reward, a blind
encoder (trained on a constant image), object-free images (the `noise` generator) and `random` scenes on
GenEval and Scene-DPG, and shuffled captions for the decoder (caption reliance). Every step writes its own folder
under OUT and is skipped when its result is already there, so re-running the same command continues.

Two settings. `web` (the default, the paper's setting in miniature): the RL corpus carries web-style captions
(manifests/corpus/scenes-web.yaml) and stage 1 starts from the web-caption encoder, which names about half of
a scene's objects; beside the constant and shuffled controls, stage 1 also runs with a length reward (pays for
naming more objects and words, never looks at an image), and the exact-caption encoder is measured as the
ceiling. `exact`: exact long captions and the exact-caption encoder, as before.

Layout: corpus/ heldout/ (pretrain-corpus/ with from_scratch; pre-exact/ too in the web setting) pre/ s1/ s2/
s1-constant/ s2-constant/ (s1-shuffled/ s2-shuffled/ with shuffled_controls; s1-length/ in the web setting)
eval/<label>/<benchmark>/ (seed 0);
seed-<k>/ holds the same for seed k > 0. headline.json holds the report's rows; report.html reads them.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from uae_data.core.config import config_kind, help_field, load_config, require_at_least_one
from uae_train.demo import evals as ev
from uae_train.demo.headline import headline_rows, seed_root
from uae_train.demo.web import web_headline_rows, web_report_lead

MANIFESTS = ev.MANIFESTS
SHIPPED = Path(__file__).resolve().parents[1] / "scene_models"
PRETRAIN_CORPUS = MANIFESTS / "corpus" / "scenes-pretrain.yaml"  # what from_scratch pretrains on
SETTINGS = {"web": "scenes-web.yaml", "exact": "scenes.yaml"}  # the RL corpus of each setting


@config_kind("demo")
@dataclass
class DemoConfig:
    setting: str = help_field("web", help="web: web-caption corpus and encoder, stage 1 beside a length-reward control "
                                          "(the paper's setting) | exact: exact long captions and the exact-caption encoder")
    corpus_size: int = help_field(3000, help="scenes in the training corpus")
    image_size: int = help_field(48, help="image side for every model and eval")
    from_scratch: bool = help_field(False, help="pretrain the scene models with manifests/train/pretrain-scene.yaml "
                                                "instead of starting from the shipped checkpoints")
    pretrain: list = help_field([], help="overrides of manifests/train/pretrain-scene.yaml (key=value strings)")
    pretrain_corpus: list = help_field([], help="overrides of manifests/corpus/scenes-pretrain.yaml, the corpus "
                                                "from_scratch pretrains on (e.g. source.n=2000 for a quick try)")
    web_encoder: list = help_field([], help="web setting with from_scratch: overrides of "
                                            "manifests/train/pretrain-scene-web.yaml (the web-caption SFT)")
    stage1: list = help_field([], help="overrides of manifests/train/stage1-scene.yaml")
    stage2: list = help_field([], help="overrides of manifests/train/stage2-scene.yaml")
    seeds: int = help_field(1, help="RL seeds (stage 1 + stage 2 and their controls once per seed); the report "
                                    "gives mean ± sd and the paired gain's 95% CI from 2 seeds on")
    controls: bool = help_field(True, help="run the constant-reward control of each stage and the blind, noise and "
                                           "random baselines")
    constant_seeds: int | None = help_field(None, help="RL seeds (the first k) that run the constant-reward controls "
                                                       "(None = every seed); the constant reward gives every sample "
                                                       "a zero advantage, so the update is exactly zero on any seed "
                                                       "(tests/test_unified_grpo.py)")
    shuffled_controls: bool = help_field(False, help="also run each stage with its reward scored against another "
                                                     "image of the batch (with `controls`; about 3.5 more minutes a seed)")
    geneval_limit: int | None = help_field(None, help="GenEval prompts scored (None = all 553; smaller = not comparable)")
    geneval_images_per_prompt: int = help_field(1, help="GenEval images per prompt (official: 4)")
    dpg_limit: int | None = help_field(32, help="Scene-DPG items scored (None = all 100; >= 2, since the official quirk "
                                                "skips the first; smaller = not comparable)")
    dpg_tiles: int = help_field(4, help="Scene-DPG tiles per item (official: 4, a 2x2 grid); 32 items x 4 tiles "
                                        "paint in ~3 s a run on 2 cores once the decoder is warm")
    mmt_limit: int | None = help_field(None, help="MMT rows scored (None = all)")
    recon_limit: int = help_field(64, help="held-out images for recon, scene-captions and caption reliance")
    caption_tokens: int = help_field(192, help="token limit of every caption the encoder writes in the evals")
    sampling_steps: int = help_field(10, help="ODE steps of every eval painting")
    guidance: float = help_field(5.0, help="CFG scale of every painting (stage-1 reconstructions, stage-2 rollouts, evals)")
    alignment: bool = help_field(False, help="also measure UniFork's per-layer alignment of both models")
    seed: int = help_field(0, help="seed of the corpus, the evals and the first RL seed")

    def runs_constant(self, k: int) -> bool:
        """Whether RL seed k (0-based) runs the constant-reward controls."""
        return self.controls and (self.constant_seeds is None or k < self.constant_seeds)

    def validate(self) -> None:
        require_at_least_one(self, "seeds")
        if self.dpg_limit is not None and self.dpg_limit < 2:
            raise ValueError(f"dpg_limit must be >= 2 (the official quirk skips the first item), got {self.dpg_limit}")
        if not 1 <= self.dpg_tiles <= 4:
            raise ValueError(f"dpg_tiles must be 1-4, got {self.dpg_tiles}")
        if self.setting not in SETTINGS:
            raise ValueError(f"setting must be one of {', '.join(SETTINGS)}; got {self.setting!r}")
        from uae_data.core.errors import ConfigError
        from uae_train.stages.gen_for_und import Stage1Config
        from uae_train.stages.pretrain import PretrainConfig
        from uae_train.stages.und_for_gen import Stage2Config

        # each stage's overrides on its manifest, as the demo will load them: a typo fails before any work
        for name, Config in (("pretrain", PretrainConfig), ("stage1", Stage1Config), ("stage2", Stage2Config)):
            try:
                load_config(Config, MANIFESTS / "train" / f"{name}-scene.yaml", list(getattr(self, name)), kind=name)
            except ConfigError as err:
                raise ValueError(f"{name} overrides: {err}") from None
        try:
            load_config(PretrainConfig, MANIFESTS / "train" / "pretrain-scene-web.yaml", list(self.web_encoder),
                        kind="pretrain")
        except ConfigError as err:
            raise ValueError(f"web_encoder overrides: {err}") from None
        from uae_data.corpus_config import CorpusConfig

        try:
            load_config(CorpusConfig, PRETRAIN_CORPUS, list(self.pretrain_corpus), kind="corpus")
        except ConfigError as err:
            raise ValueError(f"pretrain_corpus overrides: {err}") from None


def install_shipped(run: Path, what: str = "scene") -> None:
    """Copy the shipped scene encoder and decoder into run/ (encoder/, decoder/) with their provenance."""
    names = {"scene": ("encoder", "decoder"), "blind": ("blind-encoder", "decoder"),
             "web": ("web-encoder", "decoder")}[what]
    for src, dst in zip(names, ("encoder", "decoder")):
        if not (SHIPPED / src).is_dir():
            from uae_data.core.errors import InputError

            raise InputError(f"{SHIPPED / src} is missing (a source checkout without the shipped scene models?); "
                             "run `uae demo from_scratch=true` to pretrain them")
        if (run / dst).exists():
            shutil.rmtree(run / dst)
        shutil.copytree(SHIPPED / src, run / dst)
    card = json.loads((SHIPPED / "provenance.json").read_text())
    (run / "summary.json").write_text(json.dumps({"source": f"shipped {what} models", "from": str(SHIPPED),
                                                  "provenance": card}, indent=2) + "\n")


def _stage(kind: str, Config, fn, run: Path, cfg: DemoConfig, corpus: Path, init: Path, seed: int,
           overrides: list, progress) -> float:
    """Run (or continue) one RL stage; returns its wall minutes (0 when already done)."""
    if (run / "summary.json").exists():
        return 0.0
    extra = [f"corpus={corpus}", f"image_size={cfg.image_size}", f"seed={seed}", f"init={init}"]
    extra.append(f"decoder_guidance={cfg.guidance}" if kind == "stage1" else f"guidance={cfg.guidance}")
    c = load_config(Config, MANIFESTS / "train" / f"{kind}-scene.yaml", extra + list(overrides), kind=kind)
    t0 = time.perf_counter()
    fn(c, run, resume=(run / "config.yaml").exists(), progress=progress)
    return (time.perf_counter() - t0) / 60


def demo(cfg: DemoConfig, out: Path, progress=None, say: Callable[[str], None] = print) -> dict:
    """Run (or continue) the whole loop into `out`; returns {"rows", "wall_minutes", "report"}."""
    from uae_data.corpus_config import CorpusConfig
    from uae_data.pipeline import build
    from uae_eval.report import build_report
    from uae_train.stages.gen_for_und import Stage1Config, stage1
    from uae_train.stages.pretrain import PretrainConfig, pretrain
    from uae_train.stages.und_for_gen import Stage2Config, stage2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    minutes: dict[str, float] = {}

    def timed(name: str, fn):
        t0 = time.perf_counter()
        result = fn()
        minutes[name] = minutes.get(name, 0.0) + (time.perf_counter() - t0) / 60
        return result

    corpus, heldout = out / "corpus", out / "heldout"
    if not (corpus / "manifest.json").exists():
        say(f"corpus: {cfg.corpus_size} scenes at {cfg.image_size} px ({cfg.setting} captions)")
        timed("corpus", lambda: build(load_config(CorpusConfig, MANIFESTS / "corpus" / SETTINGS[cfg.setting],
                                                  [f"source.n={cfg.corpus_size}", f"image_size={cfg.image_size}",
                                                   f"seed={cfg.seed}"]), corpus, workers=None))
    if not (heldout / "manifest.json").exists():  # another corpus seed: scenes the models never trained on
        build(load_config(CorpusConfig, MANIFESTS / "corpus" / "scenes.yaml",
                          [f"source.n={cfg.recon_limit}", f"image_size={cfg.image_size}", f"seed={cfg.seed + 1000}",
                           "name=heldout"]), heldout, workers=1)
    web = cfg.setting == "web"
    pre = out / "pre"
    exact_pre = out / "pre-exact" if web else pre  # where the exact-caption models are pretrained (from_scratch)
    if not (pre / "summary.json").exists():
        if cfg.from_scratch and not (exact_pre / "summary.json").exists():
            # the shipped models' own corpus (60,000 scenes, 30% framed prompt scenes), not the RL stages' corpus
            pre_corpus = out / "pretrain-corpus"
            if not (pre_corpus / "manifest.json").exists():
                say(f"pretraining corpus: {PRETRAIN_CORPUS} -> {pre_corpus}")
                timed("corpus", lambda: build(load_config(CorpusConfig, PRETRAIN_CORPUS,
                                                          [f"image_size={cfg.image_size}", f"seed={cfg.seed}",
                                                           *cfg.pretrain_corpus]),
                                              pre_corpus, workers=None))
            say(f"pretrain -> {exact_pre}")
            c = load_config(PretrainConfig, MANIFESTS / "train" / "pretrain-scene.yaml",
                            [f"corpus={pre_corpus}", f"image_size={cfg.image_size}", f"seed={cfg.seed}", *cfg.pretrain],
                            kind="pretrain")
            timed("pretrain", lambda: pretrain(c, exact_pre, resume=(exact_pre / "config.yaml").exists(),
                                               progress=progress))
        if cfg.from_scratch and web:  # the web-caption encoder: caption SFT of the exact one on the web corpus
            say(f"web-caption encoder: SFT of {exact_pre / 'encoder'} on {corpus} -> {pre}")
            c = load_config(PretrainConfig, MANIFESTS / "train" / "pretrain-scene-web.yaml",
                            [f"corpus={corpus}", f"encoder={exact_pre / 'encoder'}", f"image_size={cfg.image_size}",
                             f"seed={cfg.seed}", *cfg.web_encoder], kind="pretrain")
            timed("pretrain", lambda: pretrain(c, pre, resume=(pre / "config.yaml").exists(), progress=progress))
        elif not cfg.from_scratch:
            say(f"pretrained scene models: shipped checkpoints -> {pre} (from_scratch=true pretrains them)")
            pre.mkdir(parents=True, exist_ok=True)
            install_shipped(pre, "web" if web else "scene")
    if web and cfg.from_scratch and not (pre / "decoder").exists():  # the web SFT trains the encoder only
        shutil.copytree(exact_pre / "decoder", pre / "decoder")

    for k in range(cfg.seeds):
        root, seed = seed_root(out, k), cfg.seed + k
        plan = [("s1", "stage1", Stage1Config, stage1, pre, cfg.stage1),
                ("s2", "stage2", Stage2Config, stage2, root / "s1", cfg.stage2)]
        if cfg.runs_constant(k):
            plan += [("s1-constant", "stage1", Stage1Config, stage1, pre, [*cfg.stage1, "reward={constant: 1.0}"]),
                     ("s2-constant", "stage2", Stage2Config, stage2, root / "s1", [*cfg.stage2, "reward={constant: 1.0}"])]
        if cfg.controls and cfg.shuffled_controls:
            plan += [("s1-shuffled", "stage1", Stage1Config, stage1, pre, [*cfg.stage1, "shuffle_reward_images=true"]),
                     ("s2-shuffled", "stage2", Stage2Config, stage2, root / "s1",
                      [*cfg.stage2, "shuffle_reward_images=true"])]
        if cfg.controls and web:
            plan += [("s1-length", "stage1", Stage1Config, stage1, pre, [*cfg.stage1, "reward={length: 1.0}"])]
        for name, kind, Config, fn, init, over in plan:
            if not (root / name / "summary.json").exists():
                say(f"seed {seed}: {kind} -> {root / name}")
            minutes[kind] = minutes.get(kind, 0.0) + _stage(kind, Config, fn, root / name, cfg, corpus, init, seed,
                                                            over, progress)

    evals = out / "eval"
    timed("eval", lambda: ev.evaluate_run(cfg, pre, "pretrain", evals / "pretrain", heldout, say))
    for k in range(cfg.seeds):
        root = seed_root(out, k)
        e = root / "eval"
        timed("eval", lambda: ev.evaluate_run(cfg, root / "s2", "unified-grpo", e / "unified-grpo", heldout, say))
        timed("eval", lambda: ev.evaluate_run(cfg, root / "s1", "stage1", e / "stage1", heldout, say,
                                              parts=("recon",), reliance=False))
        if cfg.runs_constant(k):
            timed("eval", lambda: ev.evaluate_run(cfg, root / "s1-constant", "stage1-constant", e / "stage1-constant",
                                                  heldout, say, parts=("mmt-bench", "scene-captions", "recon"),
                                                  reliance=False))
            timed("eval", lambda: ev.evaluate_run(cfg, root / "s2-constant", "stage2-constant", e / "stage2-constant",
                                                  heldout, say, parts=("geneval", "dpg-bench"), reliance=False))
        s1_controls = [c for c, on in (("shuffled", cfg.controls and cfg.shuffled_controls),
                                       ("length", cfg.controls and web)) if on]
        for c in s1_controls:
            timed("eval", lambda: ev.evaluate_run(cfg, root / f"s1-{c}", f"stage1-{c}", e / f"stage1-{c}",
                                                  heldout, say, parts=("mmt-bench", "scene-captions", "recon"),
                                                  reliance=False))
        if cfg.controls and cfg.shuffled_controls:
            timed("eval", lambda: ev.evaluate_run(cfg, root / "s2-shuffled", "stage2-shuffled", e / "stage2-shuffled",
                                                  heldout, say, parts=("geneval", "dpg-bench"), reliance=False))
    if cfg.controls:
        blind = out / "blind"
        if not (blind / "summary.json").exists() and (SHIPPED / "blind-encoder").is_dir() and not cfg.from_scratch:
            blind.mkdir(parents=True, exist_ok=True)
            install_shipped(blind, "blind")
        if (blind / "summary.json").exists():
            timed("eval", lambda: ev.evaluate_run(cfg, blind, "blind-encoder", evals / "blind-encoder", heldout, say,
                                                  parts=("mmt-bench", "scene-captions"), reliance=False))
        ceiling = exact_pre if cfg.from_scratch else out / "exact-encoder"
        if web and not (ceiling / "summary.json").exists() and not cfg.from_scratch:
            ceiling.mkdir(parents=True, exist_ok=True)
            install_shipped(ceiling, "scene")
        if web and (ceiling / "summary.json").exists():  # the ceiling: what the encoder says with exact labels
            timed("eval", lambda: ev.evaluate_run(cfg, ceiling, "exact-caption-encoder", evals / "exact-caption-encoder",
                                                  heldout, say, parts=("mmt-bench", "scene-captions"), reliance=False))
        for gen in ("noise", "random"):
            timed("eval", lambda: ev.geneval(cfg, evals / gen / "geneval", generator=gen))
            timed("eval", lambda: ev.dpg(cfg, evals / gen / "dpg-bench", generator=gen))
    if cfg.alignment:
        timed("eval", lambda: ev.alignment(cfg, pre, "pretrain", evals / "pretrain", heldout, say))
        timed("eval", lambda: ev.alignment(cfg, out / "s2", "unified-grpo", evals / "unified-grpo", heldout, say))

    rows = web_headline_rows(out, cfg.seeds, cfg.controls) if web else headline_rows(out, cfg.seeds, cfg.controls)
    results = [p for p in sorted(evals.glob("*/*/results.json")) if p.parent.parent.name in ("pretrain", "unified-grpo")]
    results = [p.parent for p in results] + [out / "s1" / "results", out / "s2" / "results"]
    if cfg.controls:
        results += [out / run / "results" for run in ("s1-constant", "s2-constant", "s1-shuffled", "s2-shuffled",
                                                      "s1-length") if (out / run / "results").exists()]
    headline = {"rows": rows, "seeds": cfg.seeds, "wall_minutes": {k: round(v, 2) for k, v in minutes.items()}}
    (out / "headline.json").write_text(json.dumps(headline, indent=2) + "\n")
    lead = web_report_lead(out) if web else []
    report = build_report(results, out / "report.html", title="uae demo: Unified-GRPO on the scene world"
                          + (" (web captions)" if web else " (exact captions)"), headline=rows, lead=lead)
    return {**headline, "report": str(report)}
