"""`uae eval dpg-bench`: the command's options and what it calls; cli.py registers it (it is at its size limit).

The function is built by `dpg_command(load_benchmark, ranks, console)` with cli.py's own helpers, so the command
parses, checks paths (cli.friendly) and reports exactly as the other `uae eval` commands do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional

import typer

DOC = """DPG-Bench (ELLA's compute_dpg_bench.py scoring): overall, L1 and L2 category scores x 100.

    Example: uae eval dpg-bench manifests/eval/dpg-scene.yaml --generator oracle --out runs/dpg

    A real model: paint the 1,065 prompts as 2x2 grids with any diffusers pipeline (resumable), judge with mPLUG:
    uae eval dpg-bench manifests/eval/dpg-official.yaml csv=ELLA/dpg_bench/dpg_bench.csv prompts=ELLA/dpg_bench/prompts --pipeline MY_PIPELINE --out runs/dpg
    """


def dpg_command(load_benchmark: Callable, ranks: Callable, console) -> Callable:
    """The Typer command function of `uae eval dpg-bench`."""

    def eval_dpg(
        args: Optional[List[str]] = typer.Argument(None, help="\\[MANIFEST] \\[key=value ...] (default manifests/eval/dpg-scene.yaml; csv=PATH prompts=DIR)"),
        out_dir: Path = typer.Option(..., "--out", help="results folder"),
        generator: Optional[str] = typer.Option(None, help="oracle | random | noise (scene world; overrides the manifest)"),
        images: Optional[Path] = typer.Option(None, help="score a folder in the official layout (<item_id>.png, a 2x2 grid of tiles)"),
        answers: Optional[Path] = typer.Option(None, help="score precomputed answers (jsonl: item_id, tile, proposition_id, answer) instead of judging"),
        judge: Optional[str] = typer.Option(None, help="mplug (official; pip install 'uae\\[dpg-mplug]') | vlm | scene — overrides the manifest"),
        judge_model: Optional[str] = typer.Option(None, "--judge-model", help="the judge's model: a VLM folder or hub name for --judge vlm (mplug: its modelscope id)"),
        allow_partial: bool = typer.Option(False, "--allow-partial", help="score an --images/--answers input that misses or fails images or rows; results are marked partial"),
        encoder: Optional[Path] = typer.Option(None, help="with --decoder: paint with our encoder+decoder (saved folders)"),
        decoder: Optional[Path] = typer.Option(None, help="decoder folder (uae train pretrain output)"),
        pipeline: Optional[str] = typer.Option(None, help="paint with any diffusers text-to-image pipeline (folder or hub name); steps, guidance, size, dtype from the manifest"),
        steps: Optional[int] = typer.Option(None, help="sampling steps for --decoder (default 20)"),
        guidance: Optional[float] = typer.Option(None, help="classifier-free guidance for --decoder (default 1.0)"),
    ) -> None:
        from uae_data.core.progress import progress_bar
        from uae_train.evaluation.inputs import dpg_inputs

        dist = ranks()
        shortcuts = {"generator": generator, "judge": judge, "judge_options.model": judge_model,
                     "allow_partial": "true" if allow_partial else None}
        bench, cfg = load_benchmark("dpg-bench", args, shortcuts, out_dir)
        given = {"--images": images, "--answers": answers, "--generator": generator, "--judge": judge,
                 "--judge-model": judge_model, "--allow-partial": allow_partial}
        generate, model_info, built = dpg_inputs(cfg, encoder, decoder, pipeline, steps=steps, guidance=guidance,
                                                 given=given)
        with progress_bar("dpg-bench", enabled=None if dist.main else False) as update:
            res = bench.run(cfg, out_dir, generate=generate, images=images, answers=answers, judge=built,
                            model=model_info, on_progress=update)
        if dist.main:
            console.print(bench.summary(res, out_dir), soft_wrap=True)

    eval_dpg.__doc__ = DOC
    return eval_dpg
