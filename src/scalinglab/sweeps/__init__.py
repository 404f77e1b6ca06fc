"""Sweep files shipped with scalinglab (`scalinglab-sweep plan <name>`); see scalinglab.resources."""
