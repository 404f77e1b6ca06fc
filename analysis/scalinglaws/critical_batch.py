"""The critical batch size measured from the learning curves of a batch-size sweep (Kaplan et al. 2020, sec 5.1).

A model trained at several batch sizes B (tokens per step) needs S steps and E = B S tokens to reach a loss L.
The two trade off as (S/S_min - 1)(E/E_min - 1) = 1 (Kaplan et al. 2020, eq 5.1; McCandlish et al. 2018,
arXiv:1812.06162, eq 2.11), i.e. S = S_min (1 + B_crit/B) and E = E_min (1 + B/B_crit), with the critical batch
B_crit(L) = E_min / S_min (eq 5.2). Across losses B_crit(L) = B* / L^(1/alpha_B) (eq 5.3, also eq 1.4; Kaplan:
B* ~ 2e8 tokens, alpha_B ~ 0.21).

`steps_to_loss` (one curve's steps to each target loss), `fit_S_E` (eq 5.1 at one loss), `fit_B_crit` (eq 5.3),
`batch_size_sweeps` (runs of one shape at 3 or more batch sizes), `measure_critical_batch` (eq 5.1 at every target
loss of every sweep) and `fit_critical_batch` (both, with bootstrap intervals over whole curves). Inputs: `curves`
(run_id, step, val_loss; lr when known) and `runs` (run_id, batch_size in sequences, n_ctx, the shape columns).
A fit is saved and read as JSON by `laws.save_B_crit` / `laws.load_B_crit` (`scalinglaws bcrit --law`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from .errors import InputError
from .powerlaw import as_positive_array, fit_loglinear, predictor
from .result import FitResult

__all__ = ["steps_to_loss", "fit_S_E", "fit_B_crit", "batch_size_sweeps", "measure_critical_batch",
           "fit_critical_batch", "B_STAR", "ALPHA_B", "MIN_BATCH_SIZES"]

B_STAR, ALPHA_B = 2e8, 0.21  # Kaplan et al. 2020, eq 5.3: B* in tokens
MIN_BATCH_SIZES = 3  # eq 5.1 has 2 parameters: a third batch size tests it
SHAPE_COLUMNS = ("sweep", "family", "n_layer", "d_model", "n_head", "n_kv_head", "d_ff", "n_ctx", "n_params")


def steps_to_loss(step, loss, targets) -> np.ndarray:
    """The step at which a learning curve first reaches each target loss (Kaplan et al. 2020, sec 5.1).

    The curve is replaced by its running minimum (a noisy eval point above an earlier one does not undo
    progress); between the two eval points that bracket a target, log S is interpolated linearly in log L.

    Parameters
    ----------
    step, loss : array_like
        The eval points of one run (steps > 0, loss in nats/token), in any order.
    targets : array_like
        Target losses.

    Returns
    -------
    ndarray
        S per target; NaN where the curve never reaches it or already starts below it (no bracketing points).
    """
    step, loss = np.asarray(step, float), np.asarray(loss, float)
    keep = np.isfinite(step) & np.isfinite(loss) & (step > 0) & (loss > 0)
    order = np.argsort(step[keep])
    s, env = step[keep][order], np.minimum.accumulate(loss[keep][order])
    targets = np.atleast_1d(np.asarray(targets, float))
    out = np.full(targets.shape, np.nan)
    if len(s) < 2:
        return out
    for k, L in enumerate(targets):
        i = int(np.argmax(env <= L)) if (env <= L).any() else -1
        if i <= 0:  # never reached, or reached at the first eval point (nothing brackets it)
            continue
        l0, l1 = np.log(env[i - 1]), np.log(env[i])
        t = (np.log(L) - l0) / (l1 - l0) if l1 < l0 else 1.0
        out[k] = float(np.exp(np.log(s[i - 1]) + t * (np.log(s[i]) - np.log(s[i - 1]))))
    return out


def _solve_S_E(S: np.ndarray, E: np.ndarray):
    """(log S_min, log E_min, sum of squares, converged, lower bounds) of eq 5.1 for steps S and tokens E.

    Least squares on log S in (log S_min, log E_min) inside the bounds S_min <= min S, E_min <= min E (1e-10 of
    them counts as zero), by Levenberg-Marquardt from the linear solution below (and, when that ends on a bound,
    also from B_crit in the middle of the batch sizes, keeping the better): two parameters, so the 2 x 2 normal equations are solved in
    closed form (the bootstrap refits this thousands of times)."""
    # S = S_min + E_min / B with B = E / S; relative residuals make it linear in (S_min, E_min): 1 = S_min/S + E_min/E
    coef, _ = nnls(np.column_stack([1 / S, 1 / E]), np.ones_like(S))
    hi = np.log([S.min(), E.min()])
    lo = hi - 23.0
    lS, lB = np.log(S), np.log(E / S)
    best = _levenberg_marquardt(np.clip(np.log(np.maximum(coef, 1e-12 * np.exp(hi))), lo, hi), lS, lB, lo, hi)
    if np.any(best[0] <= lo + 1e-3):  # a bound: its gradient vanishes there, so try from inside as well
        best = min(best, _levenberg_marquardt(hi - np.log(2.0), lS, lB, lo, hi), key=lambda fit: fit[1])
    return best[0][0], best[0][1], best[1], best[2], lo


def _levenberg_marquardt(theta, lS, lB, lo, hi, max_iter: int = 200):
    """Minimise sum (log(S_min + E_min/B) - log S)^2 over theta = (log S_min, log E_min) within [lo, hi]."""
    def residual(t):
        f = np.logaddexp(t[0], t[1] - lB)
        return f - lS, np.exp(t[0] - f)  # residuals, and d f / d log S_min (d f / d log E_min is 1 minus it)

    r, w = residual(theta)
    cost, lam = float(r @ r), 1e-3
    for _ in range(max_iter):
        j1 = 1 - w
        a, b, c, g0, g1 = float(w @ w), float(w @ j1), float(j1 @ j1), float(w @ r), float(j1 @ r)
        free0 = not ((theta[0] <= lo[0] and g0 > 0) or (theta[0] >= hi[0] and g0 < 0))
        free1 = not ((theta[1] <= lo[1] and g1 > 0) or (theta[1] >= hi[1] and g1 < 0))
        if (not free0 or abs(g0) < 1e-13) and (not free1 or abs(g1) < 1e-13):
            return theta, cost, True
        a_, c_ = a * (1 + lam) + 1e-15, c * (1 + lam) + 1e-15
        if free0 and free1:
            det = a_ * c_ - b * b
            step = np.array([-(c_ * g0 - b * g1) / det, -(a_ * g1 - b * g0) / det])
        else:
            step = np.array([-g0 / a_ if free0 else 0.0, -g1 / c_ if free1 else 0.0])
        trial = np.clip(theta + step, lo, hi)
        r_t, w_t = residual(trial)
        if float(r_t @ r_t) <= cost:
            done = np.max(np.abs(trial - theta)) < 1e-10
            theta, r, w, cost, lam = trial, r_t, w_t, float(r_t @ r_t), lam / 3
            if done:
                return theta, cost, True
        else:
            lam *= 4
            if lam > 1e12:  # no step lowers the cost: a minimum to machine precision
                return theta, cost, True
    return theta, cost, False


def fit_S_E(S, E) -> FitResult:
    """Kaplan's eq 5.1 at one loss: (S/S_min - 1)(E/E_min - 1) = 1 over batch sizes (Kaplan et al. 2020).

    Equivalently S = S_min + E_min / B with B = E / S tokens per step (McCandlish et al. 2018, eq 2.11). Fitted
    by least squares on log S (the same as on log E, since E = B S), Levenberg-Marquardt from the non-negative
    linear least squares solution of 1 = S_min/S + E_min/E.

    Parameters
    ----------
    S, E : array_like
        Steps and tokens each batch size needed to reach the loss; at least 2 points (3 to test the form).

    Returns
    -------
    FitResult
        params S_min, E_min, B_crit = E_min / S_min (tokens); predict(B) -> S. Flags: S_min or E_min at its
        bound (zero: the batch sizes do not bracket B_crit), B_crit more than a factor 2 outside the batch sizes
        measured, no spare degree of freedom.
    """
    S, E = as_positive_array(S, "S"), as_positive_array(E, "E")
    if len(S) != len(E):
        raise InputError("E", f"{len(E)} values for {len(S)} steps", "pass one E per S")
    B = E / S
    if len(np.unique(np.round(np.log(B), 9))) < 2:
        raise InputError("batch sizes", f"need at least 2 distinct batch sizes, got {len(np.unique(B))}",
                         "train the model at more batch sizes")
    params, flags, cost = _fit_S_E(S, E)
    S_min, E_min = params["S_min"], params["E_min"]
    return FitResult(name="Kaplan eq 5.1: steps vs tokens at one loss", params=params,
                     predict=predictor(lambda b: S_min + E_min / b, ["B"]),
                     data=pd.DataFrame({"B": B, "S": S, "E": E}), objective=cost, flags=tuple(flags))


def _fit_S_E(S: np.ndarray, E: np.ndarray):
    """fit_S_E's params and flags without its checks and FitResult (the bootstrap's inner loop)."""
    B = E / S
    lS_min, lE_min, cost, converged, lo = _solve_S_E(S, E)
    S_min, E_min = float(np.exp(lS_min)), float(np.exp(lE_min))
    B_crit = E_min / S_min
    flags = []
    if not converged:
        flags.append("not converged in 200 Levenberg-Marquardt iterations")
    if lS_min <= lo[0] + 1e-3:
        flags.append("S_min on its bound 0: S falls as 1/B at every batch size (all below B_crit)")
    if lE_min <= lo[1] + 1e-3:
        flags.append("E_min on its bound 0: S does not fall with B (all batch sizes above B_crit)")
    if not flags and not B.min() / 2 <= B_crit <= 2 * B.max():
        flags.append(f"B_crit = {B_crit:.3g} tokens is more than a factor 2 outside the batch sizes measured "
                     f"[{B.min():.3g}, {B.max():.3g}]: extrapolated")
    if len(np.unique(B)) < MIN_BATCH_SIZES:
        flags.append("only 2 batch sizes for 2 parameters: no spare degree of freedom")
    return {"S_min": S_min, "E_min": E_min, "B_crit": B_crit}, flags, cost


def fit_B_crit(L, B_crit) -> FitResult:
    """Kaplan's B_crit(L) = B* / L^(1/alpha_B) (Kaplan et al. 2020, eq 5.3), by least squares on log B_crit.

    Parameters
    ----------
    L, B_crit : array_like
        Losses (nats/token) and the critical batch measured at each (tokens); at least 2 distinct losses.

    Returns
    -------
    FitResult
        params B_star (tokens), alpha_B; predict(L) -> B_crit. Flags B_crit not rising as the loss falls
        (alpha_B <= 0) and 2 points only.
    """
    L, B_crit = as_positive_array(L, "L"), as_positive_array(B_crit, "B_crit")
    if len(np.unique(L)) < 2:
        raise InputError("L", "need at least 2 distinct losses", "measure B_crit at more target losses")
    line = fit_loglinear(L, B_crit, name="B_crit(L)")
    p = line.params["p"]
    B_star, alpha_B = float(line.params["k"]), float(-1.0 / p) if p != 0 else float("inf")
    flags = list(line.flags)
    if not p < 0:
        flags.append(f"alpha_B = {alpha_B:.3g} <= 0: B_crit does not rise as the loss falls")
    return FitResult(name="B_crit(L) Kaplan eq 5.3", params={"B_star": B_star, "alpha_B": alpha_B},
                     predict=predictor(lambda l: B_star * l ** p, ["L"]),
                     data=pd.DataFrame({"L": L, "B_crit": B_crit}), objective=line.objective, flags=tuple(flags),
                     extra={"r2": line.extra["r2"]})


def _tokens_per_step(runs: pd.DataFrame) -> pd.Series:
    for col in ("batch_size", "n_ctx"):
        if col not in runs:
            raise InputError(f"column {col!r}", "missing from the runs table",
                             "pass the runs' summaries (batch_size in sequences, n_ctx)")
    return pd.to_numeric(runs["batch_size"], errors="coerce") * pd.to_numeric(runs["n_ctx"], errors="coerce")


def batch_size_sweeps(runs: pd.DataFrame) -> pd.Series:
    """The batch-size sweeps among `runs`: runs of one model shape at MIN_BATCH_SIZES or more batch sizes.

    A shape is every column of SHAPE_COLUMNS the table has (sweep, family, n_layer, d_model, ..., n_params);
    runs of one shape that differ in batch_size form a sweep (scalinglab's plan kind `batch_size`, Kaplan et al.
    2020 sec 5.1).

    Parameters
    ----------
    runs : DataFrame
        One row per run with batch_size and n_ctx (and the shape columns).

    Returns
    -------
    Series
        A sweep label per row ("N=<n_params>" plus the sweep's name when several share it), NaN for runs in no
        batch-size sweep.
    """
    B = _tokens_per_step(runs).to_numpy(float)
    keys = [c for c in SHAPE_COLUMNS if c in runs]
    labels = np.full(len(runs), np.nan, dtype=object)
    if keys:
        shapes = np.array(["|".join(map(str, row)) for row in runs[keys].astype(object).to_numpy()])  # NaN: "nan"
        for shape in pd.unique(shapes):
            pos = np.flatnonzero(shapes == shape)
            if len(np.unique(B[pos][np.isfinite(B[pos])])) >= MIN_BATCH_SIZES:
                row = runs.iloc[pos[0]]
                name = f"N={float(row['n_params']):.4g}" if "n_params" in runs else shape
                labels[pos] = f"{row['sweep']}: {name}" if "sweep" in runs else name
    return pd.Series(labels, index=runs.index, dtype=object)


def _after_warmup(g: pd.DataFrame) -> pd.DataFrame:
    """The eval points from the end of the LR warmup on (the peak of `lr`), when the curve has an lr column."""
    if "lr" not in g or not g["lr"].notna().any():
        return g
    return g[g["step"] >= g.loc[g["lr"].idxmax(), "step"]]


def _loss_grid(curves: dict, n: int) -> np.ndarray:
    """n log-spaced losses every curve of a sweep reaches after its first eval point, inside the range they share."""
    lo = max(float(np.nanmin(c[1])) for c in curves.values())
    hi = min(float(np.minimum.accumulate(c[1])[0]) for c in curves.values())
    if not hi > lo:
        return np.array([])
    pad = 0.05 * (np.log(hi) - np.log(lo))
    return np.exp(np.linspace(np.log(lo) + pad, np.log(hi) - pad, n))


def _sweep_matrices(curves: pd.DataFrame, runs: pd.DataFrame, losses=None, n_losses: int = 8) -> dict:
    """label -> (run_ids, B per run, target losses, S matrix runs x losses) for every batch-size sweep."""
    for col in ("run_id", "step", "val_loss"):
        if col not in curves:
            raise InputError(f"column {col!r}", "missing from the learning curves", "pass the runs' metrics.parquet")
    if "run_id" not in runs:
        raise InputError("column 'run_id'", "missing from the runs table", "pass the runs' summaries")
    runs = runs.reset_index(drop=True)
    labels = batch_size_sweeps(runs)
    B = _tokens_per_step(runs)
    out = {}
    order = runs.assign(_label=labels).dropna(subset=["_label"])
    if "n_params" in order:  # smallest model first
        order = order.sort_values("n_params", kind="stable")
    for label in pd.unique(order["_label"]):
        members = runs.index[labels == label]
        data = {}
        for i in members:
            g = _after_warmup(curves[curves["run_id"] == runs.at[i, "run_id"]].dropna(subset=["step", "val_loss"])
                              .sort_values("step"))
            g = g[g["step"] > 0]
            if len(g) >= 2:
                data[runs.at[i, "run_id"]] = (g["step"].to_numpy(float), g["val_loss"].to_numpy(float),
                                              float(B[i]))
        if len({v[2] for v in data.values()}) < MIN_BATCH_SIZES:
            continue
        grid = np.sort(np.asarray(losses, float))[::-1] if losses is not None else _loss_grid(data, n_losses)
        if not len(grid):
            continue
        ids = list(data)
        S = np.array([steps_to_loss(data[r][0], data[r][1], grid) for r in ids])
        out[label] = (ids, np.array([data[r][2] for r in ids]), grid, S)
    return out


def _points(matrices: dict) -> list[dict]:
    """One eq 5.1 fit per (sweep, target loss) with MIN_BATCH_SIZES or more batch sizes reaching the loss."""
    rows = []
    for label, (ids, B, grid, S) in matrices.items():
        for k, L in enumerate(grid):
            use = np.isfinite(S[:, k])
            if len(np.unique(B[use])) < MIN_BATCH_SIZES:
                continue
            params, flags, _ = _fit_S_E(S[use, k], B[use] * S[use, k])
            rows.append({"sweep": label, "L": float(L), **params, "batch_sizes": int(len(np.unique(B[use]))),
                         "flags": "; ".join(flags)})
    return rows


def measure_critical_batch(curves: pd.DataFrame, runs: pd.DataFrame, losses=None, n_losses: int = 8):
    """B_crit at each target loss of every batch-size sweep: eq 5.1 fitted to the steps each batch size needed.

    For each sweep (`batch_size_sweeps`), the target losses are `losses`, or `n_losses` log-spaced values inside
    the range every run of the sweep reaches after its first eval point (and after the LR warmup, the peak of
    `lr`, when the curves record it); each run's steps come from `steps_to_loss` and its tokens are E = B S with
    B = batch_size x n_ctx (Kaplan et al. 2020, sec 5.1).

    Parameters
    ----------
    curves : DataFrame
        Eval points: run_id, step, val_loss (lr optional).
    runs : DataFrame
        One row per run: run_id, batch_size (sequences), n_ctx, and the shape columns.
    losses : array_like, optional
        Target losses (default: the grid above).
    n_losses : int
        Size of the default grid.

    Returns
    -------
    points : DataFrame
        One row per (sweep, L) with at least MIN_BATCH_SIZES batch sizes reaching L: sweep, L, S_min, E_min,
        B_crit (tokens), batch_sizes, flags (of `fit_S_E`; empty when the fit holds).
    steps : DataFrame
        One row per (run, L): sweep, run_id, B (tokens per step), L, S, E.
    """
    return _tables(_sweep_matrices(curves, runs, losses, n_losses))


def _tables(matrices: dict, rows: list[dict] | None = None):
    steps = [{"sweep": label, "run_id": r, "B": b, "L": float(L), "S": float(S[i, k]), "E": float(b * S[i, k])}
             for label, (ids, B, grid, S) in matrices.items() for i, (r, b) in enumerate(zip(ids, B))
             for k, L in enumerate(grid)]
    columns = ["sweep", "L", "S_min", "E_min", "B_crit", "batch_sizes", "flags"]
    return (pd.DataFrame(_points(matrices) if rows is None else rows, columns=columns),
            pd.DataFrame(steps, columns=["sweep", "run_id", "B", "L", "S", "E"]))


def _resample(matrix, rows: list[dict], label: str, rng):
    """One bootstrap replicate of a sweep's (run_ids, B, losses, S matrix), whole learning curves at a time.

    With repeated runs at a batch size (seeds): the runs are drawn with replacement within each batch size.
    With one run per batch size: a residual bootstrap that keeps every batch size, S*_jk = S_hat_jk exp(r_ik) for
    a run i drawn with replacement, where r_ik = log S_ik - log S_hat_ik are run i's residuals from the eq 5.1
    fit at loss k (a whole row, so one run's deviations stay correlated across losses), inflated by
    sqrt(n / (n - 2)) for the 2 fitted parameters."""
    ids, B, grid, S = matrix
    batch = np.unique(B)
    if len(batch) < len(B):
        pos = np.concatenate([np.flatnonzero(B == b)[rng.integers(0, (B == b).sum(), (B == b).sum())] for b in batch])
        return ids, B[pos], grid, S[pos]
    fitted = {r["L"]: (r["S_min"], r["E_min"]) for r in rows if r["sweep"] == label}
    S_hat = np.full_like(S, np.nan)
    for k, L in enumerate(grid):
        if float(L) in fitted:
            S_min, E_min = fitted[float(L)]
            S_hat[:, k] = S_min + E_min / B
    n = np.isfinite(S).sum(axis=0)
    r = (np.log(S) - np.log(S_hat)) * np.sqrt(n / np.maximum(n - 2, 1))
    return ids, B, grid, S_hat * np.exp(r[rng.integers(0, len(B), len(B))])


def _eq_5_3(rows: list[dict]) -> FitResult | None:
    held = [r for r in rows if not r["flags"]]
    if len({r["L"] for r in held}) < 2:
        return None
    return fit_B_crit([r["L"] for r in held], [r["B_crit"] for r in held])


def fit_critical_batch(curves: pd.DataFrame, runs: pd.DataFrame, losses=None, n_losses: int = 8, n_boot: int = 0,
                       seed: int = 0, level: float = 0.95) -> FitResult:
    """B_crit(L) = B* / L^(1/alpha_B) (Kaplan et al. 2020, eq 5.3) from the learning curves of batch-size sweeps.

    `measure_critical_batch` gives B_crit at each target loss (eq 5.1); eq 5.3 is fitted to the points whose
    eq 5.1 fit holds (no flag). Bootstrap: `n_boot` replicates of every sweep's learning curves, whole curves at a
    time (runs drawn within each batch size when it has several, e.g. seeds; else a residual bootstrap of whole
    curves that keeps every batch size, `_resample`); each replicate refits eq 5.1 at the same target losses
    and eq 5.3, and the intervals are percentiles at `level`.

    Parameters
    ----------
    curves, runs, losses, n_losses
        As in `measure_critical_batch`.
    n_boot : int
        Bootstrap resamples (0: no intervals).
    seed : int
        Seed of the resampling.
    level : float
        Coverage of the intervals.

    Returns
    -------
    FitResult
        params B_star (tokens), alpha_B; predict(L) -> B_crit; intervals; extra: points and steps (as returned by
        `measure_critical_batch`), samples (B_star, alpha_B per resample), point_intervals (B_crit at each
        point, low and high), n_boot, n_failed. InputError when the input holds no batch-size sweep or too few
        points hold.
    """
    matrices = _sweep_matrices(curves, runs, losses, n_losses)
    if not matrices:
        raise InputError("batch_size", f"no batch-size sweep in the input (runs of one model shape at "
                         f"{MIN_BATCH_SIZES} or more batch sizes whose learning curves share a loss range)",
                         "train one size at several batch sizes (plan kind batch_size)")
    rows = _points(matrices)
    point = _eq_5_3(rows)
    if point is None:
        raise InputError("B_crit", f"eq 5.1 holds at {sum(not r['flags'] for r in rows)} target loss(es) of "
                         f"{len(rows)}: the batch sizes do not bracket B_crit", "add batch sizes on both sides "
                         "of B_crit (at least 4 over 1.5 decades)")
    points, steps = _tables(matrices, rows)
    intervals, samples, point_iv, n_failed = {}, None, None, 0
    if n_boot:
        rng = np.random.default_rng(seed)
        draws, point_draws = [], []
        for _ in range(int(n_boot)):
            rows_b = _points({label: _resample(m, rows, label, rng) for label, m in matrices.items()})
            fit = _eq_5_3(rows_b)
            draws.append(dict(fit.params) if fit is not None and fit.params["alpha_B"] > 0 else {})
            point_draws.append({(r["sweep"], r["L"]): r["B_crit"] for r in rows_b})
        samples = pd.DataFrame(draws, columns=["B_star", "alpha_B"])
        n_failed = int(samples["B_star"].isna().sum())
        tail = 50 * (1 - level)
        for k in samples:
            v = samples[k].to_numpy(float)[np.isfinite(samples[k].to_numpy(float))]
            if len(v):
                intervals[k] = (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)))
        bounds = []
        for r in points.itertuples():
            v = np.array([d[(r.sweep, r.L)] for d in point_draws if (r.sweep, r.L) in d], dtype=float)
            v = v[np.isfinite(v)]
            bounds.append((np.percentile(v, tail), np.percentile(v, 100 - tail)) if len(v) else (np.nan, np.nan))
        point_iv = pd.DataFrame(bounds, columns=["low", "high"], index=points.index)
    flags = list(point.flags)
    if n_failed:
        flags.append(f"bootstrap: {n_failed} of {n_boot} replicates gave no eq 5.3 fit with alpha_B > 0")
    return FitResult(name=point.name, params=point.params, predict=point.predict, data=point.data,
                     intervals=intervals, level=level, objective=point.objective, flags=tuple(flags),
                     extra={"points": points, "steps": steps, "samples": samples, "point_intervals": point_iv,
                            "n_boot": int(n_boot), "n_failed": n_failed, "sweeps": list(matrices)})
