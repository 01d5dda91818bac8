#!/usr/bin/env bash
# One stage run from the shipped scene models, then its measurement: the rows of docs/scene-world-learning.md
# ("Unified-GRPO from the shipped models"). From the repository root:
#   experiments/rl_stages/run.sh stage2 OUT corpus=C2 prompts=short noise_level=0.3 rollout_steps=10 steps=60 \
#       images_per_step=8 group_size=8 lr=0.0003 'reward={geneval-partial: 1.0}' seed=0
#   experiments/rl_stages/run.sh stage1 OUT corpus=C1 temperature=1.0 images_per_step=8 group_size=8 lr=0.00001
# C1: uae build-corpus manifests/corpus/scenes.yaml source.n=3000 image_size=48 seed=0 --out C1 (the demo's corpus)
# C2: the same with source.prompt_scenes=1.0 (framed prompt scenes, each with its short prompt)
# Defaults are the demo's stage settings before 2026-11-30 (stage 2: 6 rollout steps at noise level 0.7); later
# key=value arguments override them.
set -euo pipefail
stage=$1 out=$2; shift 2
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
[ -f out/shipped-init/decoder/decoder_config.json ] || $PY -c "from uae_train.demo.run import install_shipped; from pathlib import Path; install_shipped(Path('out/shipped-init'))"
if [ "$stage" = stage2 ]; then
  $PY -c "import cli; cli.main()" train stage2 manifests/train/stage2-scene.yaml init=out/shipped-init image_size=48 guidance=8.0 \
    steps=25 images_per_step=4 group_size=4 rollout_steps=6 eval_images=32 eval_every=5 eval_steps=10 weight_decay=0 \
    lr=0.0001 "$@" --out "$out"
  $PY experiments/measure_decoder/measure_decoder.py "$out/decoder" "$out-measure" 8 10 4 norel ${MEASURE:-}  # MEASURE="0 4": 4 images a prompt
else
  $PY -c "import cli; cli.main()" train stage1 manifests/train/stage1-scene.yaml init=out/shipped-init image_size=48 \
    decoder_guidance=8.0 steps=30 images_per_step=4 group_size=4 temperature=0.7 lr=0.0001 decoder_steps=8 eval_images=32 \
    eval_every=6 mmt_limit=40 'reward={scene-soft: 1.0}' "$@" --out "$out"
  $PY experiments/rl_stages/measure_encoder.py "$out" "$out-measure"
fi
