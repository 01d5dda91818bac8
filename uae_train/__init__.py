"""Training layer: models, rewards, GRPO math, stages, checkpoints."""
