"""Generalization to other distributions (Kaplan et al. 2020, sec 3.2.2 and Figure 8).

Kaplan et al. find that the loss on a distribution other than the training one tracks the training loss across
model sizes with a roughly constant offset: a line of slope about 1. Here each run's validation loss on every
data source (`val_loss/<source>` columns of the run summaries) is set against its loss on the training
distribution (`loss`: the validation split without a held-out source's windows), and a line L_source = slope L_train + offset is fitted per source across the runs, with
bootstrap intervals over model sizes (all runs of a size drawn together). A source a run held out of training
(`holdout_source`) measures transfer; its points are fitted apart from those of runs that trained on it.

- `source_losses(runs)`: the long table, one row per (run, source).
- `fit_transfer(x, y)`: the line y = slope x + offset, and the mean gap y - x.
- `fit_generalization(runs, n_boot)`: one `fit_transfer` per (source, held out or not), with intervals.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError
from .powerlaw import as_positive_array, predictor
from .result import FitResult

__all__ = ["SOURCE_PREFIX", "source_losses", "fit_transfer", "fit_generalization", "MIN_SIZES"]

SOURCE_PREFIX = "val_loss/"
MIN_SIZES = 3  # a line through 2 sizes has no spare degree of freedom


def _size_column(runs: pd.DataFrame) -> str:
    for col in ("N", "n_params", "n_params_nonembed"):
        if col in runs:
            return col
    raise InputError("column 'n_params'", "missing from the runs table", "pass the runs' summaries")


def source_losses(runs: pd.DataFrame, train: str = "loss") -> pd.DataFrame:
    """One row per (run, data source): the run's loss on that source next to its loss on the training data.

    Parameters
    ----------
    runs : DataFrame
        One row per run: `train` (default `loss`, nats/token), `val_loss/<source>` per source, a size column
        (N, n_params or n_params_nonembed) and optionally run_id and holdout_source.
    train : str
        The column holding the loss on the training distribution.

    Returns
    -------
    DataFrame
        run_id, N, source, loss_train, loss_source, held_out (the run held this source out of training).
        InputError when the table has no `val_loss/<source>` column (Kaplan et al. 2020, sec 3.2.2 needs them).
    """
    cols = [c for c in runs.columns if str(c).startswith(SOURCE_PREFIX)]
    if not cols:
        raise InputError(f"columns '{SOURCE_PREFIX}<source>'", "none in the runs table",
                         "record the validation loss per data source (a data source with a document-level source "
                         "column, e.g. the builtin corpus)")
    if train not in runs:
        raise InputError(f"column {train!r}", "missing from the runs table", "pass the runs' summaries")
    size = _size_column(runs)
    run_id = runs["run_id"] if "run_id" in runs else pd.Series(runs.index.astype(str), index=runs.index)
    holdout = runs["holdout_source"] if "holdout_source" in runs else pd.Series(None, index=runs.index)
    frames = []
    for col in cols:
        source = str(col)[len(SOURCE_PREFIX):]
        frames.append(pd.DataFrame({
            "run_id": run_id.to_numpy(), "N": pd.to_numeric(runs[size], errors="coerce").to_numpy(),
            "source": source, "loss_train": pd.to_numeric(runs[train], errors="coerce").to_numpy(),
            "loss_source": pd.to_numeric(runs[col], errors="coerce").to_numpy(),
            "held_out": (holdout.astype(object) == source).to_numpy(bool)}))
    out = pd.concat(frames, ignore_index=True)
    return out.dropna(subset=["N", "loss_train", "loss_source"]).reset_index(drop=True)


def fit_transfer(x, y) -> FitResult:
    """The line y = slope x + offset by least squares, and the mean gap y - x (Kaplan et al. 2020, Figure 8).

    Parameters
    ----------
    x, y : array_like
        Loss on the training distribution and on another distribution, per run (nats/token); at least 2
        distinct x.

    Returns
    -------
    FitResult
        params slope, offset, mean_gap; predict(x) -> y. Flags 2 points only.
    """
    x, y = as_positive_array(x, "loss_train"), as_positive_array(y, "loss_source")
    if len(x) != len(y):
        raise InputError("loss_source", f"{len(y)} values for {len(x)} training losses", "pass one per run")
    if len(np.unique(x)) < 2:
        raise InputError("loss_train", "need at least 2 distinct training losses", "add runs of other sizes")
    slope, offset = (float(v) for v in np.polyfit(x, y, 1))
    resid = y - (slope * x + offset)
    flags = ("only 2 runs: the line has no spare degree of freedom",) if len(x) == 2 else ()
    return FitResult(name="loss on another distribution vs training loss",
                     params={"slope": slope, "offset": offset, "mean_gap": float(np.mean(y - x))},
                     predict=predictor(lambda v: slope * v + offset, ["x"]),
                     data=pd.DataFrame({"x": x, "y": y}), objective=float(np.sum(resid ** 2)), flags=flags)


def fit_generalization(runs: pd.DataFrame, train: str = "loss", n_boot: int = 0, seed: int = 0,
                       level: float = 0.95) -> dict:
    """Loss on each data source against the training loss across model sizes (Kaplan et al. 2020, sec 3.2.2).

    One `fit_transfer` per (source, held out): the runs that held the source out of training are fitted apart
    from those that trained on it. Bootstrap: `n_boot` resamples of the model sizes with replacement, every run
    of a drawn size taken along (a size drawn twice counts twice); intervals are percentiles at `level`.

    Parameters
    ----------
    runs : DataFrame
        As in `source_losses`.
    train : str
        The column holding the loss on the training distribution.
    n_boot, seed, level
        Bootstrap resamples (0: none), their seed and the intervals' coverage.

    Returns
    -------
    dict
        (source, held_out) -> FitResult (params slope, offset, mean_gap; intervals; extra: points (the
        `source_losses` rows), sizes, held_out). Groups with fewer than MIN_SIZES model sizes are left out;
        InputError when none has enough.
    """
    long = source_losses(runs, train)
    out = {}
    for (source, held), g in long.groupby(["source", "held_out"], sort=True):
        sizes = np.unique(g["N"])
        if len(sizes) < MIN_SIZES:
            continue
        fit = fit_transfer(g["loss_train"], g["loss_source"])
        intervals = {}
        if n_boot:
            rng = np.random.default_rng(seed)
            rows = {n: np.flatnonzero(g["N"].to_numpy() == n) for n in sizes}
            draws = []
            for _ in range(int(n_boot)):
                pick = np.concatenate([rows[n] for n in sizes[rng.integers(0, len(sizes), len(sizes))]])
                x, y = g["loss_train"].to_numpy()[pick], g["loss_source"].to_numpy()[pick]
                if len(np.unique(x)) >= 2:
                    slope, offset = np.polyfit(x, y, 1)
                    draws.append((slope, offset, np.mean(y - x)))
            if draws:
                d = np.array(draws)
                tail = 50 * (1 - level)
                intervals = {k: (float(np.percentile(d[:, i], tail)), float(np.percentile(d[:, i], 100 - tail)))
                             for i, k in enumerate(("slope", "offset", "mean_gap"))}
        label = f"{source} (held out of training)" if held else source
        out[(source, bool(held))] = FitResult(
            name=f"loss on {label} vs training loss", params=fit.params, predict=fit.predict, data=fit.data,
            intervals=intervals, level=level, objective=fit.objective, flags=fit.flags,
            extra={"points": g.reset_index(drop=True), "sizes": int(len(sizes)), "held_out": bool(held),
                   "n_boot": int(n_boot)})
    if not out:
        raise InputError("val_loss/<source>", f"no data source has runs of {MIN_SIZES} or more model sizes",
                         f"train {MIN_SIZES} or more sizes with per-source validation losses")
    return out
