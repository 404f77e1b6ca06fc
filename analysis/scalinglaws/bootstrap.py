"""Bootstrap intervals for any fit: resample runs with replacement, refit from the point estimate.

Public API
- `bootstrap(fit_fn, df, n=1000, level=0.95, seed=0, n_jobs=1, groups=None, **fit_kwargs) -> FitResult`
  fits `fit_fn` to the table `df` (columns passed by `table.fit_table`), then refits it `n` times on resampled
  tables, each started from the point estimate (`init=point.params`, skipping any grid of starts, as Besiroglu
  et al. 2024 do), and returns the point fit with `intervals[param] = (low, high)`, the percentile interval at
  `level` for every param, and extra["samples"] (one row of params per resample; NaN where a refit failed),
  extra["n_failed"]. Resampling unit: rows (runs) by default; within each group when `groups` (labels, or a
  column name) is given or the fit declares `fit_fn.bootstrap_groups(df)` (Approach 2: within each budget);
  whole training curves when the fit declares `fit_fn.bootstrap_unit = "run_id"` (Approach 1).
  All resamples are drawn up front from numpy's default_rng(seed), so results are identical for a given seed
  whatever n_jobs is; n_jobs > 1 splits the refits over processes (concurrent.futures).
  A fit may define `fit_fn.refit_batch(samples, init, **fit_kwargs) -> [params dict or error string]` to refit
  all resamples at once (Approach 3 does: one vectorised L-BFGS over the resamples). A flag is added when
  refits fail.
"""
from __future__ import annotations

import dataclasses
import inspect
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from .errors import InputError
from .result import FitResult
from .table import fit_table


def _draws(df: pd.DataFrame, n: int, seed: int, groups, unit):
    """n resamples as row positions (or, for unit resampling, lists of unit labels)."""
    rng = np.random.default_rng(seed)
    if unit is not None:
        units = pd.unique(df[unit])
        return [units[rng.integers(0, len(units), len(units))] for _ in range(n)]
    if groups is None:
        return [rng.integers(0, len(df), len(df)) for _ in range(n)]
    members = [np.flatnonzero(groups == g) for g in pd.unique(groups)]
    return [np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members]) for _ in range(n)]


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


def _refit(fit_fn, df, draws, unit, init, fit_kwargs):
    """Params dict (or an error string) per draw. Uses fit_fn.refit_batch(samples, init, **kw) when it exists."""
    rows = _unit_rows(df, unit) if unit is not None else None
    batch = getattr(fit_fn, "refit_batch", None)
    if batch is not None and init is not None:
        return batch([_sample(df, d, unit, rows) for d in draws], init, **fit_kwargs)
    out = []
    for draw in draws:
        try:
            kw = dict(fit_kwargs, init=init) if init is not None else fit_kwargs
            fit = fit_table(fit_fn, _sample(df, draw, unit, rows), **kw)
            out.append(dict(fit.params))
        except (InputError, ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
            out.append(f"{type(e).__name__}: {e}")
    return out


def bootstrap(fit_fn, df: pd.DataFrame, n: int = 1000, level: float = 0.95, seed: int = 0, n_jobs: int = 1,
              groups=None, **fit_kwargs) -> FitResult:
    """Point fit with percentile bootstrap intervals for every param (see module docstring)."""
    if not 0 < level < 1:
        raise InputError("level", f"{level} is not in (0, 1)", "use e.g. 0.95 or 0.8")
    if n < 2:
        raise InputError("n", f"{n} resamples is too few", "use n >= 100 (1000 for reported intervals)")
    point = fit_table(fit_fn, df, **fit_kwargs)
    unit = getattr(fit_fn, "bootstrap_unit", None)
    if isinstance(groups, str):
        groups = df[groups].to_numpy()
    elif groups is None and hasattr(fit_fn, "bootstrap_groups"):
        groups = fit_fn.bootstrap_groups(df)
    elif groups is not None:
        groups = np.asarray(groups)
    draws = _draws(df, n, seed, groups, unit)
    init = dict(point.params) if "init" in inspect.signature(fit_fn).parameters else None
    if n_jobs > 1 and n >= 4 * n_jobs:
        chunks = np.array_split(np.arange(n), n_jobs)
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            futures = [pool.submit(_refit, fit_fn, df, [draws[i] for i in c], unit, init, fit_kwargs) for c in chunks]
            results = [r for f in futures for r in f.result()]
    else:
        results = _refit(fit_fn, df, draws, unit, init, fit_kwargs)
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
