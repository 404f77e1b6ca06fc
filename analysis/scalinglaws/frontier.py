"""Hoffmann et al. 2022 (Chinchilla, arXiv:2203.15556), Approaches 1 and 2: the compute-optimal frontier read
off a sweep directly, without the parametric law (that is Approach 3, in `chinchilla`).

- `fit_approach2`: isoFLOP profiles, one parabola in log N per compute budget (sec 3.2).
- `fit_approach1`: the lower envelope of training curves (sec 3.1).

Both end in the same regression: N_opt = k_N C^a and D_opt = k_D C^b by least squares in log-log space.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import InputError
from .powerlaw import as_positive_array, fit_loglinear, predictor
from .result import FitResult
from .table import check_enough

EDGE_FRACTION = 0.15  # Approach 2 flags a vertex in the outer 15% of its budget's sampled log N range


def _power_frontier(points: pd.DataFrame):
    """N_opt = k_N C^a and D_opt = k_D C^b fitted to `points` (columns C, N_opt, D_opt) in log-log space.

    Returns (params a, b, k_N, k_D; predict(C) = N_opt; frontier(C) = (N_opt, D_opt); the objective of N_opt).
    """
    fit_N, fit_D = fit_loglinear(points["C"], points["N_opt"]), fit_loglinear(points["C"], points["D_opt"])
    a, kN, b, kD = fit_N.params["p"], fit_N.params["k"], fit_D.params["p"], fit_D.params["k"]

    def frontier(c):
        return kN * np.asarray(c, float) ** a, kD * np.asarray(c, float) ** b

    return ({"a": a, "b": b, "k_N": kN, "k_D": kD}, predictor(lambda c: kN * c ** a, ["C"]), frontier,
            float(fit_N.objective))


def budget_groups(C, tol_decades: float = 0.05) -> np.ndarray:
    """The isoFLOP budget of each run, from its compute alone.

    Runs whose log10 C lie within `tol_decades` of a neighbour share a budget (the runs of one budget differ by
    whole-batch rounding only).

    Parameters
    ----------
    C : array_like
        Training FLOPs per run.
    tol_decades : float
        Largest gap in log10 C inside one budget.

    Returns
    -------
    ndarray
        One label per run: its budget's geometric-mean C, rounded to 2 significant digits.
    """
    C = as_positive_array(C, "C")
    lc = np.log10(C)
    order = np.argsort(lc)
    group = np.zeros(len(C), dtype=int)
    group[order[1:]] = np.cumsum(np.diff(lc[order]) > tol_decades)
    labels = np.empty(len(C))
    for g in np.unique(group):
        labels[group == g] = float(f"{10 ** lc[group == g].mean():.2g}")
    return labels


def _vertex(x, y):
    """Parabola y = c2 x^2 + c1 x + c0; returns (vertex, curvature, position in [0, 1], reason or None)."""
    if len(np.unique(x)) < 3:
        return np.nan, np.nan, np.nan, f"only {len(np.unique(x))} distinct sizes (need 3)"
    c2, c1, _ = np.polyfit(x, y, 2)
    if not c2 > 0:
        return np.nan, c2, np.nan, f"curvature {c2:.3g} is not positive (no minimum)"
    v = -c1 / (2 * c2)
    pos = (v - x.min()) / (x.max() - x.min())
    if not 0 < pos < 1:
        return v, c2, pos, f"minimum outside the sampled range (at {pos:.2f} of it): not interior"
    return v, c2, pos, None


def _window(N, L, m, window: int | None) -> np.ndarray:
    """Mask of the runs of budget mask `m` at its `window` distinct sizes nearest (by rank in N) the size of
    lowest mean log loss; every seed of a kept size is kept."""
    sizes = np.unique(N[m])
    if window is None or len(sizes) <= window:
        return m
    mean_log = np.array([np.log(L[m & (N == s)]).mean() for s in sizes])
    best = int(np.argmin(mean_log))
    start = min(max(best - window // 2, 0), len(sizes) - window)
    return m & np.isin(N, sizes[start:start + window])


def fit_approach2(N, D, C, L, budgets=None, window: int | None = None) -> FitResult:
    """Chinchilla Approach 2: isoFLOP profiles, then N_opt = k_N C^a and D_opt = k_D C^b.

    Runs are grouped into compute budgets; per budget, parabolas of L in log N and in log D give the budget's
    N_opt and D_opt (Hoffmann et al. 2022, sec 3.2, Figure 3); then log N_opt and log D_opt are regressed on
    log C over the accepted budgets (`powerlaw.fit_loglinear`). A budget is refused when it has fewer than 3
    sizes, its curvature is not positive, or a vertex lies outside the sampled range; a vertex in the outer
    `EDGE_FRACTION` of the sampled log N range is flagged (parabolas over sizes not centred on the minimum are
    biased: centre the sweep).

    Parameters
    ----------
    N, D, C, L : array_like
        Parameters, training tokens, training FLOPs and loss of each run.
    budgets : array_like, optional
        A budget label per run; default `budget_groups(C)` (C values within 0.05 decades are one budget).
    window : int, optional
        Fit each budget's parabola to the runs at the `window` (>= 3) distinct sizes nearest its lowest-loss size
        (by rank of N; all seeds of each) instead of all of them: over a wide ladder the profile is not a parabola in log N, and far sizes pull the vertex.

    Returns
    -------
    FitResult
        params a, b, k_N, k_D; predict(C) = N_opt. extra: minima (one row per accepted budget: budget, C,
        N_opt, D_opt, n_sizes, curvature, vertex_position), refused ({budget: reason}), frontier.
        InputError when fewer than 2 budgets are usable.
    """
    N, D = as_positive_array(N, "N"), as_positive_array(D, "D")
    C, L = as_positive_array(C, "C"), as_positive_array(L, "loss")
    if window is not None and (int(window) != window or window < 3):
        raise InputError("window", f"must be an integer >= 3, got {window!r}", "pass e.g. window=5, or None for all")
    labels = budget_groups(C) if budgets is None else np.asarray(budgets)
    rows, refused, flags = [], {}, []
    for label in pd.unique(labels):
        m = _window(N, L, labels == label, window)
        key = label.item() if hasattr(label, "item") else label
        vN, cN, posN, whyN = _vertex(np.log(N[m]), L[m])
        vD, cD, posD, whyD = _vertex(np.log(D[m]), L[m])
        why = whyN or (whyD and f"in log D: {whyD}")
        if why:
            refused[key] = why
            continue
        C_b = float(np.exp(np.log(C[m]).mean()))
        rows.append({"budget": key, "C": C_b, "N_opt": float(np.exp(vN)), "D_opt": float(np.exp(vD)),
                     "n_sizes": int(m.sum()), "curvature": float(cN), "vertex_position": float(posN)})
        if min(posN, 1 - posN) < EDGE_FRACTION:
            flags.append(f"budget {key}: minimum at {posN:.2f} of the sampled log N range (near an edge: the "
                         "parabola is biased; centre the sizes on the optimum)")
    if refused:
        flags.append(f"{len(refused)} budget(s) refused: " + "; ".join(f"{k}: {v}" for k, v in refused.items()))
    if len(rows) < 2:
        raise InputError("budgets", f"{len(rows)} usable isoFLOP budget(s); refused: {refused}",
                         "sweep at least 2 budgets with >= 3 sizes each, centred on the loss minimum")
    minima = pd.DataFrame(rows).sort_values("C", ignore_index=True)
    params, predict, frontier, objective = _power_frontier(minima)
    if len(rows) == 2:
        flags.append("only 2 budgets: the exponents have no spare degree of freedom")
    data = pd.DataFrame({"N": N, "D": D, "C": C, "loss": L, "budget": labels})
    return FitResult(name="Chinchilla Approach 2", params=params, predict=predict, data=data, objective=objective,
                     flags=tuple(flags), extra={"minima": minima, "refused": refused, "frontier": frontier})


def budget_labels(table: pd.DataFrame) -> np.ndarray:
    """The budget label of each row: the table's `budget` column when every row has one, else `budget_groups(C)`.

    The bootstrap resamples Approach 2 within these groups (every resample keeps every budget); the law backtest
    holds out by them.
    """
    if "budget" in table and pd.to_numeric(table["budget"], errors="coerce").notna().all():
        return pd.to_numeric(table["budget"]).to_numpy(float)
    return budget_groups(table["C"].to_numpy(float))


def _first_column(df, names, what):
    for n in names:
        if n in df.columns:
            return n
    raise InputError(f"curves column {what}", f"none of {names} present; columns are {list(df.columns)}",
                     "rename or add the column")


def fit_approach1(curves: pd.DataFrame, n_bins: int = 30) -> FitResult:
    """Chinchilla Approach 1: the lower envelope of training curves, then N_opt = k_N C^a and D_opt = k_D C^b.

    Each curve is interpolated in log C onto `n_bins` log-spaced budgets; at each budget the run of least loss
    wins, giving N_opt and D_opt = C / (6 N_opt) (Hoffmann et al. 2022, sec 3.1, Figure 2). Budgets where the
    winner is the smallest or the largest of the runs covering it are dropped (the optimum may lie beyond the
    sampled sizes); the exponents come from `powerlaw.fit_loglinear` on the envelope.

    Parameters
    ----------
    curves : DataFrame
        One row per eval point: run_id, N (or n_params), a FLOPs column (flops, C or flops_6nd) and a loss column
        (loss or val_loss).
    n_bins : int
        Number of compute budgets on the envelope.

    Returns
    -------
    FitResult
        params a, b, k_N, k_D; predict(C) = N_opt. extra: envelope (C, N_opt, D_opt, loss per kept budget),
        dropped_bins, frontier. Flags fewer than 4 envelope points, or one model winning every point.
    """
    run_col = _first_column(curves, ("run_id",), "run_id")
    flops_col = _first_column(curves, ("flops", "C", "flops_6nd"), "flops")
    loss_col = _first_column(curves, ("loss", "val_loss"), "loss")
    n_col = _first_column(curves, ("N", "n_params"), "N")
    df = curves[[run_col, n_col, flops_col, loss_col]].dropna()
    df = df[(df[flops_col] > 0) & (df[loss_col] > 0)]
    runs = [(float(g[n_col].iloc[0]), np.log(g[flops_col].to_numpy(float)), g[loss_col].to_numpy(float))
            for _, g in df.sort_values(flops_col).groupby(run_col, sort=False)]
    runs = [r for r in runs if len(r[1]) >= 2]
    check_enough(len(runs), 3, "training curves (runs with >= 2 eval points) for fit_approach1")
    lo, hi = min(r[1].min() for r in runs), max(r[1].max() for r in runs)
    grid = np.linspace(lo, hi, n_bins)
    sizes = np.array([r[0] for r in runs])
    loss = np.full((len(runs), n_bins), np.nan)
    for i, (_, lc, l) in enumerate(runs):
        inside = (grid >= lc.min()) & (grid <= lc.max())
        loss[i, inside] = np.interp(grid[inside], lc, l)
    rows, dropped = [], 0
    for j in range(n_bins):
        cover = np.flatnonzero(np.isfinite(loss[:, j]))
        if cover.size < 2:
            dropped += 1
            continue
        win = cover[np.argmin(loss[cover, j])]
        if sizes[win] in (sizes[cover].min(), sizes[cover].max()):
            dropped += 1
            continue
        C = float(np.exp(grid[j]))
        rows.append({"C": C, "N_opt": sizes[win], "D_opt": C / (6 * sizes[win]), "loss": loss[win, j]})
    flags = []
    if len(rows) < 2:
        raise InputError("curves", f"only {len(rows)} envelope point(s) with an interior winner",
                         "train more sizes so the envelope has several interior winners")
    if len(rows) < 4:
        flags.append(f"only {len(rows)} envelope points")
    env = pd.DataFrame(rows)
    if env["N_opt"].nunique() < 2:
        flags.append("one model wins every envelope point: the exponent is not identified")
    params, predict, frontier, objective = _power_frontier(env)
    return FitResult(name="Chinchilla Approach 1", params=params, predict=predict, data=df, objective=objective,
                     flags=tuple(flags), extra={"envelope": env, "dropped_bins": dropped, "frontier": frontier})
