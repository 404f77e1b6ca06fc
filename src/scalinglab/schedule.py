"""Learning-rate rules across model sizes and schedules over one run.

Schedules (multiplier of the peak LR at optimizer step `step` of `total`):
- cosine: linear warmup, then cosine decay to `min_ratio` at exactly the last step (Hoffmann et al. 2022 sec. 3
  and App. B: a cosine cycle matched to the run's length).
- wsd: linear warmup, constant, then a linear cooldown to `min_ratio` over the last `cooldown_frac` of the run
  (warmup-stable-decay, Hagele et al. 2024).
- constant: linear warmup, then constant.
"""
from __future__ import annotations

import math

from scalinglab.errors import ConfigError

SCHEDULES = ("cosine", "wsd", "constant")
LR_RULES = ("constant", "kaplan", "width")


def peak_lr(rule: str, lr: float, n_params_nonembed: int, d_model: int, base_width: int) -> float:
    """Peak LR for a model under `rule`.

    kaplan: LR(N) = 0.003239 - 0.0001395 ln N (Kaplan et al. 2020, eq D.1, N non-embedding).
    width:  lr * base_width / d_model (the hidden-layer rule of muP, Yang et al. 2022, for Adam).
    """
    if rule == "constant":
        return lr
    if rule == "kaplan":
        return 0.003239 - 0.0001395 * math.log(n_params_nonembed)
    if rule == "width":
        return lr * base_width / d_model
    raise ConfigError("train.lr_rule", f"unknown rule {rule!r}", f"use one of {', '.join(LR_RULES)}")


def lr_multiplier(step: int, total: int, schedule: str, warmup_frac: float, min_ratio: float,
                  cooldown_frac: float) -> float:
    """Multiplier of the peak LR used for the update at `step` (0-based) of a `total`-step run."""
    warmup = max(1, round(warmup_frac * total)) if warmup_frac > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = (step - warmup) / max(1, total - 1 - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "wsd":
        cooldown = max(1, round(cooldown_frac * total))
        start = total - cooldown
        if step < start:
            return 1.0
        return 1.0 - (1 - min_ratio) * (step - start + 1) / cooldown
    raise ConfigError("train.schedule", f"unknown schedule {schedule!r}", f"use one of {', '.join(SCHEDULES)}")
