"""DPG-Bench (ELLA, arXiv 2403.05135): dense prompts, yes/no questions per image, scored as ELLA's
dpg_bench/compute_dpg_bench.py scores them (docs/dpg-bench.md says what is official and what is not).

data.py       the official dpg_bench.csv and prompts/ folder, read and checked (the row-0 switch lives here)
scoring.py    the official scoring as pure functions: per-tile answers -> dependency zeroing -> scores
answers.py    precomputed answers (--answers JSONL), every row checked
images.py     the official image layout (<item_id>.png, a 2x2 grid of R px tiles): crop, compose, paint resumably
judges.py     the judges registry: mplug (official, optional extra), vlm (any image-text-to-text model), scene
scene_dpg.py  Scene-DPG: questions from scene captions in the official format, the scene judge's exact answers
harness.py    config and run(); benchmark.py registers it as `uae eval dpg-bench`
"""
