"""Backtest a law: fit on the runs with small compute, predict the held-out runs with large compute.

Public API
- `backtest(fit_fn, df, cutoff_C=None, predict_cols=("N", "D"), **fit_kwargs) -> Backtest`: fits `fit_fn` (via
  `table.fit_table`) to the rows with C <= cutoff_C (default: max C / 8), predicts the rows with C > cutoff_C
  with `fit.predict(**{col: df[col]})` for col in predict_cols, and reports per run
  N, D, C, loss, predicted, error_pct = 100 (predicted - loss) / loss, and mape = mean |error_pct|.
  InputError when nothing is held out, or too little is left below the cutoff to fit.
- `Backtest` (frozen dataclass): fit, cutoff_C, table (held-out runs), mape, n_fit (runs fitted on).
"""
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
    """Fit on C <= cutoff_C (default max C / 8), predict C > cutoff_C; mean absolute percentage error."""
    for col in ("C", "loss", *predict_cols):
        if col not in df.columns:
            raise InputError(f"column {col!r}", f"needed for the backtest; columns are {list(df.columns)}",
                             "load the table with load_table (it adds C = 6 N D)")
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
