"""Data layer: the scene world, corpus sources, filters, captioners, shards."""
