"""The shipped manifests, installed as the package `uae_manifests` (see uae_data/paths.py); YAML and data only."""
