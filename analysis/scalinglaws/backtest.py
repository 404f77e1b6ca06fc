"""Backtest a law: fit it on the runs with small compute, predict the held-out runs with large compute."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .errors import InputError
from .result import FitResult
from .table import fit_table


@dataclass(frozen=True)
class Backtest:
    """A law fitted below `cutoff_C` and its predictions for the runs above it."""

    fit: FitResult
    cutoff_C: float
    table: pd.DataFrame
    mape: float
    n_fit: int


def backtest(fit_fn, df: pd.DataFrame, cutoff_C: float | None = None, predict_cols=("N", "D"),
             **fit_kwargs) -> Backtest:
    """Fit on the runs with C <= cutoff_C, predict those above it, and report the error per run.

    The extrapolation test of a scaling law: does a law fitted at small compute predict large compute? The
    error per held-out run is error_pct = 100 (predicted - loss) / loss; MAPE = mean |error_pct|.

    Parameters
    ----------
    fit_fn : callable
        A fit (called through `table.fit_table`), e.g. `fit_approach3`.
    df : DataFrame
        The table (canonical columns C, loss and `predict_cols`; see `table.read_table`).
    cutoff_C : float, optional
        Largest compute fitted on; default max C / 8.
    predict_cols : tuple of str
        The columns the fitted law's predict takes, by keyword.
    **fit_kwargs
        Passed to the fit.

    Returns
    -------
    Backtest
        fit, cutoff_C, table (held-out runs: N, D, C, loss, predicted, error_pct), mape, n_fit. InputError when
        nothing is held out, or too little is left below the cutoff to fit.
    """
    for col in ("C", "loss", *predict_cols):
        if col not in df.columns:
            raise InputError(f"column {col!r}", f"needed for the backtest; columns are {list(df.columns)}",
                             "load the table with read_table (it adds C = 6 N D)")
    C = df["C"].to_numpy(float)
    cutoff = float(C.max() / 8 if cutoff_C is None else cutoff_C)
    below = C <= cutoff
    if below.all():
        raise InputError("cutoff_C", f"no run has C > {cutoff:.3g} (max C is {C.max():.3g}): nothing held out",
                         "lower cutoff_C")
    if not below.any():
        raise InputError("cutoff_C", f"no run has C <= {cutoff:.3g}: nothing to fit on", "raise cutoff_C")
    try:
        fit = fit_table(fit_fn, df[below], **fit_kwargs)
    except InputError as e:
        raise InputError("cutoff_C", f"too little left to fit below C = {cutoff:.3g} ({below.sum()} runs): "
                         f"{e}", "raise cutoff_C or add small runs") from e
    held = df[~below]
    table = held[[c for c in ("N", "D", "C", "loss") if c in held.columns]].copy()
    table["predicted"] = np.asarray(fit.predict(**{c: held[c].to_numpy(float) for c in predict_cols}), float)
    table["error_pct"] = 100 * (table["predicted"] - table["loss"]) / table["loss"]
    return Backtest(fit=fit, cutoff_C=cutoff, table=table, mape=float(table["error_pct"].abs().mean()),
                    n_fit=int(below.sum()))
