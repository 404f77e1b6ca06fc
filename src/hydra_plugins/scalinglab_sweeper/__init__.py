"""Hydra sweeper plugin `hydra/sweeper=scalinglab`: expands a sweep file's `plan:` section (scalinglab.sweep_plan)
and launches the runs through the configured Hydra launcher."""
