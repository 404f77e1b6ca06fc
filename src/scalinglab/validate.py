"""Cheap checks of a composed run config, before any data is read or any compute starts.

`validate(cfg)` raises ConfigError(field, problem, fix) for the first bad setting it finds.
"""
from __future__ import annotations

import math

from omegaconf import DictConfig, OmegaConf

from scalinglab.errors import ConfigError
from scalinglab.store import check_name


def _positive(cfg: DictConfig, field: str, integer: bool = False, allow_zero: bool = False) -> None:
    value = OmegaConf.select(cfg, field)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0) and (not integer or float(value).is_integer())
    if not ok:
        kind = "a whole number" if integer else "a number"
        raise ConfigError(field, f"must be {kind} {'>= 0' if allow_zero else '> 0'}, got {value!r}",
                          f"set {field}=<{kind} {'>= 0' if allow_zero else '> 0'}>")


def validate(cfg: DictConfig) -> None:
    """Check the train settings that no component constructor checks."""
    for field in ("train.tokens", "train.batch_size", "train.eval_points", "train.patience"):
        _positive(cfg, field, integer=True)
    for field in ("train.lr", "train.diverge_factor", "train.checkpoint_minutes"):
        _positive(cfg, field)
    for field in ("train.weight_decay", "train.grad_clip", "train.warmup_frac", "train.eps"):
        _positive(cfg, field, allow_zero=True)
    for field in ("train.warmup_frac", "train.min_lr_ratio", "train.cooldown_frac", "train.beta1", "train.beta2"):
        value = OmegaConf.select(cfg, field)
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ConfigError(field, f"must be in [0, 1], got {value!r}", f"set {field} between 0 and 1")
    from scalinglab.schedule import LR_RULES, SCHEDULES
    if cfg.train.schedule not in SCHEDULES:
        raise ConfigError("train.schedule", f"unknown schedule {cfg.train.schedule!r}", f"use one of {SCHEDULES}")
    if cfg.train.lr_rule not in LR_RULES:
        raise ConfigError("train.lr_rule", f"unknown rule {cfg.train.lr_rule!r}", f"use one of {LR_RULES}")
    check_name(str(cfg.sweep), "sweep")
