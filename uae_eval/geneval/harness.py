"""GenEval harness: images (generated, from a folder, or precomputed detections) -> official scores.

Three inputs, one scorer:
  generator   `generate(metas, seeds) -> images`, N images per prompt, seeded; images are saved in
              the official layout (OUT/images/NNNNN/{metadata.jsonl, samples/JJJJ.png}) so the
              official scorer can re-read them;
  folder      a folder in the official layout;
  detections  precomputed detections (jsonl), scored by the same rules without a detector.
Outputs: our results.json + samples.jsonl (uae_eval.results) and the official results.jsonl rows.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
from PIL import Image, ImageOps

from uae_data.core.config import help_field, to_dict
from uae_data.detection import Detection
from uae_data.core.errors import ConfigError, InputError
from uae_eval.geneval import rules
from uae_eval.geneval.prompts import load_metadata, validate_metadata

BENCHMARK = "geneval"
BENCHMARK_VERSION = "geneval@af4902f"  # official rules and prompt file of djghosh13/geneval at this commit
ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RE = re.compile(r"^\d+\.png")  # official: names must start with digits + .png; .jpg is skipped


@dataclass
class GenEvalConfig:
    metadata: str = help_field("manifests/geneval/scene_metadata.jsonl", help="prompt metadata jsonl (official format); relative paths are from the repo root")
    generator: str = help_field("oracle", help="image generator for generator mode: oracle | random | noise (scene world; noise paints object-free images)")
    generator_options: dict = help_field({}, help="generator options, e.g. noise: {family: smooth} (default cycle: every family by seed)")
    images_per_prompt: int = help_field(4, help="images per prompt (official: 4)")
    seed: int = help_field(0, help="base seed; image j of prompt i uses seed*100003 + i*images_per_prompt + j")
    image_size: int = help_field(64, help="side of generated images (scene generators)")
    steps: int = help_field(50, help="--pipeline: sampling steps of the diffusers pipeline")
    guidance: float | None = help_field(None, help="--pipeline: guidance scale (null: the pipeline's default)")
    pipeline_image_size: int | None = help_field(None, help="--pipeline: image side (null: the pipeline's default resolution)")
    pipeline_options: dict = help_field({}, help="--pipeline: extra keyword arguments for every pipeline call, e.g. {max_sequence_length: 256}")
    dtype: str = help_field("auto", help="--pipeline: auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")
    detector: str | dict = help_field("scene", help="detector backend: scene | mask2former | geneval-mask2former, "
                                      "or a section {name: BACKEND, option: value, ...} (so detector.checkpoint=PATH "
                                      "works as an override)")
    detector_options: dict = help_field({}, help="detector options (e.g. model: name or local path, device)")
    colour: str = help_field("scene", help="colour classifier: scene | clip")
    colour_options: dict = help_field({}, help="colour classifier options (e.g. model, pretrained, device)")
    rules: rules.RulesConfig = help_field(None, help="official thresholds (defaults = official values)")
    limit: int | None = help_field(None, help="score only the first N prompts (smoke runs; not comparable)")
    batch_size: int = help_field(16, help="images per detector batch")
    save_images: bool = help_field(True, help="keep generated images in OUT/images (official layout)")
    allow_partial: bool = help_field(False, help="score a folder/detections file that misses prompts or images (results say partial: true and how many are missing); off: refuse, since a GenEval score over a subset is not a GenEval score")

    def __post_init__(self) -> None:
        self.rules = self.rules or rules.RulesConfig()
        if isinstance(self.detector, dict):  # section form: name + backend options
            section = dict(self.detector)
            name = section.pop("name", None)
            if not isinstance(name, str) or not name:
                raise ConfigError("detector: a detector section needs name: BACKEND (scene | mask2former | "
                                  "geneval-mask2former)")
            self.detector, self.detector_options = name, {**self.detector_options, **section}

    def validate(self) -> None:
        if self.images_per_prompt < 1:
            raise ValueError(f"images_per_prompt must be >= 1, got {self.images_per_prompt}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {self.dtype!r}")
        self.check_backend_options()

    def check_backend_options(self) -> None:
        """The detector and colour classifier names and their options against what each backend's
        constructor takes, so a typo fails `uae validate` instead of a run."""
        from uae_data.core.config import check_options
        from uae_eval.geneval.colour import COLOURERS
        from uae_eval.geneval.detectors import DETECTORS

        for what, registry, name, options in (("detector", DETECTORS, self.detector, self.detector_options),
                                              ("colour", COLOURERS, self.colour, self.colour_options)):
            if name not in registry:
                raise ValueError(f"{what}: unknown backend {name!r} (known: {', '.join(registry.names())})")
            check_options(f"{what} options", options, registry.get(name))

    def metadata_path(self) -> Path:
        from uae_data.core.paths import shipped

        return shipped(self.metadata)


@dataclass
class ImageItem:
    prompt_index: int
    image_index: int
    filename: str
    image: Image.Image | None = None
    detections: list[Detection] | None = None  # precomputed mode
    width: int | None = None
    height: int | None = None


def image_seed(cfg: GenEvalConfig, prompt_index: int, image_index: int) -> int:
    return cfg.seed * 100003 + prompt_index * cfg.images_per_prompt + image_index


def generate_items(cfg: GenEvalConfig, metas: list[dict], generate: Callable, out: Path | None,
                   prompts: list[int] | None = None, resumed: list[int] | None = None) -> Iterator[ImageItem]:
    """Generate images a batch of prompts at a time; save them in the official layout when `out` is given.

    A batch holds whole prompts (batch_size // images_per_prompt of them) so a model sees full batches;
    each image depends only on its own seed, so batching does not change any image. `prompts`: the prompt
    indexes to paint (a rank's share in a multi-process run), default all. With `out`, a prompt folder
    that is already complete (its metadata and every image readable) is read back instead of painted
    again, so rerunning an interrupted command continues it; its index goes into `resumed`. Images are
    written under a temporary name and renamed, so an interrupt never leaves a half-written PNG.
    """
    per_batch = max(1, cfg.batch_size // cfg.images_per_prompt)
    order = list(range(len(metas))) if prompts is None else list(prompts)
    k = cfg.images_per_prompt

    def done(i: int) -> list[ImageItem] | None:
        folder = out / f"{i:05d}"
        files = [folder / "samples" / f"{j:04d}.png" for j in range(k)]
        if not ((folder / "metadata.jsonl").is_file() and all(f.is_file() for f in files)):
            return None
        if json.loads((folder / "metadata.jsonl").read_text().splitlines()[0]) != metas[i]:
            raise InputError(f"{folder}/metadata.jsonl: holds another prompt than prompt {i} of {cfg.metadata}; "
                             "choose another --out")
        return [ImageItem(i, j, f"{i:05d}/samples/{j:04d}.png", image=_open_image(f)) for j, f in enumerate(files)]

    todo = []
    for i in order:
        found = done(i) if out is not None else None
        if found is None:
            todo.append(i)
            continue
        if resumed is not None:
            resumed.append(i)
        yield from found
    for start in range(0, len(todo), per_batch):
        idx = todo[start:start + per_batch]
        pairs = [(i, j) for i in idx for j in range(k)]
        images = generate([metas[i] for i, _ in pairs], [image_seed(cfg, i, j) for i, j in pairs])
        for (i, j), im in zip(pairs, images):
            folder = f"{i:05d}"
            name = f"{folder}/samples/{j:04d}.png"
            if out is not None:
                (out / folder / "samples").mkdir(parents=True, exist_ok=True)
                if j == 0:
                    (out / folder / "metadata.jsonl").write_text(json.dumps(metas[i]) + "\n")
                tmp = out / folder / "samples" / f".partial-{j:04d}.png"  # no leading digit: never scored
                im.save(tmp, format="PNG")
                os.replace(tmp, out / name)
            yield ImageItem(i, j, name, image=im)


def check_generation(out: Path, identity: dict, write: bool = True) -> None:
    """OUT/images/generation.json records what painted the images; a rerun with another generator or
    generation settings is refused instead of mixing two models' images in one score."""
    out.mkdir(parents=True, exist_ok=True)
    f = out / "generation.json"
    if f.is_file():
        old = json.loads(f.read_text())
        if old != identity:
            changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            raise InputError(f"{f}: these images were made with another generator or settings ({', '.join(changed)} "
                             "differ); choose another --out, or rerun with the same ones to continue")
        return
    if write:
        f.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")


def _open_image(f: Path) -> Image.Image:
    """Decode one sample fully now, so a broken file is named here rather than failing mid-scoring."""
    try:
        with Image.open(f) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:  # PIL: truncated / not an image / bad header
        raise InputError(f"{f}: cannot read this image ({e}); regenerate or remove it") from None


def folder_items(root: Path, expected: list[dict] | None = None) -> tuple[list[dict], list[ImageItem]]:
    """Read a folder in the official layout: every all-digit subfolder NNNNN is prompt NNNNN.

    With `expected` (the metadata the run is scored against), folder NNNNN must hold prompt NNNNN of it
    and folders past its end are ignored only when it was cut by `limit` (the caller passes that);
    without it, the folders define the prompts (the official scorer's behaviour).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    metas: list[dict] = [] if expected is None else list(expected)
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        index = int(folder.name) if expected is not None else len(metas)
        if expected is not None and index >= len(expected):
            continue
        meta_file = folder / "metadata.jsonl"
        if not meta_file.exists():
            raise FileNotFoundError(f"{meta_file}: missing (each prompt folder needs its metadata.jsonl)")
        try:
            meta = validate_metadata(json.loads(meta_file.read_text()), str(meta_file))
        except ValueError as e:  # JSONDecodeError is a ValueError
            raise InputError(f"{meta_file}: {e}" if str(meta_file) not in str(e) else str(e)) from None
        if expected is None:
            metas.append(meta)
        elif any(meta.get(k) != expected[index].get(k) for k in ("tag", "prompt", "include", "exclude")):
            raise InputError(f"{meta_file}: holds prompt {meta['prompt']!r} but prompt {index} of the metadata is "
                             f"{expected[index]['prompt']!r}; score the folder against the metadata that made it "
                             "(--metadata or the manifest's metadata)")
        samples = folder / "samples"
        files = sorted(p for p in samples.iterdir() if SAMPLE_RE.match(p.name)) if samples.is_dir() else []
        for k, f in enumerate(files):
            items.append(ImageItem(index, k, str(f.relative_to(root)), image=_open_image(f)))
    if expected is None and not metas:
        raise FileNotFoundError(f"{root}: no prompt folders (NNNNN/metadata.jsonl) found")
    return metas, items


def coverage(items: list[ImageItem], metas: list[dict], per_prompt: int, source: str, allow_partial: bool) -> dict:
    """Count prompts and images missing from `items`; refuse (InputError) unless `allow_partial`.

    A prompt is missing when it has no image; an image is missing when its prompt has fewer than
    `per_prompt`. The official overall averages tags over all 553 prompts, so a subset is another score.
    """
    counts = [0] * len(metas)
    for it in items:
        counts[it.prompt_index] += 1
    over = [i for i, c in enumerate(counts) if c > per_prompt]
    if over:
        raise InputError(f"{source}: prompt {over[0]:05d} has {counts[over[0]]} images but images_per_prompt is "
                         f"{per_prompt} ({len(over)} prompts have too many); set images_per_prompt= to what the run "
                         "made, or remove the extra images")
    missing_prompts = [i for i, c in enumerate(counts) if c == 0]
    missing_images = sum(max(0, per_prompt - c) for c in counts)
    if missing_images and not allow_partial:
        short = [i for i, c in enumerate(counts) if 0 < c < per_prompt]
        named = ", ".join(f"{i:05d}" for i in (missing_prompts or short)[:5])
        raise InputError(
            f"{source}: {len(missing_prompts)} of {len(metas)} prompts have no image and {missing_images} of "
            f"{len(metas) * per_prompt} images ({per_prompt} per prompt) are missing (e.g. prompt {named}); "
            "a GenEval score over a subset is not a GenEval score: complete it, or pass --allow-partial "
            "(allow_partial=true) to score what is there, marked partial")
    return {"partial": bool(missing_images), "n_missing_prompts": len(missing_prompts),
            "n_missing_images": missing_images}


def limited(cfg: GenEvalConfig, metas: list[dict], metadata: Path | None, completeness: dict) -> dict:
    """`limit=` scores the first N prompts: a subset, so the result is marked partial and counts the prompts
    and images it left out (the report and `uae check` then show it is not a GenEval score)."""
    if not cfg.limit:
        return completeness
    left = len(load_prompts(cfg, metadata, limit=False)) - len(metas)
    if left <= 0:
        return completeness
    return {**completeness, "partial": True, "limited_to": len(metas),
            "n_missing_prompts": completeness["n_missing_prompts"] + left,
            "n_missing_images": completeness["n_missing_images"] + left * cfg.images_per_prompt}


def detection_items(path: Path, n_prompts: int, per_prompt: int) -> list[ImageItem]:
    """Read precomputed detections (the public format of DESIGN/issue): one JSON line per image; an image
    index outside 0..per_prompt-1 is refused (it would be scored as one more image of its prompt)."""
    items: list[ImageItem] = []
    seen: dict[tuple[int, int], int] = {}
    with open(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}: line {line_no}"
            try:
                row = json.loads(line)
                pi, ii = int(row["prompt_index"]), int(row["image_index"])
                dets = [Detection.from_dict({**d, "score": d["score"]}) for d in row["detections"]]
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: invalid JSON ({e.msg})") from None
            except KeyError as e:
                raise InputError(f"{where}: missing field {e.args[0]!r}") from None
            except (TypeError, ValueError) as e:
                raise InputError(f"{where}: {e}") from None
            if not 0 <= pi < n_prompts:
                raise InputError(f"{where}: prompt_index {pi} outside the metadata's 0..{n_prompts - 1}")
            if not 0 <= ii < per_prompt:
                raise InputError(f"{where}: image_index {ii} outside 0..{per_prompt - 1} (images_per_prompt is "
                                 f"{per_prompt}; set images_per_prompt= if the run made more)")
            if (pi, ii) in seen:
                raise InputError(f"{where}: prompt_index {pi}, image_index {ii} already given on line {seen[pi, ii]}")
            seen[pi, ii] = line_no
            items.append(ImageItem(pi, ii, f"{pi:05d}/samples/{ii:04d}.png", detections=dets,
                                   width=row.get("width"), height=row.get("height")))
    if not items:
        raise InputError(f"{path}: no detections (empty file)")
    return items


def score_item(meta: dict, dets: list[Detection], cfg: rules.RulesConfig) -> tuple[bool, str, dict]:
    by_class = rules.filter_detections(meta, dets, cfg)
    correct, reason = rules.evaluate(meta, by_class, cfg)
    return correct, reason, rules.image_details(by_class)


def load_prompts(cfg: GenEvalConfig, metadata: Path | None = None, limit: bool = True) -> list[dict]:
    try:
        metas = load_metadata(metadata or cfg.metadata_path())
    except ValueError as e:
        raise InputError(str(e)) from None
    return metas[: cfg.limit] if cfg.limit and limit else metas


def scene_only(metas: list[dict], source: Path, who: str) -> None:
    """Refuse prompts outside the scene world before anything runs: the scene detector and oracle know
    only scene shapes, so official prompts would score 0 (or crash) for no fault of the model."""
    from uae_data.scenes import SHAPES

    for i, meta in enumerate(metas):
        for item in (*meta.get("include", []), *meta.get("exclude", [])):
            if item["class"] not in SHAPES:
                raise InputError(f"{source}: line {i + 1}: class {item['class']!r} is not a scene shape; {who} "
                                 "knows only scene shapes (" + ", ".join(SHAPES) + "): score real prompts with "
                                 "manifests/eval/geneval-official.yaml and a real detector")


def _batched(items: Iterator[ImageItem], n: int) -> Iterator[list[ImageItem]]:
    batch: list[ImageItem] = []
    for it in items:
        batch.append(it)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def run(
    cfg: GenEvalConfig,
    out: Path,
    generate: Callable | None = None,
    images: Path | None = None,
    detections: Path | None = None,
    metadata: Path | None = None,
    model: dict | None = None,
    on_progress: Callable[..., None] | None = None,
) -> "Results":
    """Score one GenEval run into `out` (results.json, samples.jsonl, results.jsonl). Returns the Results.

    Exactly one input: `generate` (or cfg.generator when all are None), `images` or `detections`.
    """
    from uae_eval.geneval.colour import build_colourer
    from uae_eval.geneval.detectors import build_detector
    from uae_eval.geneval.generators import build_generator
    from uae_eval.results import Results, write_results

    from uae_data import distributed

    dist = distributed.current()  # several processes: each scores every world-th prompt, rank 0 merges
    out = Path(out)
    if sum(x is not None for x in (generate, images, detections)) > 1:
        raise InputError("give one input: a generator, an image folder or a detections file")
    provenance: dict = {}
    resumed: list[int] = []  # prompts whose images a previous run of this command had already painted
    oracle = False
    completeness: dict = {"partial": False, "n_missing_prompts": 0, "n_missing_images": 0}
    if images is not None:
        metas, item_list = folder_items(images, load_prompts(cfg, metadata))
        completeness = coverage(item_list, metas, cfg.images_per_prompt, str(images), cfg.allow_partial)
        position = {(it.prompt_index, it.image_index): n for n, it in enumerate(item_list)}
        item_list = [it for it in item_list if it.prompt_index % dist.world == dist.rank]
        items: Iterator[ImageItem] = iter(item_list)
        total = len(item_list)
        mode, model = "folder", model or {"name": "images", "path": str(images), "config": {}}
    elif detections is not None:
        every = load_prompts(cfg, metadata, limit=False)
        metas = every[: cfg.limit] if cfg.limit else every
        item_list = [it for it in detection_items(Path(detections), len(every), cfg.images_per_prompt)
                     if it.prompt_index < len(metas)]
        completeness = coverage(item_list, metas, cfg.images_per_prompt, str(detections), cfg.allow_partial)
        position = {(it.prompt_index, it.image_index): n for n, it in enumerate(item_list)}
        item_list = [it for it in item_list if it.prompt_index % dist.world == dist.rank]
        items, total, mode = iter(item_list), len(item_list), "detections"
        model = model or {"name": "precomputed-detections", "path": str(detections), "config": {}}
        provenance = {"detector": {"backend": "precomputed", "official_compatible": None},
                      "colour": {"backend": "precomputed", "official_compatible": None}}
    else:
        metas = load_prompts(cfg, metadata)
        oracle = generate is None and cfg.generator == "oracle"
        if generate is None:
            generate = build_generator(cfg.generator, image_size=cfg.image_size, **cfg.generator_options)
            model = model or {"name": f"scene-{cfg.generator}", "path": None,
                              "config": {"image_size": cfg.image_size, **cfg.generator_options}}
        share = dist.split(list(range(len(metas))))
        total, mode = len(share) * cfg.images_per_prompt, "generator"
        position = {(i, j): i * cfg.images_per_prompt + j for i in range(len(metas)) for j in range(cfg.images_per_prompt)}
        model = model or {"name": getattr(generate, "name", "generator"), "path": None, "config": {}}
        items = generate_items(cfg, metas, generate, out / "images" if cfg.save_images else None, share, resumed)
    if mode != "detections" and (cfg.detector == "scene" or oracle):
        scene_only(metas, metadata or cfg.metadata_path(), "the scene detector" if cfg.detector == "scene" else "the scene oracle")
    completeness = limited(cfg, metas, metadata, completeness)
    if mode != "detections":
        detector = build_detector(cfg.detector, **cfg.detector_options)
        colour_options = dict(cfg.colour_options)
        if cfg.colour == "clip":  # colour exactly the detections the rules can reach
            colour_options.setdefault("min_score", cfg.rules.threshold)
            colour_options.setdefault("max_per_class", cfg.rules.max_objects)
        colourer = build_colourer(cfg.colour, **colour_options)
        provenance = {"detector": detector.provenance(), "colour": colourer.provenance()}

    if mode == "generator" and cfg.save_images:  # inputs checked: now the run may write (items are lazy)
        dist.barrier()  # every rank compares (and fails alike); rank 0 writes a new record
        check_generation(out / "images", {"model": model, "seed": cfg.seed, "images_per_prompt": cfg.images_per_prompt,
                                          "image_size": cfg.image_size, "metadata": str(cfg.metadata)}, write=dist.main)
    rows, samples = [], []
    out.mkdir(parents=True, exist_ok=True)
    for batch in _batched(items, cfg.batch_size):
        if mode == "detections":
            found = [it.detections or [] for it in batch]
        else:
            found = detector([it.image for it in batch])
            for it, dets in zip(batch, found):
                colourer(it.image, dets)
        for it, dets in zip(batch, found):
            meta = metas[it.prompt_index]
            correct, reason, details = score_item(meta, dets, cfg.rules)
            row = {"filename": it.filename, "tag": meta["tag"], "prompt": meta["prompt"], "correct": correct,
                   "reason": reason, "metadata": json.dumps(meta), "details": json.dumps(details)}
            if mode == "detections":
                row |= {"prompt_index": it.prompt_index, "image_index": it.image_index}
            rows.append(row)
            sample = {"prompt_index": it.prompt_index, "image_index": it.image_index, "tag": meta["tag"],
                      "prompt": meta["prompt"], "correct": correct, "decision": "correct" if correct else "incorrect",
                      "reason": reason, "detections": details}
            if mode == "generator" and cfg.save_images:
                sample["image"] = f"images/{it.filename}"
            elif mode == "folder":
                sample["image"] = str(Path(images).resolve() / it.filename)
            samples.append(sample)
        if on_progress:
            on_progress(len(rows), total)

    if dist.active:  # every rank's rows, back in the 1-process order
        merged = [pair for part in dist.gather(list(zip(rows, samples))) for pair in part]
        merged.sort(key=lambda p: position[(p[1]["prompt_index"], p[1]["image_index"])])
        rows, samples = [p[0] for p in merged], [p[1] for p in merged]
    summary = rules.summarize([{"tag": r["tag"], "correct": r["correct"], "prompt_index": s["prompt_index"]}
                               for r, s in zip(rows, samples)])
    # Official results.jsonl: pandas lines, as evaluate_images.py writes it.
    if dist.main:
        pd.DataFrame(rows).to_json(out / "results.jsonl", orient="records", lines=True)
    official = bool(provenance.get("detector", {}).get("official_compatible")) and bool(
        provenance.get("colour", {}).get("official_compatible"))
    results = Results(
        benchmark=BENCHMARK,
        benchmark_version=BENCHMARK_VERSION,
        model=model,
        metrics=summary,
        primary_metric="overall",
        higher_is_better=True,
        n_items=len(rows),
        config=to_dict(cfg) | {"mode": mode, "metadata_file": str(metadata or cfg.metadata_path())},
        extra={"official_compatible": official, **provenance, "n_prompts": len(metas), **completeness,
               **({"resumed_prompts": int(dist.sum(len(resumed))[0])} if mode == "generator" else {})},
    )
    if dist.main:
        write_results(out, results, samples)
    dist.barrier()
    return results
