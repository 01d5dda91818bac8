#!/bin/bash
# Stage 2 with the in-process GenEval reward on short prompts (Flow-GRPO's GenEval task in the scene world),
# from the shipped scene models, beside its shuffled-prompt and constant-reward controls; then GenEval-scene
# (553 prompts, CFG 8, 10 steps, shift 4) of each decoder. Results: docs/geneval-detector.md ("As a reward").
# usage: INIT=out/demo/pre CORPUS=out/demo/corpus OUT=runs/ge_rl SEED=0 experiments/geneval_reward_stage2/run.sh
set -e
U=.venv/bin/uae
SEED=${SEED:-0}
COMMON="init=$INIT corpus=$CORPUS image_size=48 prompts=short steps=${STEPS:-40} images_per_step=4 group_size=8 rollout_steps=6 guidance=8 eval_images=16 eval_every=0 eval_steps=10 weight_decay=0 lr=${LR:-0.0001} seed=$SEED checkpoint_every=100"
mkdir -p "$OUT"
for v in true shuffled constant; do
  R="reward={geneval: 1.0, geneval-partial: 1.0}"; X=""
  [ $v = shuffled ] && X="shuffle_reward_images=true"
  [ $v = constant ] && R="reward={constant: 1.0}"
  RUN=$OUT/s$SEED-$v
  OMP_NUM_THREADS=2 $U train stage2 manifests/train/stage2-scene.yaml $COMMON "$R" $X --out $RUN > $RUN.log 2>&1 || { echo "train $v failed"; tail -3 $RUN.log; exit 1; }
  OMP_NUM_THREADS=2 .venv/bin/python experiments/measure_decoder/measure_decoder.py $RUN/decoder $OUT/m-s$SEED-$v 8 10 4 norel 2>/dev/null | grep RESULT | sed "s/^/$v /"
done
