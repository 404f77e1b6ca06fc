"""Percentile bootstrap intervals for any fit: resample the runs with replacement, refit, take percentiles.

Runs are resampled as whole seed groups (every seed of a config together), so repeated seeds never pass for
independent evidence.

How each fit is resampled is an argument of `bootstrap` (unit, groups, warm start, batched refit); `RESAMPLING`
holds the defaults for the fits of this package, so `bootstrap(fit_approach3, df)` does the right thing.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

import numpy as np
import pandas as pd

from . import chinchilla, frontier, kaplan, powerlaw
from .errors import InputError
from .noise import seed_groups
from .result import FitResult
from .table import fit_table

# How each fit of this package is resampled unless the caller says otherwise (keywords of `bootstrap`).
RESAMPLING: dict[Callable, dict] = {
    frontier.fit_approach1: {"unit": "run_id"},  # whole training curves
    frontier.fit_approach2: {"groups": frontier.budget_labels},  # within each budget: every resample keeps them all
    chinchilla.fit_approach3: {"warm_start": True, "refit_batch": chinchilla.refit_approach3_batch},
    **{fn: {"warm_start": True} for fn in (kaplan.fit_L_N, kaplan.fit_L_D, kaplan.fit_L_C, kaplan.fit_L_ND,
                                           kaplan.fit_L_NS, powerlaw.fit_power_law)},
}


def _draws(df: pd.DataFrame, n: int, seed: int, groups, unit):
    """n resamples as row positions (or, for unit resampling, lists of unit labels).

    Row resampling draws whole seed groups (noise.seed_groups: the runs of one config, differing only in seed;
    a cluster bootstrap, Efron & Tibshirani 1993 sec 8.4), within each of `groups` when given; where no config
    repeats, every run is its own group and this is the plain row bootstrap.
    """
    rng = np.random.default_rng(seed)
    if unit is not None:
        units = pd.unique(df[unit])
        return [units[rng.integers(0, len(units), len(units))] for _ in range(n)]
    configs = seed_groups(df)
    strata = np.zeros(len(df), dtype=int) if groups is None else groups
    clusters = [[np.flatnonzero((strata == g) & (configs == c)) for c in pd.unique(configs[strata == g])]
                for g in pd.unique(strata)]
    return [np.concatenate([m[k] for m in clusters for k in rng.integers(0, len(m), len(m))]) for _ in range(n)]


def _sample(df: pd.DataFrame, draw, unit, rows: dict | None = None) -> pd.DataFrame:
    """The resampled table: rows `draw`, or for unit resampling the rows of each drawn unit, relabelled
    `<unit>#<k>` so a unit drawn twice counts as two (`rows`: unit -> row positions, computed once per table)."""
    if unit is None:
        return df.iloc[draw].reset_index(drop=True)
    rows = rows if rows is not None else _unit_rows(df, unit)
    sample = df.iloc[np.concatenate([rows[u] for u in draw])].reset_index(drop=True)
    sample[unit] = np.repeat([f"{u}#{k}" for k, u in enumerate(draw)], [len(rows[u]) for u in draw])
    return sample


def _unit_rows(df: pd.DataFrame, unit: str) -> dict:
    return {u: np.flatnonzero(df[unit].to_numpy() == u) for u in pd.unique(df[unit])}


def _refit(fit_fn, df, draws, unit, init, refit_batch, fit_kwargs):
    """Params dict (or an error string) per draw: all at once with refit_batch, else one fit per draw."""
    rows = _unit_rows(df, unit) if unit is not None else None
    if refit_batch is not None:
        return refit_batch([_sample(df, d, unit, rows) for d in draws], init, **fit_kwargs)
    out = []
    for draw in draws:
        try:
            kw = dict(fit_kwargs, init=init) if init is not None else fit_kwargs
            fit = fit_table(fit_fn, _sample(df, draw, unit, rows), **kw)
            out.append(dict(fit.params))
        except (InputError, ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            out.append(f"{type(e).__name__}: {e}")
    return out


def bootstrap(fit_fn, df: pd.DataFrame, n: int = 1000, level: float = 0.95, seed: int = 0, n_jobs: int = 1, *,
              unit: str | None = None, groups=None, warm_start: bool | None = None,
              refit_batch: Callable | None = None, **fit_kwargs) -> FitResult:
    """The point fit of `fit_fn` to `df`, with percentile bootstrap intervals for every parameter.

    The runs are resampled with replacement `n` times and the fit is repeated on each resample; the interval of
    a parameter is the [(1 - level)/2, (1 + level)/2] percentile range of its refitted values (Efron & Tibshirani
    1993, ch 13). Refits start from the point estimate when `warm_start`, skipping any grid of starts, as
    Besiroglu et al. 2024 (arXiv:2404.10102) do for Approach 3. All resamples are drawn up front from
    numpy's default_rng(seed), so the answer for a seed is the same whatever `n_jobs` is.

    Parameters
    ----------
    fit_fn : callable
        A fit of this package (or any function `table.fit_table` can call with the table's columns).
    df : DataFrame
        The table (canonical columns, see `table.read_table`); for `unit` resampling, e.g. training curves.
    n : int
        Number of resamples (>= 2; 1000 for reported intervals).
    level : float
        Coverage of the intervals, in (0, 1).
    seed : int
        Seed of the resampling.
    n_jobs : int
        Processes to split the refits over (concurrent.futures); 1 refits in this process.
    unit : str, optional
        Resample the distinct values of this column, each with all its rows (e.g. "run_id": whole training
        curves); a unit drawn twice counts as two.
    groups : array_like, str or callable, optional
        Resample within each group: labels per row, a column name, or a function of `df` returning labels.
    warm_start : bool, optional
        Pass `init=` the point estimate's params to every refit (the fit must take `init`).
    refit_batch : callable, optional
        `refit_batch(samples, init, **fit_kwargs) -> [params dict or error string]` refits every resample in one
        call (Approach 3: one vectorised L-BFGS); it is given the point estimate as `init`.
    **fit_kwargs
        Passed to every fit.

    Unit, groups, warm_start and refit_batch left as None take the fit's entry in `RESAMPLING` (none: resample
    rows, no warm start, one refit per resample).

    Returns
    -------
    FitResult
        The point fit with `intervals[param] = (low, high)` and `level`; extra["samples"] (one row of params per
        resample, NaN where a refit failed), extra["n_failed"], n_boot, seed. A flag says how many refits failed.
    """
    if not 0 < level < 1:
        raise InputError("level", f"{level} is not in (0, 1)", "use e.g. 0.95 or 0.8")
    if n < 2:
        raise InputError("n", f"{n} resamples is too few", "use n >= 100 (1000 for reported intervals)")
    defaults = RESAMPLING.get(fit_fn, {})
    unit = defaults.get("unit") if unit is None else unit
    groups = defaults.get("groups") if groups is None else groups
    warm_start = defaults.get("warm_start", False) if warm_start is None else warm_start
    refit_batch = defaults.get("refit_batch") if refit_batch is None else refit_batch
    point = fit_table(fit_fn, df, **fit_kwargs)
    if isinstance(groups, str):
        groups = df[groups].to_numpy()
    elif callable(groups):
        groups = groups(df)
    elif groups is not None:
        groups = np.asarray(groups)
    draws = _draws(df, n, seed, groups, unit)
    init = dict(point.params) if warm_start or refit_batch is not None else None
    if n_jobs > 1 and n >= 4 * n_jobs:
        chunks = np.array_split(np.arange(n), n_jobs)
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            futures = [pool.submit(_refit, fit_fn, df, [draws[i] for i in c], unit, init, refit_batch, fit_kwargs)
                       for c in chunks]
            results = [r for f in futures for r in f.result()]
    else:
        results = _refit(fit_fn, df, draws, unit, init, refit_batch, fit_kwargs)
    failed = [r for r in results if isinstance(r, str)]
    samples = pd.DataFrame([r if isinstance(r, dict) else {} for r in results], columns=list(point.params))
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    intervals = {}
    for name in point.params:
        values = samples[name].to_numpy(float)
        values = values[np.isfinite(values)]
        if values.size:
            intervals[name] = (float(np.percentile(values, lo)), float(np.percentile(values, hi)))
    flags = list(point.flags)
    if failed:
        flags.append(f"bootstrap: {len(failed)} of {n} refits failed (first: {failed[0]})")
    extra = dict(point.extra, samples=samples, n_failed=len(failed), n_boot=n, seed=seed)
    return dataclasses.replace(point, intervals=intervals, level=level, flags=tuple(flags), extra=extra)
