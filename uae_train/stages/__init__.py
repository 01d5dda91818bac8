"""Training recipes, one readable file per stage (pretrain, stage 1, stage 2)."""
