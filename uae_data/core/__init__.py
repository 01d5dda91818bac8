"""The bottom layer every other module may use: config loading, the registry, user errors, atomic file
writes, the device choice, shipped paths, progress bars and provenance. It imports nothing of uae above it."""
