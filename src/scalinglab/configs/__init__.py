"""Hydra config groups shipped with scalinglab (pkg://scalinglab.configs); see scalinglab.resources."""
