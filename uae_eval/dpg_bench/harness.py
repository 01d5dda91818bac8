"""DPG-Bench harness: images (painted, from a folder) judged tile by tile, or precomputed answers -> scores.

Three inputs, one scorer (scoring.py):
  generator  `generate(prompts, seeds) -> images` (a scene generator, --pipeline or --decoder): `tiles` images per
             prompt, composed into the official grid and saved as OUT/images/<item_id>.png; a rerun continues;
  folder     a folder in the official layout (<item_id>.png);
  answers    precomputed answers (answers.py), scored without a judge.
Outputs: results.json + samples.jsonl (uae_eval.results; one sample per item) and answers.jsonl (every judged
answer, in the --answers format, so a run can be rescored). uae refuses what the official script silently
skips: a missing or unreadable image is an error unless `allow_partial` (then counted and marked partial).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Sequence

from uae_data.core.config import help_field, to_dict
from uae_data.core.errors import InputError
from uae_eval.dpg_bench.data import DPGData, Item, Question, load_csv, read_prompt
from uae_eval.dpg_bench.images import ImageFailure, crop_tiles, open_image, paint_items, tile_side
from uae_eval.dpg_bench.scoring import ImageScore, aggregate, score_image
from uae_eval.vlm_judge import ServedVLMConfig

BENCHMARK = "dpg-bench"
BENCHMARK_VERSION = "dpg-bench@ELLA-025f650"  # scoring of TencentQQGYLab/ELLA dpg_bench/compute_dpg_bench.py
SCENE_CSV = "manifests/dpg_scene/dpg_bench.csv"
DTYPES = ("auto", "float32", "bfloat16", "float16")
GRID_GROUP = 16  # grids a served judge is asked about at once (16 x 4 tiles x ~15 questions in flight at most)


@dataclass
class DPGConfig:
    csv: str = help_field(SCENE_CSV, help="the questions: DPG-Bench's dpg_bench.csv (official columns); relative paths "
                                          "are from the working folder, manifests/... also from the installed copy")
    prompts: str | None = help_field("manifests/dpg_scene/prompts", help="folder of <item_id>.txt prompts (painting only)")
    judge: str = help_field("scene", help="who answers: mplug (official; pip install 'uae[dpg-mplug]') | vlm (any "
                                          "image-text-to-text model: judge_options.model) | scene (Scene-DPG, exact)")
    judge_options: dict = help_field({}, help="judge options: mplug {model, device}; vlm {model, prompt, "
                                              "max_new_tokens}")
    tiles: int = help_field(4, help="tiles judged per image, 1-4 (official pic-num: 4, a 2x2 grid)")
    resolution: int | None = help_field(None, help="tile side R in px (null: half the image's width; its width for 1 tile)")
    ask_first_question: bool = help_field(False, help="false (official): never ask the CSV's first row, as "
                                                      "compute_dpg_bench.py skips pandas row 0; true asks it (another number)")
    generator: str = help_field("oracle", help="scene painter when no model is given: oracle | random | noise")
    generator_options: dict = help_field({}, help="scene painter options, e.g. noise: {family: smooth}")
    image_size: int = help_field(64, help="tile side of the scene painters")
    seed: int = help_field(0, help="tile k of item i (CSV order) is painted from seed*100003 + i*tiles + k")
    steps: int = help_field(50, help="--pipeline: sampling steps")
    guidance: float | None = help_field(None, help="--pipeline: guidance scale (null: the pipeline's default)")
    pipeline_image_size: int | None = help_field(None, help="--pipeline: tile side (null: the pipeline's default)")
    pipeline_options: dict = help_field({}, help="--pipeline: extra keyword arguments for every pipeline call")
    dtype: str = help_field("auto", help="--pipeline: auto (bf16 on CUDA, fp32 on CPU), float32, bfloat16, float16")
    batch_size: int = help_field(16, help="tiles painted per model call")
    limit: int | None = help_field(None, help="score only the first N items (smoke runs; marked partial)")
    server: ServedVLMConfig = help_field(None, help="judge vlm served by vLLM/SGLang/lmdeploy: server.endpoint=URL makes "
                                                    "judge_options.model (--judge-model) the served model's name")
    save_images: bool = help_field(True, help="keep painted images in OUT/images (official layout; reruns continue)")
    allow_partial: bool = help_field(False, help="score an --images folder or --answers file that misses images or "
                                                 "rows, or has unreadable images (results say partial: true and how "
                                                 "many); off: refuse, as a score over a subset is another number")

    def __post_init__(self) -> None:
        self.server = self.server or ServedVLMConfig()

    def validate(self) -> None:
        from uae_data.core.config import check_options, require_at_least_one
        from uae_eval.dpg_bench.generators import GENERATORS
        from uae_eval.dpg_bench.judges import JUDGES

        require_at_least_one(self, "limit", "resolution", "image_size", "steps", "batch_size")
        if not 1 <= self.tiles <= 4:
            raise ValueError(f"tiles must be 1-4 (the 2x2 grid's tiles), got {self.tiles}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        self.server.validate()
        if self.server.endpoint and self.judge != "vlm":
            raise ValueError(f"server.endpoint is read by judge vlm only, not {self.judge!r}; add judge=vlm "
                             "--judge-model NAME (the served model's name)")
        if self.server.endpoint and "max_new_tokens" in self.judge_options:
            raise ValueError("judge_options.max_new_tokens is not read by a served judge: its answer limit is "
                             "server.max_tokens")
        if self.judge == "scene" and self.judge_options:
            raise ValueError(f"judge_options: the scene judge takes no options (got {', '.join(self.judge_options)}); "
                             "--judge-model and judge_options apply to --judge vlm or mplug")
        for what, registry, name, options, exclude in (
                ("judge", JUDGES, self.judge, self.judge_options, ("ask",)),
                ("generator", GENERATORS, self.generator, self.generator_options, ("image_size",))):
            if name not in registry:
                raise ValueError(f"{what}: unknown {what} {name!r} (known: {', '.join(registry.names())})")
            check_options(f"{what}_options", options, registry.get(name), exclude=exclude)

    def csv_path(self) -> Path:
        from uae_data.core.paths import shipped

        return shipped(self.csv)

    def prompts_path(self) -> Path:
        from uae_data.core.paths import shipped

        if not self.prompts:
            raise InputError("painting needs the prompts folder: set prompts=DIR (DPG-Bench's prompts/)")
        return shipped(self.prompts)


@dataclass
class Judged:
    """One item's outcome on one rank: its score, its sample, its answer rows, or why it failed."""

    index: int
    score: ImageScore | None
    sample: dict | None
    rows: list[dict]
    failure: str | None = None


def answer_rows(item: Item, asked: list[tuple[list[str], list[str] | None]]) -> tuple[list[dict[int, str]], list[dict]]:
    """(answers per tile, answer rows) of one grid from its tiles' (answers, raw replies or None)."""
    per_tile, rows = [], []
    for t, (said, raw) in enumerate(asked):
        per_tile.append({q.proposition_id: a for q, a in zip(item.questions, said)})
        for n, (q, a) in enumerate(zip(item.questions, said)):
            rows.append({"item_id": item.item_id, "tile": t, "proposition_id": q.proposition_id, "answer": a,
                         **({"raw": raw[n]} if raw else {})})
    return per_tile, rows


def _ask(judge, grids: list[tuple[list, Sequence[Question]]]) -> list[list[tuple[list[str], list[str] | None]]]:
    """Per grid, per tile: (answers, raw replies or None). A judge with `judge_grids` (a served VLM) is asked a
    group of grids' questions at once, so a server has many requests in flight; others tile by tile."""
    at_once = getattr(judge, "judge_grids", None)
    if at_once is not None:
        return at_once(grids)
    return [[(judge(tile, questions), getattr(judge, "raw", None)) for tile in tiles] for tiles, questions in grids]


def sample_of(item: Item, scored: ImageScore, image: str | None) -> dict:
    s: dict = {"item_id": item.item_id, "prompt": item.text}
    if scored.score is None:
        s |= {"decision": "skipped", "reason": scored.skipped}
    else:
        yes = sum(v for v in scored.last_before.values())
        s |= {"score": 100 * scored.score, "tile_scores": [100 * t for t in scored.tiles],
              "correct": scored.score == 1.0,
              "reason": f"last tile: {yes:g} of {len(scored.last_before)} answered yes before the dependency zeroing"}
    return s | ({"image": image} if image else {})


def run(cfg: DPGConfig, out: Path, generate: Callable | None = None, images: Path | None = None,
        answers: Path | None = None, judge=None, model: dict | None = None,
        on_progress: Callable[..., None] | None = None):
    """Score one DPG-Bench run into `out`; returns the Results. One input at most: `generate` (or cfg.generator
    when none is given), `images` or `answers`; `judge` (a built judge) overrides cfg.judge."""
    from uae_data import distributed
    from uae_eval.results import Results, write_results

    dist = distributed.current()
    out = Path(out)
    if sum(x is not None for x in (generate, images, answers)) > 1:
        raise InputError("give one input: a generator, an image folder or an answers file")
    data = load_csv(cfg.csv_path(), cfg.ask_first_question)
    items = data.items[: cfg.limit] if cfg.limit else data.items
    number = {it.item_id: i for i, it in enumerate(data.items)}
    missing: list[str] = []
    resumed: list[str] = []
    outcomes: Iterator[Judged]
    if answers is not None:
        from uae_eval.dpg_bench.answers import read_answers

        given, missing = read_answers(answers, items, cfg.tiles, set(number), data.skipped_question, cfg.allow_partial)
        mode, provenance = "answers", {"backend": "precomputed", "path": str(answers), "official_compatible": None}
        model = model or {"name": "precomputed-answers", "path": str(answers), "config": {}}
        share = dist.split([it for it in items if it.item_id in given])
        outcomes = (_scored(number[it.item_id], it, given[it.item_id], [], None) for it in share)
        rs: set[int] = set()
    else:
        from uae_eval.dpg_bench.judges import build_judge

        judge = judge or build_judge(cfg.judge, **cfg.judge_options)
        if hasattr(judge, "check"):
            judge.check(items, str(cfg.csv_path()))
        rs = set()
        if images is not None:
            mode, model = "folder", model or {"name": "images", "path": str(images), "config": {}}
            missing = [it.item_id for it in items if not (Path(images) / f"{it.item_id}.png").is_file()]
            if missing and not cfg.allow_partial:
                raise InputError(f"{images}: {len(missing)} of {len(items)} images are missing (e.g. {missing[0]}.png); "
                                 "a DPG-Bench score over a subset is not a DPG-Bench score: complete it, or pass "
                                 "--allow-partial to score what is there, marked partial")
            absent = set(missing)
            share = dist.split([it for it in items if it.item_id not in absent])
            grids = ((it, lambda it=it: open_image(Path(images) / f"{it.item_id}.png"),
                      str((Path(images) / f"{it.item_id}.png").resolve())) for it in share)
        else:
            mode = "generator"
            generate, model = _painter(cfg, items, generate, model)
            share = dist.split(items)
            folder = out / "images" if cfg.save_images else None
            if folder is not None:
                from uae_eval.geneval.harness import check_generation

                dist.barrier()
                check_generation(folder, {"model": model, "seed": cfg.seed, "tiles": cfg.tiles,
                                          "image_size": cfg.image_size, "csv": str(cfg.csv)}, write=dist.main)
            prompts_dir = cfg.prompts_path()
            painted = paint_items([(number[it.item_id], it.item_id, read_prompt(prompts_dir, it.item_id)) for it in share],
                                  generate, cfg.tiles, cfg.seed, cfg.batch_size, folder, resumed)
            by_id = {it.item_id: it for it in share}
            grids = ((by_id[i], lambda im=im: im, f"images/{rel}" if rel else None) for i, im, rel in painted)
        outcomes = _judge_all(grids, judge, cfg, number, rs)
    done = []
    for outcome in outcomes:
        done.append(outcome)
        if outcome.failure and not cfg.allow_partial:
            raise InputError(f"{outcome.failure}; the official scorer would skip this image silently: fix or remove "
                             "it, or pass --allow-partial to score the others, marked partial")
        if on_progress:
            on_progress(len(done), len(share))
    if mode != "answers":
        provenance = _judge_failures(judge, cfg, dist)
    merged = sorted((o for part in dist.gather(done) for o in part), key=lambda o: o.index)
    failed = {data.items[o.index].item_id: o.failure for o in merged if o.failure}
    scored = [o for o in merged if o.score is not None]
    metrics = aggregate([o.score for o in scored], data.by_id())
    if not metrics:
        raise InputError(f"no image could be scored ({len(failed)} failed, {len(missing)} missing, "
                         f"{len(scored)} skipped by the official quirks)")
    n_items = sum(o.score.score is not None for o in scored)
    extra = _extra(cfg, data, items, provenance, scored, failed, missing, rs, mode)
    if mode == "generator":
        extra["resumed_items"] = int(dist.sum(len(resumed))[0])
    results = Results(benchmark=BENCHMARK, benchmark_version=BENCHMARK_VERSION, model=model, metrics=metrics,
                      primary_metric="overall", higher_is_better=True, n_items=n_items,
                      config=to_dict(cfg) | {"mode": mode, "csv_file": str(cfg.csv_path())}, extra=extra)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        write_results(out, results, [o.sample for o in scored])
        if mode != "answers":
            with open(out / "answers.jsonl", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for o in merged for r in o.rows)
    dist.barrier()
    return results


def _judge_failures(judge, cfg: DPGConfig, dist) -> dict:
    """The judge's provenance after judging, with how many of its requests failed for good (a served judge: each
    counts as a "no"), summed over ranks; refused unless allow_partial, since those answers were never given."""
    provenance = judge.provenance()
    if "failed_requests" not in provenance:
        return provenance
    provenance["failed_requests"] = n = int(dist.sum(provenance["failed_requests"])[0])
    if n and not cfg.allow_partial:
        raise InputError(f"{n} judge requests failed for good ({provenance.get('first_failure')}); nothing was "
                         "written: rerun (painted images are kept), or pass --allow-partial to score them as "
                         "'no', marked partial")
    return provenance


def _painter(cfg: DPGConfig, items: list[Item], generate: Callable | None, model: dict | None):
    """(generate, model info): the given painter, or cfg.generator's scene painter (the oracle reads the prompts)."""
    from uae_eval.dpg_bench.generators import build_generator, check_oracle_prompts

    if generate is not None:
        return generate, model or {"name": getattr(generate, "name", "generator"), "path": None, "config": {}}
    if cfg.generator == "oracle":
        check_oracle_prompts([(it.item_id, read_prompt(cfg.prompts_path(), it.item_id)) for it in items],
                             str(cfg.prompts_path()))
    generate = build_generator(cfg.generator, image_size=cfg.image_size, **cfg.generator_options)
    return generate, model or {"name": f"scene-{cfg.generator}", "path": None,
                               "config": {"image_size": cfg.image_size, **cfg.generator_options}}


def _scored(index: int, item: Item, per_tile: list[dict[int, str]], rows: list[dict], image: str | None) -> Judged:
    s = score_image(item, per_tile)
    return Judged(index, s, sample_of(item, s, image), rows)


def _judge_all(grids, judge, cfg: DPGConfig, number: dict[str, int], rs: set[int]) -> Iterator[Judged]:
    group = GRID_GROUP if hasattr(judge, "judge_grids") else 1
    grids = iter(grids)
    for chunk in iter(lambda: list(islice(grids, group)), []):  # groups of `group` grids, lazily
        ready = []  # (item, image name, tiles) of the chunk's grids that could be cut into tiles
        for item, load, image in chunk:
            try:
                grid = load()
                ready.append((item, image, crop_tiles(grid, cfg.tiles, cfg.resolution, image or item.item_id)))
                rs.add(tile_side(grid, cfg.tiles, cfg.resolution))
            except ImageFailure as e:
                yield Judged(number[item.item_id], None, None, [], str(e))
        for (item, image, _), asked in zip(ready, _ask(judge, [(tiles, item.questions) for item, _, tiles in ready])):
            yield _scored(number[item.item_id], item, *answer_rows(item, asked), image)


def _extra(cfg: DPGConfig, data: DPGData, items: list[Item], provenance: dict, scored: list[Judged],
           failed: dict[str, str], missing: list[str], rs: set[int], mode: str) -> dict:
    skipped = {o.score.item_id: o.score.skipped for o in scored if o.score.score is None}
    left = len(data.items) - len(items)  # items a `limit` left out count as missing images, as GenEval counts them
    partial = bool(failed or missing or left or provenance.get("failed_requests"))
    official = (bool(provenance.get("official_compatible")) and cfg.tiles == 4 and not cfg.ask_first_question
                and not partial)
    return {"official_compatible": official, "judge": provenance, "tiles": cfg.tiles,
            "resolution": sorted(rs) if rs else cfg.resolution,
            "first_question_asked": cfg.ask_first_question, "first_question_skipped": data.skipped_question,
            "n_skipped": len(skipped), "skipped_items": skipped, "n_items_csv": len(data.items),
            "partial": partial, "n_missing_images": len(missing) + left, "missing_images": missing[:20],
            "n_failed_images": len(failed), "failed_images": dict(list(failed.items())[:20]),
            **({"limited_to": len(items)} if left else {})}
