#!/usr/bin/env bash
# The one-shot GPU check (benchmarks/gpu_check.py) on the lent device machine.
#
# 1. Here, in the repo root, right before the device call (the image there lacks these packages; its own torch,
#    transformers, accelerate, huggingface_hub, tokenizers, safetensors are used as they are):
#        bash benchmarks/gpu_check.sh prepare
#    -> .whl/ (git-ignored, ~12 MB): the wheels below, plus .whl/commit.txt (git describe of this checkout).
# 2. The device tool call, one line:
#        run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
#    The check stops starting sections after 450 s (--budget-s) and is killed at 540 s; the result file is
#    rewritten after every section, so a kill still leaves the finished sections. Expected: about 4-6 minutes.
#    Back in $OUT: gpu_check_<device>.txt (the results, e.g. gpu_check_h100.txt) and gpu_check_log.txt.
#    Extra arguments go to gpu_check.py, e.g. `bash benchmarks/gpu_check.sh run --sections 1,2 --budget-s 300`.
# The same without this script (what `run` does), for a command line of its own (< 2000 characters):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit; export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True UAE_GIT_COMMIT=$(cat .whl/commit.txt); nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; timeout 540 python3 benchmarks/gpu_check.py --out $OUT 2>&1 | tee $OUT/gpu_check_log.txt
set -u
WHEELS="diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.5 webdataset==0.2.111 braceexpand==0.1.7
        peft==0.21.2 timm==1.0.31 importlib_metadata==10.2.0"
cd "$(dirname "$0")/.."

if [ "${1:-run}" = prepare ]; then
  py=python3
  [ -x .venv/bin/python ] && py=.venv/bin/python
  grep -qsx '/.whl/' .gitignore .git/info/exclude || echo /.whl/ >> .git/info/exclude
  rm -rf .whl && mkdir .whl || exit 1
  # shellcheck disable=SC2086
  $py -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $WHEELS || exit 1
  git describe --always --dirty > .whl/commit.txt
  ls -l .whl && du -sh .whl
  exit 0
fi

[ "${1:-}" = run ] && shift
OUT=${OUT:-benchmarks/results}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
UAE_GIT_COMMIT=${UAE_GIT_COMMIT:-$(cat .whl/commit.txt 2>/dev/null || echo unknown)}
export UAE_GIT_COMMIT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
set -o pipefail
timeout 540 python3 benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check_log.txt"
