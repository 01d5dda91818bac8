#!/usr/bin/env bash
# Stage 2 with headroom: from a decoder whose pretraining stopped early, on the stage-1 encoders' captions, beside
# the shuffled-image reward. From the repository root, after run.sh (STEPS=120) wrote S1/s1-true-seed{0,1,2}:
#   experiments/web_captions/stage2_headroom.sh OUT S1 [SEEDS] [key=value ...]
# Measures (measure_pair.py): recon scene F1 on 128 held-out scenes (stage-1 encoder captions, the decoder paints)
# and GenEval-scene (its 553 prompts, which stage 2 never paints: it trains on the encoder's captions of corpus images).
set -euo pipefail
out=$1 s1=$2; seeds=${3:-"0 1 2"}; shift $(( $# >= 3 ? 3 : 2 ))
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
uae() { $PY -c "import cli; cli.main()" "$@"; }
mkdir -p "$out"
[ -f "$out/heldout/manifest.json" ] || uae build-corpus manifests/corpus/scenes.yaml source.n=128 image_size=48 seed=1000 name=heldout --out "$out/heldout"
[ -f "$out/pre-corpus/manifest.json" ] || uae build-corpus manifests/corpus/scenes-pretrain.yaml image_size=48 --out "$out/pre-corpus"
[ -f "$out/early/summary.json" ] || uae train pretrain manifests/train/pretrain-scene.yaml model=decoder \
    decoder_steps=${DEC_STEPS:-1500} checkpoint_every=${DEC_STEPS:-1500} --corpus "$out/pre-corpus" --out "$out/early"
S2=(image_size=48 guidance=8.0 steps=${STEPS:-40} images_per_step=4 group_size=4 rollout_steps=10 noise_level=0.3
    timestep_fraction=0.5 eval_images=32 eval_every=10 eval_steps=10 weight_decay=0 lr=${LR:-0.0002} 'reward={scene-soft: 1.0}')
for seed in $seeds; do
  init="$out/init-seed$seed"
  if [ ! -d "$init/decoder" ]; then
    mkdir -p "$init"; cp -r "$s1/s1-true-seed$seed/encoder" "$init/encoder"; cp -r "$out/early/decoder" "$init/decoder"
  fi
  [ -f "$init-measure/geneval/results.json" ] || $PY experiments/web_captions/measure_pair.py "$init" "$init-measure" "$out/heldout" "start seed=$seed" | tee -a "$out/results.txt"
  for ctrl in true shuffled; do
    extra=(); [ $ctrl = shuffled ] && extra=(shuffle_reward_images=true)
    run="$out/s2-$ctrl-seed$seed"
    [ -f "$run/summary.json" ] || uae train stage2 manifests/train/stage2-scene.yaml init="$init" corpus="$s1/corpus" \
        "${S2[@]}" seed=$seed "${extra[@]}" "$@" --out "$run"
    [ -f "$run-measure/geneval/results.json" ] || $PY experiments/web_captions/measure_pair.py "$run" "$run-measure" "$out/heldout" "$ctrl seed=$seed" | tee -a "$out/results.txt"
  done
done
