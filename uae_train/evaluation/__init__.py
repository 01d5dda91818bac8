"""What connects trained models to uae_eval's harnesses: loading them as plain callables (generate,
caption, answer), their per-layer features, and the caption-reliance check. uae_eval never imports uae_train;
this package sits above both."""
