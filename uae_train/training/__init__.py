"""Training components every recipe imports (torchtune's recipe + components shape): run folders, checkpoints,
precision, data streams, schedules, and the one Unified-GRPO loop both RL stages plug into. No recipe
(uae_train/stages/) imports another."""
