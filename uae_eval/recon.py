"""Reconstruction benchmark (Unified-Bench style, facts §1): image -> caption -> k images -> metrics.

Each original is captioned once, the caption regenerates `images_per_caption` images (seeded), and every
reconstruction is scored against its original with each metric (uae_eval.metrics). An image's score is the
mean over its k reconstructions; the run's score is the mean over images with a seeded bootstrap 95% CI
(resampling images). Writes OUT/results.json + samples.jsonl (worst image first, by the primary metric) and
OUT/images/NNNNN_{orig,recK,pair}.png; `pair` (original | first reconstruction) is the report's grid image.

`shuffle_captions` is a control: captions are permuted across images (a seeded derangement) before decoding,
so scores show what an unrelated caption of the same style reaches.

`mean_of` averages metrics per image into one more metric (`mean_name`, then the primary one): the
Unified-Bench score is the mean of its four backbone cosines (manifests/eval/unified-bench.yaml). The
caption prompt, token budget, batch size, sampling steps/guidance/size and dtype for real models
(`uae eval recon --encoder VLM --decoder PIPELINE`) are manifest fields too, so results record them.

`reconstructions` (folder mode, uae_eval.recon_folder) scores a folder of reconstructions made elsewhere
against `data`, paired by file name as Unified-Bench's Score_i2i.py pairs them; no captioner or decoder runs.
A run with `mean_of` also writes OUT/score_i2i.json (and results' extra.score_i2i) in that script's JSON shape.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

from uae_data.core.config import help_field, to_dict
from uae_data.core.errors import ConfigError, InputError
from uae_eval.benchmarks import Benchmark, MetricTables, generic_tables, register
from uae_eval.recon_stats import aggregate, bootstrap_ci, rank_worst_first  # noqa: F401  (bootstrap_ci: public here too)

BENCHMARK = "recon"
BENCHMARK_VERSION = "recon-v1"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


@dataclass
class ReconConfig:
    data: str = help_field("", help="a corpus folder (shards/, uae build-corpus) or a folder of images")
    metrics: list[str] = help_field(["scene", "psnr", "ssim"], help="metric names (uae_eval.metrics); the first is primary")
    metric_options: dict[str, dict] = help_field({}, help="per-metric options, e.g. {clip: {model: ViT-L-14, pretrained: openai}}")
    captioner: str = help_field("oracle", help="captioner when run() is given none: oracle")
    decoder: str = help_field("oracle", help="decoder when run() is given none: oracle")
    images_per_caption: int = help_field(1, help="k: reconstructions per caption")
    seed: int = help_field(0, help="base seed; reconstruction j of image i uses seed*100003 + i*k + j")
    limit: int | None = help_field(None, help="use only the first N images")
    mean_of: list[str] = help_field([], help="metrics averaged per image into mean_name, the primary metric (Unified-Bench: its four backbones)")
    mean_name: str = help_field("mean", help="name of the mean_of metric")
    image_size: int | None = help_field(64, help="side of decoded images (null: the decoder's own default); originals are not resized")
    caption_prompt: str | None = help_field(None, help="instruction given to a VLM encoder with each image (null: the encoder's default)")
    max_new_tokens: int = help_field(160, help="caption budget for a VLM encoder, in tokens")
    batch_size: int = help_field(8, help="images per encoder / decoder call")
    steps: int = help_field(20, help="sampling steps of a model decoder (our decoder or a diffusers pipeline)")
    guidance: float | None = help_field(None, help="guidance scale of a model decoder (null: its default; ours 1.0)")
    pipeline_options: dict = help_field({}, help="extra keyword arguments for a diffusers pipeline call, e.g. {max_sequence_length: 512}")
    dtype: str = help_field("auto", help="dtype of encoder/decoder models: auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")
    shuffle_captions: bool = help_field(False, help="control: permute captions across images before decoding")
    bootstrap: int = help_field(1000, help="bootstrap resamples for the 95% CI")
    save_images: bool = help_field(True, help="write originals, reconstructions and pairs under OUT/images")
    reconstructions: str = help_field("", help="folder mode: score this folder of reconstructions made elsewhere against data (the references), paired by file name as UAE's Score_i2i.py pairs them; no captioner or decoder runs")
    allow_partial: bool = help_field(False, help="folder mode: score around unmatched or unreadable images (results say partial: true and list them); off: refuse them by name")

    def validate(self) -> None:
        from uae_eval.metrics import metric_names

        if not self.metrics:
            raise ValueError("metrics must name at least one metric")
        for name in [*self.metrics, *self.metric_options]:
            if name not in metric_names():
                raise ValueError(f"unknown metric {name!r} (known: {', '.join(metric_names())})")
        from uae_data.core.config import check_options
        from uae_eval.metrics import METRICS

        for name, options in self.metric_options.items():  # what each metric's constructor takes
            check_options(f"metric_options.{name}", options or {}, METRICS.get(name))
        if self.images_per_caption < 1:
            raise ValueError(f"images_per_caption must be >= 1, got {self.images_per_caption}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.bootstrap < 1:
            raise ValueError(f"bootstrap must be >= 1, got {self.bootstrap}")
        for name in self.mean_of:
            if name not in self.metrics:
                raise ValueError(f"mean_of names {name!r}, which is not in metrics {self.metrics}")
        if self.mean_of and self.mean_name in self.metrics:
            raise ValueError(f"mean_name {self.mean_name!r} is already a metric; pick another name")
        for field in ("max_new_tokens", "batch_size", "steps"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be >= 8 or null, got {self.image_size}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        if self.reconstructions:
            from uae_eval.recon_folder import check_folder_config

            check_folder_config(self)


# ---------------------------------------------------------------- pure math

def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation with no fixed point (identity for n < 2)."""
    if n < 2:
        return list(range(n))
    rng = np.random.default_rng(seed)
    shift = int(rng.integers(1, n))
    order = rng.permutation(n)
    perm = [0] * n
    for i in range(n):  # cycle the shuffled order: every element moves
        perm[order[i]] = int(order[(i + shift) % n])
    return perm


def word_count(text: str) -> int:
    return len(text.split())


# ---------------------------------------------------------------- data

def load_items(data: str | Path, limit: int | None = None) -> list[dict]:
    """[{key, image, scene (Scene | None)}] from a corpus folder or an image folder (sorted by name)."""
    from uae_data.scenes import Scene

    root = Path(data)
    if not root.is_dir():
        raise InputError(f"{root}: data folder not found; give a corpus folder or a folder of images")
    items: list[dict] = []
    if (root / "shards").is_dir() or any(root.glob("*.tar")):
        from uae_data.shards import iter_samples

        for s in iter_samples(root):
            if s["image"] is None:
                continue
            spec = (s.get("meta") or {}).get("scene")
            items.append({"key": s["key"], "image": s["image"],
                          "scene": Scene.from_dict(spec) if isinstance(spec, dict) else None})
            if limit and len(items) >= limit:
                break
    else:
        for f in sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            with Image.open(f) as im:
                items.append({"key": f.stem, "image": ImageOps.exif_transpose(im).convert("RGB"), "scene": None})
            if limit and len(items) >= limit:
                break
    if not items:
        raise InputError(f"{root}: no images (want shards/*.tar from uae build-corpus or *.png/*.jpg files)")
    return items


# ---------------------------------------------------------------- run

def build_metrics(cfg: ReconConfig, prebuilt: dict | None = None) -> dict:
    """{name: metric object} for cfg.metrics (prebuilt ones reused). The CLI builds them before loading the
    models under test, so a backbone that cannot load fails in seconds, not after a VLM has loaded."""
    from uae_eval.metrics import build_metric

    return {name: (prebuilt or {}).get(name) or build_metric(name, **cfg.metric_options.get(name, {}))
            for name in cfg.metrics}


def prepare(cfg: ReconConfig, encoder: str | None = None, decoder: str | None = None) -> dict:
    """Check the config, the data folder (folder mode: the pairing, and that no model is asked for) and build
    the metric backbones, so bad input fails in seconds, before any model under test loads; returns the
    metrics for `run`."""
    cfg.validate()
    if not cfg.data:
        raise ConfigError("recon: no data; pass --data DIR (a folder of images or a corpus folder)")
    if cfg.reconstructions:
        from uae_eval.recon_folder import load_pairs

        if encoder is not None or decoder is not None:
            raise ConfigError("--reconstructions scores images made elsewhere: no captioner or decoder runs, so "
                              "drop --encoder/--decoder (or drop --reconstructions to make the images here)")
        load_pairs(cfg)
    else:
        load_items(cfg.data, 1)
    return build_metrics(cfg)


def run(cfg: ReconConfig, out: Path, caption: Callable | None = None, generate: Callable | None = None,
        model: dict | None = None, metrics: dict | None = None) -> "Results":
    """Score one reconstruction run into `out`; returns the Results.

    caption(images) -> texts (an oracle-style captioner with `uses_scene_spec` also gets scenes= and seeds=);
    generate(prompts, seeds) -> images. Either left None uses cfg.captioner / cfg.decoder. `metrics` maps
    names to prebuilt metric objects (tests, or reuse across runs); missing ones are built from cfg.
    """
    from uae_eval.metrics.scene import SceneF1
    from uae_eval.recon_folder import pair_image, score_i2i_doc, write_score_i2i
    from uae_eval.recon_oracles import CAPTIONERS, DECODERS
    from uae_eval.results import Results, write_results

    cfg.validate()
    out = Path(out)
    if cfg.reconstructions:
        if caption is not None or generate is not None:
            raise ConfigError("reconstructions= scores images made elsewhere; give no captioner or generator")
        from uae_eval.recon_folder import run_folder

        return run_folder(cfg, out, build_metrics(cfg, metrics), model)
    try:
        caption = caption or CAPTIONERS[cfg.captioner]()
        generate = generate or DECODERS[cfg.decoder](cfg.image_size or 64)
    except KeyError as e:
        raise InputError(f"unknown captioner/decoder {e.args[0]!r} (known: oracle)") from None
    metric_objs = build_metrics(cfg, metrics)
    items = load_items(cfg.data, cfg.limit)
    originals = [it["image"] for it in items]
    n, k = len(items), cfg.images_per_caption

    # A multi-process run (torchrun / accelerate launch) gives each rank every world-th image; per-image
    # seeds are global, so the pieces gathered back equal a 1-process run's.
    from uae_data import distributed

    dist = distributed.current()
    mine = dist.split(list(range(n)))
    cap_seeds = [cfg.seed * 100003 + i for i in range(n)]
    if getattr(caption, "uses_scene_spec", False):
        from uae_eval.recon_oracles import NotAScene

        try:
            texts_mine = list(caption([originals[i] for i in mine], scenes=[items[i]["scene"] for i in mine],
                                      seeds=[cap_seeds[i] for i in mine]))
        except NotAScene as e:
            raise InputError(f"{cfg.data}: {items[mine[e.position]]['key']} shows no scene-world object; the oracle "
                             "captioner reads scene renders only: caption photos with --encoder VLM") from None
    else:
        texts_mine = list(caption([originals[i] for i in mine]))
    if len(texts_mine) != len(mine):
        raise ValueError(f"captioner returned {len(texts_mine)} captions for {len(mine)} images")
    texts = [""] * n
    for part in dist.gather(list(zip(mine, texts_mine))):
        for i, t in part:
            texts[i] = t
    perm = derangement(n, cfg.seed) if cfg.shuffle_captions else list(range(n))
    used = [texts[perm[i]] for i in range(n)]

    prompts = [used[i] for i in mine for _ in range(k)]
    seeds = [cfg.seed * 100003 + i * k + j for i in mine for j in range(k)]
    recons = list(generate(prompts, seeds))
    if len(recons) != len(mine) * k:
        raise ValueError(f"generator returned {len(recons)} images for {len(mine) * k} prompts")
    pair_originals = [originals[i] for i in mine for _ in range(k)]

    values: dict[str, np.ndarray] = {}  # name -> (n, k)
    for name, m in metric_objs.items():
        specs = [items[i]["scene"] for i in mine]
        if isinstance(m, SceneF1) and all(it["scene"] is not None for it in items):
            v = m.score_specs([specs[r] for r in range(len(mine)) for _ in range(k)], recons)
        else:
            v = m(pair_originals, recons)
        values[name] = np.zeros((n, k))
        for part in dist.gather((mine, np.asarray(v, dtype=np.float64).reshape(len(mine), k))):
            values[name][part[0]] = part[1]
    if cfg.save_images:  # each rank writes its own images; the samples below name them
        img_dir = out / "images"
        img_dir.mkdir(parents=True, exist_ok=True)
        for r, i in enumerate(mine):
            originals[i].save(img_dir / f"{i:05d}_orig.png")
            for j in range(k):
                recons[r * k + j].save(img_dir / f"{i:05d}_rec{j}.png")
            pair_image(originals[i], recons[r * k]).save(img_dir / f"{i:05d}_pair.png")

    agg = aggregate(cfg, values, {name: bool(m.higher_is_better) for name, m in metric_objs.items()})
    values, per_image, summary, primary = agg["values"], agg["per_image"], agg["summary"], agg["primary"]
    lengths = [word_count(t) for t in texts]
    summary["caption_words_mean"] = float(np.mean(lengths))
    summary["caption_words_median"] = float(statistics.median(lengths))

    samples = []
    for i, it in enumerate(items):
        s = {"key": it["key"], "caption": used[i],
             **({"caption_of": items[perm[i]]["key"]} if perm[i] != i else {}),
             "caption_words": word_count(used[i]), "caption_chars": len(used[i]),
             "metrics": {name: float(per_image[name][i]) for name in values},
             "values": {name: [float(x) for x in values[name][i]] for name in values}}
        if cfg.save_images:
            s.update(original=f"images/{i:05d}_orig.png", reconstructions=[f"images/{i:05d}_rec{j}.png" for j in range(k)],
                     image=f"images/{i:05d}_pair.png")
        samples.append(s)
    rank_worst_first(samples, primary, agg["higher"][primary])
    doc = score_i2i_doc([it["key"] for it in items], {m: [float(x) for x in per_image[m]] for m in cfg.mean_of},
                        cfg.mean_of) if cfg.mean_of else None

    res = Results(
        benchmark=BENCHMARK, benchmark_version=BENCHMARK_VERSION,
        model=model or {"name": f"{cfg.captioner}+{cfg.decoder}", "path": None, "config": {}},
        metrics=summary, primary_metric=primary, higher_is_better=agg["higher"][primary],
        n_items=n, config=to_dict(cfg), metric_higher_is_better=agg["directions"],
        extra={"metrics": {name: m.provenance() for name, m in metric_objs.items()},
               **({"mean_of": {cfg.mean_name: list(cfg.mean_of)}} if cfg.mean_of else {}),
               "n_reconstructions": n * k, "shuffled_captions": cfg.shuffle_captions,
               **({"score_i2i": doc} if doc else {})})
    if dist.main:
        write_results(out, res, samples)
        if doc:
            write_score_i2i(out, doc)
    dist.barrier()
    return res


UNIFIED_BENCH = ("unified_bench", "clip-hf", "clip", "longclip", "dino", "dinov3")


def recon_tables(names: list[str]) -> MetricTables:
    """Reconstruction: a Unified-Bench run's score and its four backbones (with CIs) first, the rest after."""
    if "unified_bench" not in names:
        return generic_tables(names)
    head = [f"{m}{suffix}" for m in UNIFIED_BENCH for suffix in ("", "_ci_low", "_ci_high") if f"{m}{suffix}" in names]
    return ([("Unified-Bench: mean of four backbone cosines, and each backbone", head)]
            + generic_tables([n for n in names if n not in head]))


def recon_summary(res, out: Path) -> str:
    shown = "  ".join(f"{k}={v:.4g}" for k, v in res.metrics.items() if not k.endswith(("_ci_low", "_ci_high")))
    partial = f"  PARTIAL: {res.extra['n_dropped']} images dropped" if res.extra.get("partial") else ""
    return f"recon over {res.n_items} images: {shown}{partial}  -> {out}"


register(Benchmark(BENCHMARK, ReconConfig, run, help="Reconstruction fidelity: image -> caption -> image",
                   manifest="eval/recon-scene.yaml", tables=recon_tables, summary=recon_summary))
