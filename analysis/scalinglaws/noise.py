"""Run-to-run noise: seed groups, the noise of one run, and prediction intervals that include it.

Public API
- `seed_groups(table) -> ndarray`: one label per row; rows that repeat a config (same N and D, and same
  unique_tokens / epochs where given: table.config_columns; differing only in seed) share a label. Bootstrap resamples whole groups (a cluster bootstrap), so seeds of one config are
  never split.
- `estimate_noise(table, residuals=None, n_params=0) -> Noise`: the standard deviation of log loss of one run.
  With repeated configs: the pooled within-config std, sqrt(sum_g sum_i (l_gi - mean_g)^2 / sum_g (n_g - 1)),
  also per budget (C grouped by frontier.budget_groups). Without repeats: the fit's residual scatter in log
  space, sqrt(sum r^2 / (n - n_params)), stands in; `Noise.source` says which ("seeds" or "residuals").
- `prediction_interval(log_predictions, noise, level=0.95, seed=0) -> (low, point, high)`: the interval for
  the loss of one new run. `log_predictions` holds log L_hat at the new (N, D) for each bootstrap draw of the
  parameters (parameter uncertainty; one value: none); each draw gets a noise draw eps ~ Normal(0, sigma^2)
  in log loss, and the interval is the percentile interval of exp(log L_hat + eps). point = exp(median).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .frontier import budget_groups
from .table import config_columns

__all__ = ["Noise", "seed_groups", "estimate_noise", "prediction_interval"]


@dataclass(frozen=True)
class Noise:
    """sigma: std of log loss of one run; source: 'seeds' or 'residuals'; per_budget: budget -> sigma (seeds)."""

    sigma: float
    source: str
    dof: int
    per_budget: pd.DataFrame | None = None

    def describe(self) -> str:
        if self.source == "seeds":
            return (f"run-to-run noise from repeated seeds: std of log loss {self.sigma:.4f} "
                    f"({self.dof} degrees of freedom)")
        return (f"no config is repeated with another seed, so the fit's residual scatter stands in for the noise: "
                f"std of log loss {self.sigma:.4f} ({self.dof} degrees of freedom)")


def seed_groups(table: pd.DataFrame) -> np.ndarray:
    """Config label per row: rows equal in every config column (table.config_columns: N, D, and unique_tokens
    or epochs when present) are seeds of one config."""
    cols = config_columns(table)
    if "N" not in cols:  # not a table of runs (e.g. x, y of a plain power law): every row is its own group
        return np.arange(len(table))
    keys = table[cols].apply(pd.to_numeric, errors="coerce").astype(float).round(6).apply(tuple, axis=1)
    return pd.factorize(keys)[0]


def estimate_noise(table: pd.DataFrame, residuals=None, n_params: int = 0) -> Noise:
    """Std of log loss of one run: pooled over repeated seeds, else the fit's residual scatter.

    Parameters
    ----------
    table : DataFrame
        Runs with N, D, C, loss; rows with equal (N, D) are seeds of one config.
    residuals : array_like, optional
        The fit's residuals in log loss, used when no config repeats.
    n_params : int
        The fit's number of parameters (degrees of freedom of the residual scatter: n - n_params).

    Returns
    -------
    Noise
        sigma, source ("seeds" or "residuals"), dof, per_budget.
    """
    groups = seed_groups(table)
    logL = np.log(table["loss"].to_numpy(float))
    frame = pd.DataFrame({"g": groups, "l": logL, "budget": budget_groups(table["C"].to_numpy(float))})
    stats = frame.groupby("g").agg(n=("l", "size"), ss=("l", lambda v: float(((v - v.mean()) ** 2).sum())),
                                   budget=("budget", "first"))
    rep = stats[stats["n"] >= 2]
    if len(rep):
        dof = int((rep["n"] - 1).sum())
        per = rep.groupby("budget").apply(lambda s: pd.Series({"configs": len(s), "seeds": int(s["n"].sum()),
                                                               "sigma": float(np.sqrt(s["ss"].sum()
                                                                                      / (s["n"] - 1).sum()))}),
                                          include_groups=False).reset_index()
        return Noise(float(np.sqrt(rep["ss"].sum() / dof)), "seeds", dof, per)
    if residuals is None:
        raise ValueError("no repeated seeds and no residuals: pass the fit's log residuals")
    r = np.asarray(residuals, float)
    dof = max(len(r) - int(n_params), 1)
    return Noise(float(np.sqrt(np.sum(r ** 2) / dof)), "residuals", dof)


def prediction_interval(log_predictions, noise: Noise, level: float = 0.95, seed: int = 0):
    """(low, point, high) loss of one new run: parameter draws + Normal(0, sigma^2) noise in log loss.

    Parameters
    ----------
    log_predictions : array_like
        log L_hat at the new run for each bootstrap draw of the parameters (one value: no parameter uncertainty).
    noise : Noise
        The run-to-run noise (estimate_noise).
    level : float
        Coverage.
    seed : int
        Seed of the noise draws.

    Returns
    -------
    tuple of float
        (low, point, high); point = exp(median of log_predictions).
    """
    lp = np.asarray(log_predictions, float).ravel()
    lp = lp[np.isfinite(lp)]
    rng = np.random.default_rng(seed)
    draws = np.repeat(lp, max(1, 2000 // len(lp)))
    draws = draws + rng.normal(0.0, noise.sigma, draws.size)
    tail = 50 * (1 - level)
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(np.exp(lo)), float(np.exp(np.median(lp))), float(np.exp(hi))
