"""Learning-rate rules across model sizes and schedules over one run (settings: config.TrainConfig).

Schedules (multiplier of the peak LR at optimizer step `step` of `total`):
- cosine: linear warmup, then cosine decay to `min_lr_ratio` at exactly the last step (Hoffmann et al. 2022 sec. 3
  and App. B: a cosine cycle matched to the run's length).
- wsd: linear warmup, constant, then a linear cooldown to `min_lr_ratio` over the last `cooldown_frac` of the run
  (warmup-stable-decay, Hagele et al. 2024; the cooldown's first step is runs.cooldown_start).
- constant: linear warmup, then constant.
"""
from __future__ import annotations

import math

from scalinglab.config import TrainConfig
from scalinglab.errors import ConfigError
from scalinglab.runs import cooldown_start


def peak_lr(train: TrainConfig, counts: dict, d_model: int) -> float:
    """Peak LR for a model under train.lr_rule; `counts` are GPT.param_counts (n_params, n_params_nonembed).

    constant: train.lr.
    kaplan:   LR(N) = 0.003239 - 0.0001395 ln N (Kaplan et al. 2020, eq D.1, N non-embedding).
    width:    lr * lr_base_width / d_model (the hidden-layer rule of muP, Yang et al. 2022, for Adam).
    tuned:    LR_opt(N) = lr_ref (N / N_ref)^p from the law file train.lr_law, fitted on a tuning sweep
              (scalinglaws.lr_tuning; Porian et al. 2024), N counted as the law says.
    """
    if train.lr_rule == "kaplan":
        return 0.003239 - 0.0001395 * math.log(counts["n_params_nonembed"])
    if train.lr_rule == "width":
        return train.lr * train.lr_base_width / d_model
    if train.lr_rule == "tuned":
        law = lr_law(train.lr_law)
        return float(law.lr(counts[law.n_column]))
    return train.lr


def lr_law(path: str):
    """The scalinglaws.lr_tuning.LRLaw in `path`; a missing or damaged file is a ConfigError on train.lr_law."""
    from scalinglaws.errors import InputError
    from scalinglaws.lr_tuning import read_lr_law

    try:
        return read_lr_law(path)
    except InputError as error:
        raise ConfigError("train.lr_law", f"{error.field}: {error.problem}", error.fix) from None


def lr_multiplier(step: int, total: int, train: TrainConfig) -> float:
    """Multiplier of the peak LR used for the update at `step` (0-based) of a `total`-step run."""
    warmup = max(1, round(train.warmup_frac * total)) if train.warmup_frac > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    min_ratio = train.min_lr_ratio
    if train.schedule == "cosine":
        progress = (step - warmup) / max(1, total - 1 - warmup)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if train.schedule == "wsd":
        start = cooldown_start(total, train.cooldown_frac)
        if step < start:
            return 1.0
        return 1.0 - (1 - min_ratio) * (step - start + 1) / (total - start)
    return 1.0  # constant
