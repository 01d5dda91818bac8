"""The long help texts of the `uae` command line, kept out of cli.py so it stays a short list of commands."""

# Help texts go through rich markup: a literal "[" is written "\\[".
OVERRIDES = ("\\[MANIFEST] is a YAML manifest (default: the one named above; `uae validate MANIFEST` checks it). "
             "Each key=value after it overrides one field: dotted keys reach nested sections "
             "(filters.min_side=200, source.options.timeout=5, decoder_options.patch_size=16), values are YAML "
             "(true, 3e-3, null, \\[a, b], {k: v}). Unknown keys and bad values are refused in one line.")
TRAIN_EXAMPLES = """Pretrain, then Unified-GRPO stage 1 (encoder) and stage 2 (decoder). Every run folder holds config.yaml,
metrics.jsonl, checkpoints/ and results/; rerunning the same command resumes it.

Examples:

  uae build-corpus --limit 3000 --out out/corpus

  uae train pretrain manifests/train/pretrain-scene.yaml --corpus out/corpus --out out/pre

  uae train stage1 --init out/pre --corpus out/corpus --out out/s1

  uae train stage2 --init out/s1 --corpus out/corpus --out out/s2 steps=40

  uae train pretrain encoder=/models/Qwen2.5-VL-3B-Instruct model=encoder --corpus out/corpus --out out/real"""
EVAL_EXAMPLES = """Score-compatible evaluation harnesses; each writes results.json + samples.jsonl (read by uae report/check).

Examples:

  uae eval geneval --generator oracle --out runs/geneval

  uae eval geneval manifests/eval/geneval-official.yaml --images my_samples/ detector.checkpoint=/models/m2f.pth --out runs/g

  uae eval mmt-bench --model caption-reader --encoder out/pre/encoder --out runs/mmt

  uae eval mmt-bench --tsv MMT-Bench_VAL.tsv --predictions my_answers.jsonl --model-name my-vlm --out runs/mmt

  uae eval recon --data out/corpus --encoder out/pre/encoder --decoder out/pre/decoder --out runs/recon

  uae eval dpg-bench --generator oracle --out runs/dpg

  uae eval dpg-bench manifests/eval/dpg-official.yaml csv=dpg_bench.csv prompts=prompts/ --images my_grids/ --out runs/dpg

  uae eval alignment --out runs/alignment"""
RESUME = ("continue the run in --out from its last checkpoint (rerunning the same command does this too; another "
          "config is refused)")
