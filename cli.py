"""`uae` command line: parses options, loads a manifest, calls one function. No logic lives here."""
from __future__ import annotations

import functools
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from uae_data.core.errors import ConfigError, UserError
from uae_data.core.paths import manifests_dir
from uae_data.core.progress import progress_bar

from uae_train.cli_text import EVAL_EXAMPLES, OVERRIDES, RESUME, TRAIN_EXAMPLES

app = typer.Typer(help="uae: unified multimodal models as auto-encoders.", no_args_is_help=True, add_completion=False)
train_app = typer.Typer(help=TRAIN_EXAMPLES, no_args_is_help=True)
eval_app = typer.Typer(help=EVAL_EXAMPLES, no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
# Logs and pipes get no model-loading bars (transformers' "Loading weights" bar came before an error's one line);
# a terminal keeps them. HF_HUB_DISABLE_PROGRESS_BARS=0 asks for them anywhere.
if not sys.stderr.isatty() and not os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"):
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
err = Console(stderr=True, soft_wrap=True)  # paths are never broken across lines
out = Console(soft_wrap=True)
MANIFESTS = manifests_dir()
# modules defining the manifest kinds that are not benchmarks (benchmarks declare theirs: uae_eval.benchmarks)
CONFIG_MODULES = ("uae_data.corpus_config", "uae_train.stages.pretrain", "uae_train.stages.yfork_train",
                  "uae_train.stages.gen_for_und", "uae_train.stages.und_for_gen", "uae_train.demo.run")
CORPUS_DEFAULTS = {"scenes": "scenes.yaml", "urls": "urls-example.yaml", "folder": "folder-example.yaml",
                   "parquet": "parquet-example.yaml", "shards": "shards-example.yaml"}


def friendly(fn: Callable) -> Callable:
    """Expected bad input -> one red line on stderr and exit 2; Ctrl-C -> exit 130 with a resume hint.

    Every path option is checked first (uae_data.core.user_paths: missing, wrong kind, unwritable --out); a file a
    loader refuses later (pickle, safetensors, OS or decoding error) is named with its option. UAE_DEBUG=1 re-raises
    those last-resort errors with their traceback, for debugging."""
    from uae_data.core import user_paths

    options = user_paths.path_options(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from uae_eval.results import ResultsError

        given = user_paths.given_paths(options, kwargs)
        fresh = user_paths.fresh_outputs(given)
        try:
            user_paths.check_given(given)
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]: finished work is kept; run the same command again to resume.")
            raise typer.Exit(130)
        except Exception as e:  # noqa: BLE001  user errors, and refusals of a given file; a bug re-raises
            if isinstance(e, (UserError, ResultsError, FileNotFoundError)):
                message = str(e)
            elif user_paths.is_refusal(e) and os.environ.get("UAE_DEBUG") != "1":
                message = user_paths.explain(e, given)
            else:
                raise
            user_paths.discard_unfinished(fresh)  # a failed start leaves nothing half-written
            fail(message)

    return wrapper


def fail(message: str) -> None:
    """The one red line (its first line only, brackets shown as written: `uae[extra]`) and exit 2."""
    err.print(f"[red]error:[/red] {escape((message.strip().splitlines() or [''])[0])}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def _version(value: bool) -> None:
    if value:
        from uae_data.core.versions import version_line

        out.print(version_line())
        raise typer.Exit(0)


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="print the installed uae version and exit")) -> None:
    """uae: unified multimodal models as auto-encoders."""


def split_args(args: Optional[List[str]]) -> tuple[Optional[Path], list[str]]:
    """[MANIFEST] [key.sub=value ...] -> (manifest, overrides)."""
    manifests = [Path(a) for a in args or [] if "=" not in a]
    if len(manifests) > 1:
        raise typer.BadParameter(f"only one manifest may be given (got {manifests[0]} and {manifests[1]})")
    return (manifests[0] if manifests else None), [a for a in args or [] if "=" in a]


def load_manifest(Config: type, kind: str, default: str | Path | None, args: Optional[List[str]],
                  shortcuts: Optional[dict] = None) -> Any:
    """[MANIFEST] [key=value ...] plus option shortcuts ({key: value}, None = not given) -> the checked config;
    without a manifest: `default` (relative to manifests/), or with none the dataclass defaults."""
    from uae_data.core.config import load_config

    manifest, overrides = split_args(args)
    overrides += [f"{k}={v}" for k, v in (shortcuts or {}).items() if v is not None]
    return load_config(Config, manifest or (MANIFESTS / default if default else None), overrides, kind=kind)


def load_benchmark(name: str, args: Optional[List[str]], shortcuts: Optional[dict] = None, out_dir: Optional[Path] = None):
    """(registry record, config) of benchmark `name` (uae_eval.benchmarks): its config class and default manifest;
    an --out holding another benchmark's results or unrelated files is refused (uae_eval.results.claim_out)."""
    from uae_eval.benchmarks import find
    from uae_eval.results import claim_out

    claim_out(out_dir, name) if out_dir is not None else None

    return (bench := find(name)), load_manifest(bench.config, name, bench.manifest, args, shortcuts)


@app.command("build-corpus", epilog=OVERRIDES)
@friendly
def build_corpus(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default: manifests/corpus/scenes.yaml, or with --source S that source's example manifest, e.g. urls-example.yaml, with its filters)"),
    out_dir: Path = typer.Option(..., "--out", help="corpus folder to write (re-running the same command resumes)"),
    limit: Optional[int] = typer.Option(None, help="use at most N input rows"),
    workers: Optional[int] = typer.Option(None, help="parallel shard builders (default: all cores)"),
    engine: str = typer.Option("local", help="local (multiprocessing) or ray (Ray Data actor pools for CLIP/recaptioning)"),
    source: Optional[str] = typer.Option(None, help="scenes | urls | folder | parquet | shards (overrides the manifest)"),
    input_path: Optional[str] = typer.Option(None, "--input", help="the source's input: url list, image folder, parquet table or shard folder"),
    captioner: Optional[str] = typer.Option(None, help="scene | keep | hf | openai (overrides the manifest; openai: captioner.endpoint=URL)"),
    caption_model: Optional[str] = typer.Option(None, help="hf captioner: model name or local folder; openai: the served model name"),
) -> None:
    """Build a long-caption image corpus as WebDataset shards.

    Example: uae build-corpus manifests/corpus/scenes.yaml --out /tmp/corpus --limit 3000
    Example: uae build-corpus --source urls --input urls.csv --captioner keep --out /tmp/corpus
    """
    import json
    from uae_data.corpus_config import CorpusConfig
    from uae_data.pipeline import build, build_notes

    shortcuts = {"limit": limit, "source.name": source, "source.input": input_path, "captioner.name": captioner,
                 "captioner.model": caption_model}
    # no manifest: start from the source's own example manifest, so its filters apply (min side, aspect, dedup)
    default = Path("corpus") / CORPUS_DEFAULTS.get(source or "scenes", "scenes.yaml")
    cfg = load_manifest(CorpusConfig, "corpus", default, args,  # JSON-quoted: valid YAML text
                        {k: json.dumps(v) for k, v in shortcuts.items() if v is not None})
    with progress_bar(f"building {cfg.name}") as update:
        manifest = build(cfg, out_dir, workers=workers, on_progress=update, engine=engine)
    c = manifest["counts"]
    out.print(f"corpus {out_dir}: {c['samples']} samples in {c['shards']} shards from {c['input_rows']} input rows "
              f"({c.get('status_dropped', 0)} dropped, {c.get('status_failed', 0)} failed: reasons in stats.parquet)")
    out.print("\n".join(notes)) if (notes := build_notes(manifest)) else None  # web captions' audit, served usage


@train_app.command("pretrain", epilog=OVERRIDES)
@friendly
def train_pretrain(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/train/pretrain-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="run folder (checkpoints, metrics.jsonl, encoder/, decoder/)"),
    model: Optional[str] = typer.Option(None, help="encoder | decoder | both (overrides the manifest)"),
    corpus: Optional[Path] = typer.Option(None, help="corpus folder (overrides the manifest)"),
    resume: bool = typer.Option(False, help=RESUME),
) -> None:
    """Pretrain the decoder on a long-caption corpus and SFT the encoder to write the captions.

    Example: uae train pretrain manifests/train/pretrain-scene.yaml --corpus out/corpus --out runs/pre
    """
    from uae_data import distributed
    from uae_train.run_summaries import pretrain_summary
    from uae_train.stages.pretrain import PretrainConfig, pretrain

    cfg = load_manifest(PretrainConfig, "pretrain", "train/pretrain-scene.yaml", args, {"model": model, "corpus": corpus})
    summary = pretrain(cfg, out_dir, resume=resume, progress=progress_bar)
    if distributed.current().main:  # rank 0 reports
        out.print(pretrain_summary(summary))


@train_app.command("yfork", epilog=OVERRIDES)
@friendly
def train_yfork(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/train/yfork-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="run folder (config.yaml, metrics.jsonl, model/, summary.json)"),
    corpus: Optional[Path] = typer.Option(None, help="corpus folder (overrides the manifest)"),
) -> None:
    """Train UniFork's Y-shaped model (or the fully shared baseline) on image->text and text->image at once.

    Example: uae train yfork manifests/train/shared-scene.yaml --corpus out/corpus --out runs/shared
    """
    from uae_train.run_summaries import yfork_summary
    from uae_train.stages.yfork_train import YForkTrainConfig, train_yfork as train

    cfg = load_manifest(YForkTrainConfig, "yfork", "train/yfork-scene.yaml", args, {"corpus": corpus})
    with progress_bar(f"train {cfg.name}") as update:
        s = train(cfg, out_dir, on_progress=update)
    out.print(yfork_summary(s, out_dir))


def _rl_command(stage: str, init_help: str, doc: str) -> None:
    """`uae train stage1|stage2`: both RL stages take the same options and report the same way."""

    def command(
        args: Optional[List[str]] = typer.Argument(None, help=f"\\[MANIFEST] \\[key=value ...] (default manifests/train/{stage}-scene.yaml)"),
        out_dir: Path = typer.Option(..., "--out", help="run folder (encoder/, decoder/, metrics.jsonl, eval.jsonl, results/)"),
        init: Optional[Path] = typer.Option(None, help=init_help),
        corpus: Optional[Path] = typer.Option(None, help="corpus folder (overrides the manifest)"),
        resume: bool = typer.Option(False, help=RESUME),
    ) -> None:
        from uae_train.run_summaries import rl_summary

        if stage == "stage1":
            from uae_train.stages.gen_for_und import Stage1Config as Config, stage1 as run
        else:
            from uae_train.stages.und_for_gen import Stage2Config as Config, stage2 as run
        cfg = load_manifest(Config, stage, f"train/{stage}-scene.yaml", args, {"init": init, "corpus": corpus})
        summary = run(cfg, out_dir, resume=resume, progress=progress_bar)
        if summary:  # empty on the other ranks of a multi-process run: rank 0 reports
            out.print(rl_summary(stage, summary, out_dir))

    command.__doc__ = doc
    train_app.command(stage, epilog=OVERRIDES)(friendly(command))


_rl_command("stage1", "run folder to start from (pretrain output: encoder/ + decoder/)",
            """Unified-GRPO stage 1 (generation for understanding): the encoder is the policy, the frozen decoder
    reconstructs each sampled caption, reward = similarity(original, reconstruction).

    Example: uae train stage1 manifests/train/stage1-scene.yaml --init runs/pre --out runs/s1
    """)
_rl_command("stage2", "run folder to start from (pretrain or stage1 output)",
            """Unified-GRPO stage 2 (understanding for generation): the decoder is the policy, sampling through
    Flow-GRPO's SDE; the frozen encoder captions, reward = similarity(original, painting).

    Example: uae train stage2 manifests/train/stage2-scene.yaml --init runs/s1 --out runs/s2
    """)


def _ranks():
    """This process's place under torchrun / accelerate launch (items split over processes, rank 0 reports)."""
    from uae_data import distributed

    return distributed.setup("auto")


@eval_app.command("geneval", epilog=OVERRIDES)
@friendly
def eval_geneval(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/eval/geneval-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="results folder"),
    generator: Optional[str] = typer.Option(None, help="oracle | random | noise (scene world; noise = object-free images, family via generator_options.family=...) — overrides the manifest"),
    images: Optional[Path] = typer.Option(None, help="score a folder in the official layout (NNNNN/samples/*.png)"),
    detections: Optional[Path] = typer.Option(None, help="score precomputed detections (jsonl) instead of images"),
    metadata: Optional[Path] = typer.Option(None, help="prompt metadata jsonl (official format) the images/detections are scored against (default: the manifest's)"),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="score an --images/--detections input that misses prompts or images; results are marked partial"),
    encoder: Optional[Path] = typer.Option(None, help="with --decoder: generate with our encoder+decoder (saved folders)"),
    decoder: Optional[Path] = typer.Option(None, help="decoder folder (uae train pretrain output)"),
    pipeline: Optional[str] = typer.Option(None, help="generate with any diffusers text-to-image pipeline (folder or hub name); steps, guidance, size, dtype from the manifest"),
    steps: Optional[int] = typer.Option(None, help="sampling steps for --decoder (default 20)"),
    guidance: Optional[float] = typer.Option(None, help="classifier-free guidance for --decoder (default 1.0)"),
) -> None:
    """GenEval (official rules): per-tag accuracy and overall = mean of the six tags.

    Example: uae eval geneval manifests/eval/geneval-scene.yaml --generator oracle --out runs/geneval

    Any diffusers model, official prompts, images in the official layout (rerunning continues an interrupted run):
    uae eval geneval manifests/eval/geneval-official.yaml --pipeline MY_PIPELINE detector.checkpoint=M2F.pth --out runs/ge
    """
    from uae_train.evaluation.inputs import geneval_generator

    dist = _ranks()
    bench, cfg = load_benchmark("geneval", args, {"generator": generator, "allow_partial": "true" if allow_partial else None}, out_dir)
    given = {"--images": images, "--detections": detections, "--generator": generator, "--allow-partial": allow_partial}
    generate, model_info = geneval_generator(cfg, encoder, decoder, pipeline, steps=steps, guidance=guidance, given=given)
    with progress_bar("geneval", enabled=None if dist.main else False) as update:
        res = bench.run(cfg, out_dir, generate=generate, images=images, detections=detections, metadata=metadata,
                        model=model_info, on_progress=update)
    if dist.main:
        out.print(bench.summary(res, out_dir), soft_wrap=True)


@eval_app.command("mmt-bench", epilog=OVERRIDES)
@friendly
def eval_mmt(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/eval/mmt-bench-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="results folder"),
    tsv: Optional[Path] = typer.Option(None, help="an MMT-Bench TSV in the official layout (overrides the manifest)"),
    model: Optional[str] = typer.Option(None, help="oracle | random | caption-reader | a VLM folder/name"),
    encoder: Optional[Path] = typer.Option(None, help="caption-reader: our encoder folder that writes the captions"),
    predictions: Optional[Path] = typer.Option(None, help="score answers produced elsewhere (jsonl: index, prediction); every row must be answered"),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="with --predictions: score unanswered rows as failed answers (recorded as n_missing) instead of refusing"),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="name recorded in results for what made the answers (default: the predictions file's stem, or the model)"),
) -> None:
    """MMT-Bench with VLMEvalKit's prompt, answer extraction and aggregation.

    Example: uae eval mmt-bench --tsv manifests/mmt_bench/scene_mmt.tsv --model random --out runs/mmt
    """
    from uae_train.evaluation.inputs import MMT_RULES, mmt_answerer, refuse_unused

    dist = _ranks()
    refuse_unused({"--predictions": predictions, "--model": model, "--encoder": encoder,
                   "--allow-missing": allow_missing}, MMT_RULES)
    bench, cfg = load_benchmark("mmt-bench", args, {"tsv": tsv, "model": model,
                                                    "allow_missing": "true" if allow_missing else None}, out_dir)
    answer = mmt_answerer(cfg.model, seed=cfg.seed, encoder=encoder, server=cfg.server) if predictions is None else None
    res = bench.run(cfg, out_dir, answer=answer, predictions=predictions, model_name=model_name)
    if dist.main:
        out.print(bench.summary(res, out_dir), soft_wrap=True)


@eval_app.command("recon", epilog=OVERRIDES)
@friendly
def eval_recon(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/eval/recon-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="results folder"),
    data: Optional[Path] = typer.Option(None, help="corpus folder or image folder (overrides the manifest); with --reconstructions the reference images"),
    encoder: Optional[str] = typer.Option(None, help="caption with this model instead of the manifest's captioner: a saved uae encoder or any image-text-to-text VLM (folder or hub name)"),
    decoder: Optional[str] = typer.Option(None, help="reconstruct with this model: a diffusers text-to-image pipeline (folder or hub name) or a saved uae decoder"),
    steps: Optional[int] = typer.Option(None, help="sampling steps for --decoder (overrides the manifest's steps)"),
    reconstructions: Optional[Path] = typer.Option(None, help="score this folder of reconstructions made elsewhere against --data, paired by file name as UAE's Score_i2i.py pairs them (no model runs)"),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="with --reconstructions: score around unmatched or unreadable images (results say partial and list them) instead of refusing"),
) -> None:
    """Reconstruction fidelity: image -> caption -> image, per-metric similarity with bootstrap CIs.

    Example: uae eval recon manifests/eval/recon-scene.yaml --data out/corpus --out runs/recon

    Unified-Bench for your own model (four backbones, their mean is the score), or for reconstructions made elsewhere:
    uae eval recon manifests/eval/unified-bench.yaml --data PHOTOS --encoder VLM --decoder PIPELINE --out runs/ub
    uae eval recon manifests/eval/unified-bench.yaml --data PHOTOS --reconstructions RECONS --out runs/ub
    """
    from uae_eval.recon import prepare
    from uae_train.evaluation.inputs import RECON_RULES, recon_models, refuse_unused

    dist = _ranks()
    refuse_unused({"--reconstructions": reconstructions, "--encoder": encoder, "--decoder": decoder, "--steps": steps,
                   "--allow-partial": allow_partial}, RECON_RULES)
    bench, cfg = load_benchmark("recon", args, {"data": data, "steps": steps, "reconstructions": reconstructions,
                                                "allow_partial": "true" if allow_partial else None}, out_dir)
    metrics = prepare(cfg, encoder, decoder)  # bad folders, pairs or backbones fail before any model loads
    res = bench.run(cfg, out_dir, *recon_models(cfg, encoder, decoder), metrics=metrics)  # caption, generate, model
    if dist.main:
        out.print(bench.summary(res, out_dir), soft_wrap=True)


@eval_app.command("alignment", epilog=OVERRIDES)
@friendly
def eval_alignment(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/eval/alignment-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="results folder"),
    model: Path = typer.Option(..., help="encoder folder (understanding), decoder folder (generation) or Y-fork model folder (both)"),
    data: Optional[Path] = typer.Option(None, help="corpus folder of paired samples (overrides the manifest)"),
    encoder: Optional[Path] = typer.Option(None, help="for a decoder: its encoder folder (default: the sibling encoder/)"),
) -> None:
    """Per-layer image/text representation alignment (UniFork): mutual kNN (and CKNNA) per layer.

    Example: uae eval alignment --model runs/pre/encoder --data out/corpus --out runs/align
    """
    from uae_train.evaluation.inputs import alignment_features, alignment_pairs

    bench, cfg = load_benchmark("alignment", args, {"data": data}, out_dir)
    features, info = alignment_features(cfg, model, alignment_pairs(cfg), encoder)
    out.print(bench.summary(bench.run(cfg, out_dir, features, model=info), out_dir), soft_wrap=True)


def _generic_eval(bench) -> Callable:
    """`uae eval NAME [MANIFEST] [key=value ...] --out D` for a registered benchmark without a command of its own."""
    default = f"default manifests/{bench.manifest}" if bench.manifest else "default: the config's defaults"

    def command(args: Optional[List[str]] = typer.Argument(None, help=f"\\[MANIFEST] \\[key=value ...] ({default})"),
                out_dir: Path = typer.Option(..., "--out", help="results folder")) -> None:
        _, cfg = load_benchmark(bench.name, args, out_dir=out_dir)
        out.print(bench.summary(bench.run(cfg, out_dir), out_dir), soft_wrap=True)

    return command


def _add_benchmark_commands() -> None:
    """One generic eval command per registered benchmark (plugins: uae_eval.benchmarks) that has no command above."""
    from uae_eval.benchmarks import load_all
    from uae_train.cli_dpg import dpg_command  # dpg-bench's command: its options live there (this file is full)

    eval_app.command("dpg-bench", epilog=OVERRIDES)(friendly(dpg_command(load_benchmark, _ranks, out)))
    try:
        benches = load_all(skip={c.name for c in eval_app.registered_commands})
    except UserError as e:  # a broken plugin list must not take every other command down
        err.print(f"[yellow]warning:[/yellow] {e}", highlight=False, soft_wrap=True)
        return
    for b in benches:
        example = f"Example: uae eval {b.name} MANIFEST --out runs/{b.name}"
        eval_app.command(b.name, help=f"{b.help}\n\n{example}", epilog=OVERRIDES)(friendly(_generic_eval(b)))


_add_benchmark_commands()


@app.command("report")
@friendly
def report(
    results: List[Path] = typer.Argument(..., help="results folders or results.json files"),
    out_file: Path = typer.Option(..., "--out", help="report.html or report.md"),
    headline: Optional[Path] = typer.Option(None, "--headline", help='headline.json ({"rows": [...]}): a before -> after table with CIs first'),
) -> None:
    """Readable report (headline table, tables, plots, sample grid) from one or more results.

    Example: uae report runs/geneval --out report.html
    """
    from uae_eval.report import build_report

    path = build_report(list(results), out_file, headline=headline)
    out.print(f"report written: {path}")


@app.command("check")
@friendly
def check(
    results: Path = typer.Argument(..., help="results folder or results.json"),
    baseline: Optional[Path] = typer.Option(None, help="baseline JSON to compare against"),
    tolerance: float = typer.Option(0.01, help="allowed drop per metric"),
    metric: Optional[List[str]] = typer.Option(None, help="only these metrics (repeatable)"),
    write_baseline: Optional[Path] = typer.Option(None, help="write a baseline from RESULTS instead of checking"),
) -> None:
    """Regression check: exit 0 ok, 1 when a metric dropped beyond tolerance, 2 on unreadable/mismatched files.

    Example: uae check runs/geneval --baseline manifests/baselines/geneval-scene-oracle.json
    """
    from uae_eval.check import run_check, write_baseline as write_base

    if write_baseline is not None:
        raise typer.Exit(write_base(results, write_baseline))
    if baseline is None:
        raise ConfigError("give --baseline FILE (or --write-baseline FILE)")
    raise typer.Exit(run_check(results, baseline, tolerance, metric or None))


@app.command("validate")
@friendly
def validate(manifests: Optional[List[Path]] = typer.Argument(None, help="manifests to check (default: every manifests/**/*.yaml)")) -> None:
    """Check manifests against their config schemas without running anything.

    Example: uae validate manifests/corpus/scenes.yaml
    """
    from uae_data.core.config import validate_manifest
    from uae_eval.benchmarks import load_all

    for module in CONFIG_MODULES:  # the manifest kinds that are not benchmarks; load_all() brings the benchmarks'
        importlib.import_module(module)
    load_all()
    paths = list(manifests or sorted(MANIFESTS.rglob("*.yaml")))
    bad = 0
    for p in paths:
        try:
            kind = validate_manifest(p)
            out.print(f"[green]ok[/green] {p} ({kind})", highlight=False)
        except ConfigError as e:
            bad += 1
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
    raise typer.Exit(2 if bad else 0)


@app.command("demo", epilog=OVERRIDES)
@friendly
def demo(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/demo/scene-<scale>.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="demo folder (re-running the same command continues it)"),
    scale: str = typer.Option("cpu", help="cpu (2 cores, <= 15 min) | gpu (64 px, longer training)"),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="RL seeds: stage 1, stage 2 and their constant-reward "
                                                               "controls once per seed (mean ± sd, 95% CI of the gain)"),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="pretrain the scene models first instead of "
                                                                    "starting from the shipped checkpoints"),
) -> None:
    """The whole loop on the scene world: corpus -> pretrained models -> stage1 -> stage2 -> evals -> report.

    Starts from the shipped scene checkpoints (uae_train/scene_models/, see its MODEL_CARD.md) unless
    --from-scratch. Every stage sits beside its controls (constant reward, blind encoder, object-free
    images, shuffled captions). Example: uae demo --out runs/demo --seeds 3
    """
    from uae_data.core.device import default_device
    from uae_train.demo.run import DemoConfig, demo as run_demo
    from uae_train.run_summaries import demo_summary

    if scale not in ("cpu", "gpu"):
        raise ConfigError(f"--scale must be cpu or gpu, got {scale!r}")
    if scale == "gpu" and default_device() != "cuda":
        raise ConfigError("--scale gpu needs a CUDA device and none is visible here; use --scale cpu")
    cfg = load_manifest(DemoConfig, "demo", f"demo/scene-{scale}.yaml", args,
                        {"seeds": seeds, "from_scratch": "true" if from_scratch else None})
    result = run_demo(cfg, out_dir, progress=progress_bar, say=lambda m: out.print(f"[bold]demo[/bold] {m}"))
    out.print(demo_summary(result))


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
