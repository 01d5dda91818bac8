"""The RL maths of Unified-GRPO: group-relative advantages and the clipped policy loss (grpo), the Flow-GRPO
SDE sampler and its log-probabilities (flow_sde), the DiffusionNFT-style update (flow_nft) and the reward
terms (rewards). The stages in uae_train.stages put them to work."""
