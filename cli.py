"""`uae` command line: parses options, loads a manifest, calls one function. No logic lives here."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console

# Help texts go through rich markup: a literal "[" is written "\\[".
OVERRIDES = ("\\[MANIFEST] is a YAML manifest (default: the one named above; `uae validate MANIFEST` checks it). "
             "Each key=value after it overrides one field: dotted keys reach nested sections "
             "(filters.min_side=200, source.options.timeout=5, decoder_options.patch_size=16), values are YAML "
             "(true, 3e-3, null, \\[a, b], {k: v}). Unknown keys and bad values are refused in one line.")
TRAIN_EXAMPLES = """Pretrain, then Unified-GRPO stage 1 (encoder) and stage 2 (decoder). Every run folder holds config.yaml,
metrics.jsonl, checkpoints/ and results/; rerunning the same command resumes it.

Examples:

  uae build-corpus --limit 3000 --out out/corpus

  uae train pretrain manifests/train/pretrain-scene.yaml --corpus out/corpus --out out/pre

  uae train stage1 --init out/pre --corpus out/corpus --out out/s1

  uae train stage2 --init out/s1 --corpus out/corpus --out out/s2 steps=40

  uae train pretrain encoder=/models/Qwen2.5-VL-3B-Instruct model=encoder --corpus out/corpus --out out/real"""
EVAL_EXAMPLES = """Score-compatible evaluation harnesses; each writes results.json + samples.jsonl (read by uae report/check).

Examples:

  uae eval geneval --generator oracle --out runs/geneval

  uae eval geneval manifests/eval/geneval-official.yaml --images my_samples/ detector.checkpoint=/models/m2f.pth --out runs/g

  uae eval mmt-bench --model caption-reader --encoder out/pre/encoder --out runs/mmt

  uae eval mmt-bench --tsv MMT-Bench_VAL.tsv --predictions my_answers.jsonl --model-name my-vlm --out runs/mmt

  uae eval recon --data out/corpus --encoder out/pre/encoder --decoder out/pre/decoder --out runs/recon

  uae eval alignment --out runs/alignment"""
app = typer.Typer(help="uae: unified multimodal models as auto-encoders.", no_args_is_help=True, add_completion=False)
train_app = typer.Typer(help=TRAIN_EXAMPLES, no_args_is_help=True)
eval_app = typer.Typer(help=EVAL_EXAMPLES, no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
err = Console(stderr=True)
out = Console()

def _manifests() -> Path:
    from uae_data.core.paths import manifests_dir

    return manifests_dir()


MANIFESTS = _manifests()
CORPUS_DEFAULTS = {"scenes": "scenes.yaml", "urls": "urls-example.yaml", "folder": "folder-example.yaml",
                   "parquet": "parquet-example.yaml", "shards": "shards-example.yaml"}


def _user_errors() -> tuple[type[BaseException], ...]:
    from uae_data.core.errors import UserError
    from uae_eval.results import ResultsError

    return (UserError, ResultsError, FileNotFoundError)


def friendly(fn: Callable) -> Callable:
    """Expected bad input -> one red line on stderr and exit 2; Ctrl-C -> exit 130 with a resume hint."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            folder = kwargs.get("out_dir")  # every command that writes a folder names its --out `out_dir`
            if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
                from uae_data.core.errors import ConfigError

                raise ConfigError(f"--out {folder} is a file; give a folder to write into (nothing was written)")
            return fn(*args, **kwargs)
        except _user_errors() as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/yellow]: finished work is kept; run the same command again to resume.")
            raise typer.Exit(130)

    return wrapper


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            out.print(f"uae {version('uae')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            out.print("uae (not installed: run `pip install -e .`)")
        raise typer.Exit(0)


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                            help="print the installed uae version and exit")) -> None:
    """uae: unified multimodal models as auto-encoders."""


def split_args(args: Optional[List[str]]) -> tuple[Optional[Path], list[str]]:
    """[MANIFEST] [key.sub=value ...] -> (manifest, overrides)."""
    manifest, overrides = None, []
    for a in args or []:
        if "=" in a:
            overrides.append(a)
        elif manifest is None:
            manifest = Path(a)
        else:
            raise typer.BadParameter(f"only one manifest may be given (got {manifest} and {a})")
    return manifest, overrides


def _register_config_kinds() -> None:
    """Import every module that defines a manifest kind, so `validate` knows them all."""
    import uae_data.corpus_config  # noqa: F401  (corpus)
    import uae_eval.geneval.harness  # noqa: F401  (geneval)
    import uae_eval.mmt_bench.harness  # noqa: F401  (mmt-bench)
    import uae_eval.recon  # noqa: F401  (recon)
    import uae_train.stages.pretrain  # noqa: F401  (pretrain)
    import uae_eval.alignment  # noqa: F401  (alignment)
    import uae_train.stages.yfork_train  # noqa: F401  (yfork)
    import uae_train.stages.gen_for_und  # noqa: F401  (stage1)
    import uae_train.stages.und_for_gen  # noqa: F401  (stage2)
    import uae_train.demo  # noqa: F401  (demo)


def not_built(what: str) -> None:
    err.print(f"[yellow]{what} is not built yet[/yellow] (see the project's open issues).")
    raise typer.Exit(2)


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
    captioner: Optional[str] = typer.Option(None, help="scene | keep | hf (overrides the manifest)"),
    caption_model: Optional[str] = typer.Option(None, help="hf captioner: model name or local folder"),
) -> None:
    """Build a long-caption image corpus as WebDataset shards.

    Example: uae build-corpus manifests/corpus/scenes.yaml --out /tmp/corpus --limit 3000
    Example: uae build-corpus --source urls --input urls.csv --captioner keep --out /tmp/corpus
    """
    import json
    from uae_data.core.config import load_config
    from uae_data.corpus_config import CorpusConfig
    from uae_data.pipeline import build
    from uae_data.core.progress import progress_bar

    manifest, overrides = split_args(args)
    if limit is not None:
        overrides.append(f"limit={limit}")
    shortcuts = {"source.name": source, "source.input": input_path, "captioner.name": captioner,
                 "captioner.model": caption_model}
    overrides += [f"{k}={json.dumps(v)}" for k, v in shortcuts.items() if v is not None]  # JSON-quoted: valid YAML text
    # no manifest: start from the source's own example manifest, so its filters apply (min side, aspect, dedup)
    default = MANIFESTS / "corpus" / CORPUS_DEFAULTS.get(source or "scenes", "scenes.yaml")
    cfg = load_config(CorpusConfig, manifest or default, overrides, kind="corpus")
    with progress_bar(f"building {cfg.name}") as update:
        manifest = build(cfg, out_dir, workers=workers, on_progress=update, engine=engine)
    c = manifest["counts"]
    out.print(f"corpus {out_dir}: {c['samples']} samples in {c['shards']} shards from {c['input_rows']} input rows "
              f"({c.get('status_dropped', 0)} dropped, {c.get('status_failed', 0)} failed: reasons in stats.parquet)")


@train_app.command("pretrain", epilog=OVERRIDES)
@friendly
def train_pretrain(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/train/pretrain-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="run folder (checkpoints, metrics.jsonl, encoder/, decoder/)"),
    model: Optional[str] = typer.Option(None, help="encoder | decoder | both (overrides the manifest)"),
    corpus: Optional[Path] = typer.Option(None, help="corpus folder (overrides the manifest)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint (rerunning the same command does this too; another config is refused)"),
) -> None:
    """Pretrain the decoder on a long-caption corpus and SFT the encoder to write the captions.

    Example: uae train pretrain manifests/train/pretrain-scene.yaml --corpus out/corpus --out runs/pre
    """
    from uae_data.core.config import load_config
    from uae_data.core.progress import progress_bar
    from uae_train.stages.pretrain import PretrainConfig, pretrain

    manifest, overrides = split_args(args)
    overrides += [f"model={model}"] * (model is not None) + [f"corpus={corpus}"] * (corpus is not None)
    cfg = load_config(PretrainConfig, manifest or MANIFESTS / "train" / "pretrain-scene.yaml", overrides, kind="pretrain")
    summary = pretrain(cfg, out_dir, resume=resume, progress=progress_bar)
    from uae_data import distributed

    if not distributed.current().main:  # rank 0 reports
        return
    for phase, s in summary.items():
        extra = (f", token accuracy {s['first_token_accuracy']:.3f} -> {s['last_token_accuracy']:.3f}"
                 if "first_token_accuracy" in s else "")
        out.print(f"{phase}: loss {s['first_loss']:.4f} -> {s['last_loss']:.4f} over {s['steps']} steps{extra}")


def _rl_stage(stage: str, args: Optional[List[str]], out_dir: Path, init: Optional[Path], corpus: Optional[Path],
              resume: bool) -> None:
    from uae_data.core.config import load_config
    from uae_data.core.progress import progress_bar

    if stage == "stage1":
        from uae_train.stages.gen_for_und import Stage1Config as Config, stage1 as run
    else:
        from uae_train.stages.und_for_gen import Stage2Config as Config, stage2 as run
    manifest, overrides = split_args(args)
    overrides += [f"init={init}"] * (init is not None) + [f"corpus={corpus}"] * (corpus is not None)
    cfg = load_config(Config, manifest or MANIFESTS / "train" / f"{stage}-scene.yaml", overrides, kind=stage)
    summary = run(cfg, out_dir, resume=resume, progress=progress_bar)
    if not summary:  # not rank 0 of a multi-process run: rank 0 reports
        return
    first, last = summary["first_eval"], summary["last_eval"]
    for k in last:
        if k != "step" and k in first:
            out.print(f"{k}: {first[k]:.4f} -> {last[k]:.4f}")
    out.print(f"{stage}: {summary['steps']} steps; results in {out_dir / 'results'}")


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
    from uae_data.core.config import load_config
    from uae_data.core.progress import progress_bar
    from uae_train.stages.yfork_train import YForkTrainConfig, train_yfork as train

    manifest, overrides = split_args(args)
    overrides += [f"corpus={corpus}"] * (corpus is not None)
    cfg = load_config(YForkTrainConfig, manifest or MANIFESTS / "train" / "yfork-scene.yaml", overrides, kind="yfork")
    with progress_bar(f"train {cfg.name}") as update:
        s = train(cfg, out_dir, on_progress=update)
    out.print(f"{s['name']}: und loss {s['first_und_loss']:.3f} -> {s['last_und_loss']:.3f}, gen loss "
              f"{s['first_gen_loss']:.3f} -> {s['last_gen_loss']:.3f} over {s['steps']} steps -> {out_dir}/model")


@train_app.command("stage1", epilog=OVERRIDES)
@friendly
def train_stage1(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/train/stage1-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="run folder (encoder/, decoder/, metrics.jsonl, eval.jsonl, results/)"),
    init: Optional[Path] = typer.Option(None, help="run folder to start from (pretrain output: encoder/ + decoder/)"),
    corpus: Optional[Path] = typer.Option(None, help="corpus folder (overrides the manifest)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint (rerunning the same command does this too; another config is refused)"),
) -> None:
    """Unified-GRPO stage 1 (generation for understanding): the encoder is the policy, the frozen decoder
    reconstructs each sampled caption, reward = similarity(original, reconstruction).

    Example: uae train stage1 manifests/train/stage1-scene.yaml --init runs/pre --out runs/s1
    """
    _rl_stage("stage1", args, out_dir, init, corpus, resume)


@train_app.command("stage2", epilog=OVERRIDES)
@friendly
def train_stage2(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/train/stage2-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="run folder (encoder/, decoder/, metrics.jsonl, eval.jsonl, results/)"),
    init: Optional[Path] = typer.Option(None, help="run folder to start from (pretrain or stage1 output)"),
    corpus: Optional[Path] = typer.Option(None, help="corpus folder (overrides the manifest)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint (rerunning the same command does this too; another config is refused)"),
) -> None:
    """Unified-GRPO stage 2 (understanding for generation): the decoder is the policy, sampling through
    Flow-GRPO's SDE; the frozen encoder captions, reward = similarity(original, painting).

    Example: uae train stage2 manifests/train/stage2-scene.yaml --init runs/s1 --out runs/s2
    """
    _rl_stage("stage2", args, out_dir, init, corpus, resume)


def _ranks():
    """This process's place when launched by torchrun / accelerate launch (evaluation splits its items
    over the processes and rank 0 writes and reports); one process otherwise."""
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
    steps: int = typer.Option(20, help="sampling steps for --decoder"),
    guidance: float = typer.Option(1.0, help="classifier-free guidance for --decoder"),
) -> None:
    """GenEval (official rules): per-tag accuracy and overall = mean of the six tags.

    Example: uae eval geneval manifests/eval/geneval-scene.yaml --generator oracle --out runs/geneval

    Any diffusers model, official prompts, images in the official layout (rerunning continues an interrupted run):
    uae eval geneval manifests/eval/geneval-official.yaml --pipeline MY_PIPELINE detector.checkpoint=M2F.pth --out runs/ge
    """
    from uae_data.core.config import load_config
    from uae_data.core.progress import progress_bar
    from uae_eval.geneval.harness import GenEvalConfig, run

    dist = _ranks()
    manifest, overrides = split_args(args)
    if generator is not None:
        overrides.append(f"generator={generator}")
    if allow_partial:
        overrides.append("allow_partial=true")
    cfg = load_config(GenEvalConfig, manifest or MANIFESTS / "eval" / "geneval-scene.yaml", overrides, kind="geneval")
    generate, model_info = None, None
    if decoder is not None and pipeline is not None:
        from uae_data.core.errors import ConfigError

        raise ConfigError("give --decoder or --pipeline, not both")
    if decoder is not None:
        from uae_train.evaluation.loading import load_autoencoder

        generate, model_info = load_autoencoder(encoder, decoder, steps=steps, guidance=guidance)
    elif pipeline is not None:
        from uae_train.evaluation.loading import load_pipeline_generator

        cfg.validate()
        generate, model_info = load_pipeline_generator(pipeline, cfg)
    with progress_bar("geneval", enabled=None if dist.main else False) as update:
        res = run(cfg, out_dir, generate=generate, images=images, detections=detections, metadata=metadata,
                  model=model_info, on_progress=update)
    if not dist.main:
        return
    tags = "  ".join(f"{k}={v:.3f}" for k, v in res.metrics.items() if k != "overall")
    partial = (f"  PARTIAL: {res.extra['n_missing_prompts']} prompts / {res.extra['n_missing_images']} images missing"
               if res.extra.get("partial") else "")
    out.print(f"geneval overall={res.metrics['overall']:.4f} over {res.n_items} images  ({tags}){partial}  -> {out_dir}")


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
    from uae_data.core.config import load_config
    from uae_eval.mmt_bench.answerers import ANSWERERS, build_answerer
    from uae_eval.mmt_bench.harness import MMTConfig, run

    dist = _ranks()
    manifest, overrides = split_args(args)
    overrides += [f"tsv={tsv}"] * (tsv is not None) + [f"model={model}"] * (model is not None)
    overrides += ["allow_missing=true"] * allow_missing
    if predictions is not None and model is not None:
        from uae_data.core.errors import ConfigError

        raise ConfigError("give --model or --predictions, not both (the predictions file holds the answers)")
    cfg = load_config(MMTConfig, manifest or MANIFESTS / "eval" / "mmt-bench-scene.yaml", overrides, kind="mmt-bench")
    answer = None
    if predictions is None:
        from uae_train.evaluation import loading

        if cfg.model == "caption-reader":
            answer = build_answerer("caption-reader", seed=cfg.seed, caption=loading.load_captioner(encoder))
        elif cfg.model in ANSWERERS:
            answer = build_answerer(cfg.model, seed=cfg.seed)
        else:
            answer = loading.load_vlm_answerer(cfg.model)
    res = run(cfg, out_dir, answer=answer, predictions=predictions, model_name=model_name)
    if not dist.main:
        return
    missing = f", {res.extra['n_missing']} unanswered scored as failed" if res.extra.get("n_missing") else ""
    out.print(f"mmt-bench overall={res.metrics['overall']:.4f} over {res.n_items} questions "
              f"({res.model['name']}{missing}) -> {out_dir}")


@eval_app.command("recon", epilog=OVERRIDES)
@friendly
def eval_recon(
    args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/eval/recon-scene.yaml)"),
    out_dir: Path = typer.Option(..., "--out", help="results folder"),
    data: Optional[Path] = typer.Option(None, help="corpus folder or image folder (overrides the manifest)"),
    encoder: Optional[str] = typer.Option(None, help="caption with this model instead of the manifest's captioner: a saved uae encoder or any image-text-to-text VLM (folder or hub name)"),
    decoder: Optional[str] = typer.Option(None, help="reconstruct with this model: a diffusers text-to-image pipeline (folder or hub name) or a saved uae decoder"),
    steps: Optional[int] = typer.Option(None, help="sampling steps for --decoder (overrides the manifest's steps)"),
) -> None:
    """Reconstruction fidelity: image -> caption -> image, per-metric similarity with bootstrap CIs.

    Example: uae eval recon manifests/eval/recon-scene.yaml --data out/corpus --out runs/recon

    Unified-Bench for your own model (four backbones, their mean is the score):
    uae eval recon manifests/eval/unified-bench.yaml --data PHOTOS --encoder VLM --decoder PIPELINE --out runs/ub
    """
    from uae_data.core.config import load_config
    from uae_data.core.errors import ConfigError
    from uae_eval.recon import ReconConfig, build_metrics, load_items, run

    dist = _ranks()
    manifest, overrides = split_args(args)
    overrides += [f"data={data}"] * (data is not None) + [f"steps={steps}"] * (steps is not None)
    cfg = load_config(ReconConfig, manifest or MANIFESTS / "eval" / "recon-scene.yaml", overrides, kind="recon")
    cfg.validate()
    if not cfg.data:
        raise ConfigError("recon: no data; pass --data DIR (a folder of images or a corpus folder)")
    load_items(cfg.data, 1)  # a bad data folder fails before any model loads
    metrics = build_metrics(cfg)  # likewise a backbone that cannot load
    caption = generate = model = None
    if encoder is not None or decoder is not None:
        from uae_train.evaluation.loading import load_recon_models

        caption, generate, model = load_recon_models(encoder, decoder, cfg)
    res = run(cfg, out_dir, caption=caption, generate=generate, model=model, metrics=metrics)
    if not dist.main:
        return
    shown = "  ".join(f"{k}={v:.4g}" for k, v in res.metrics.items() if not k.endswith(("_ci_low", "_ci_high")))
    out.print(f"recon over {res.n_items} images: {shown}  -> {out_dir}")


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
    from uae_data.core.config import load_config
    from uae_eval.alignment import AlignmentConfig, run
    from uae_data.pairs import load_pairs
    from uae_train.evaluation.layer_features import model_features

    manifest, overrides = split_args(args)
    overrides += [f"data={data}"] * (data is not None)
    cfg = load_config(AlignmentConfig, manifest or MANIFESTS / "eval" / "alignment-scene.yaml", overrides, kind="alignment")
    pairs = load_pairs(Path(cfg.data), cfg.limit, cfg.image_size, skip=cfg.skip)
    features, info = model_features(model, pairs, encoder, cfg.timestep, cfg.seed, cfg.batch_size)
    res = run(cfg, out_dir, features, model=info)
    for task in res.extra["tasks"]:
        curve = "  ".join(f"{res.metrics[f'{task}/mutual_knn/layer_{i:02d}']:.3f}"
                          for i in range(res.extra["layers"][task]) if f"{task}/mutual_knn/layer_{i:02d}" in res.metrics)
        out.print(f"alignment {task} ({info['name']}), mutual kNN by layer: {curve}", soft_wrap=True)
    out.print(f"random baseline k/(N-1) = {res.extra['random_baseline_mutual_knn']:.3f} over {res.n_items} pairs -> {out_dir}")


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
    from uae_eval.check import run_check
    from uae_eval.check import write_baseline as write_base

    if write_baseline is not None:
        raise typer.Exit(write_base(results, write_baseline))
    if baseline is None:
        err.print("[red]error:[/red] give --baseline FILE (or --write-baseline FILE)")
        raise typer.Exit(2)
    raise typer.Exit(run_check(results, baseline, tolerance, metric or None))


@app.command("validate")
def validate(manifests: Optional[List[Path]] = typer.Argument(None, help="manifests to check (default: every manifests/**/*.yaml)")) -> None:
    """Check manifests against their config schemas without running anything.

    Example: uae validate manifests/corpus/scenes.yaml
    """
    from uae_data.core.config import ConfigError, validate_manifest
    _register_config_kinds()
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
    from uae_data.core.config import load_config
    from uae_data.core.errors import ConfigError
    from uae_data.core.progress import progress_bar
    from uae_train.demo import DemoConfig, demo as run_demo

    if scale not in ("cpu", "gpu"):
        raise ConfigError(f"--scale must be cpu or gpu, got {scale!r}")
    import torch

    if scale == "gpu" and not torch.cuda.is_available():
        raise ConfigError("--scale gpu needs a CUDA device and none is visible here; use --scale cpu")
    manifest, overrides = split_args(args)
    if seeds is not None:
        overrides.append(f"seeds={seeds}")
    if from_scratch:
        overrides.append("from_scratch=true")
    cfg = load_config(DemoConfig, manifest or MANIFESTS / "demo" / f"scene-{scale}.yaml", overrides, kind="demo")
    result = run_demo(cfg, out_dir, progress=progress_bar, say=lambda m: out.print(f"[bold]demo[/bold] {m}"))
    for r in result["rows"]:
        gain = r["gain"]
        ci = f" [95% CI {gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]" if gain.get("ci95") else ""
        ctrl = "; ".join(f"{c['name']} " + (f"{c['gain']['mean']:+.3f}" if "gain" in c else f"{c['value']:.3f}")
                         for c in r["controls"])
        out.print(f"{r['stage']:<8} {r['metric'][:44]:<44} {r['before']['mean']:.3f} -> {r['after']['mean']:.3f} "
                  f"(gain {gain['mean']:+.3f}{ci})" + (f"  controls: {ctrl}" if ctrl else ""))
    minutes = result.get("wall_minutes", {})
    if minutes:
        out.print("wall minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in minutes.items())
                  + f" (total {sum(minutes.values()):.1f})")
    out.print(f"report: {result['report']}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
