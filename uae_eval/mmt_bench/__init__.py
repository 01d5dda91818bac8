"""MMT-Bench (VLMEvalKit-compatible scoring); see /work/shared/facts/mmt_bench.md."""
