"""The shipped manifests, installed as the package `uae_manifests` (see uae_data/core/paths.py); YAML and data only."""
