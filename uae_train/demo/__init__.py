"""`uae demo`: the whole UAE loop on the scene world beside its controls. run (the recipe: stages, seeds,
controls), evals (held-out evaluations of each model), headline and web (the headline rows of each setting),
stats (paired gains with their confidence intervals)."""
