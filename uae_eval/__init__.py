"""Evaluation layer: similarity metrics, benchmarks, the results schema, report and check.

Never imports uae_train: harnesses take plain callables so any outside model can be scored.
"""
