#!/usr/bin/env bash
# Unified-GRPO stage 1 in the web-caption setting (docs/scene-world-learning.md, "Stage 1 from web captions"):
# the web-caption encoder → stage 1 with the frozen shipped decoder, beside its constant, shuffled-image and
# length-reward controls, each measured on 256 held-out scenes (object recall, attribute precision, words per
# caption) and all 600 MMT-scene rows. From the repository root:
#   experiments/web_captions/run.sh OUT [SEEDS] [key=value ...]      (default seeds: "0 1 2")
# extra key=value arguments override the stage-1 settings below (the demo's, manifests/demo/scene-cpu.yaml).
# Every run and measurement is skipped when its output exists, so re-running continues.
set -euo pipefail
out=$1; seeds=${2:-"0 1 2"}; shift $(( $# >= 2 ? 2 : 1 ))
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
uae() { $PY -c "import cli; cli.main()" "$@"; }
mkdir -p "$out"
[ -f "$out/corpus/manifest.json" ] || uae build-corpus manifests/corpus/scenes-web.yaml source.n=3000 --out "$out/corpus"
# the init folder: the shipped web-caption encoder and the shipped (long-caption) decoder
[ -f "$out/init/summary.json" ] || $PY -c "from uae_train.demo.run import install_shipped; from pathlib import Path; p=Path('$out/init'); p.mkdir(parents=True, exist_ok=True); install_shipped(p, 'web')"
[ -f "$out/init-measure/scene-captions/results.json" ] || $PY experiments/rl_stages/measure_encoder.py "$out/init" "$out/init-measure" | tee -a "$out/results.txt"
STAGE1=(image_size=48 decoder_guidance=8.0 steps=${STEPS:-40} images_per_step=4 group_size=4 temperature=1.0 lr=0.0001
        decoder_steps=8 eval_images=32 eval_every=10 mmt_tsv= 'reward={scene-soft: 1.0}')
for seed in $seeds; do
  for ctrl in true constant shuffled length; do
    case $ctrl in
      true) extra=();; constant) extra=('reward={constant: 1.0}');;
      shuffled) extra=(shuffle_reward_images=true);; length) extra=('reward={length: 1.0}');;
    esac
    run="$out/s1-$ctrl-seed$seed"
    [ -f "$run/summary.json" ] || uae train stage1 manifests/train/stage1-scene.yaml init="$out/init" corpus="$out/corpus" \
        "${STAGE1[@]}" seed=$seed "${extra[@]}" "$@" --out "$run"
    [ -f "$run-measure/scene-captions/results.json" ] || \
        $PY experiments/rl_stages/measure_encoder.py "$run" "$run-measure" | sed "s/^RESULT /RESULT $ctrl seed=$seed /" | tee -a "$out/results.txt"
  done
done
