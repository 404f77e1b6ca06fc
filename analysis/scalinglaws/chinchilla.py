"""Hoffmann et al. 2022 (Chinchilla, arXiv:2203.15556): the parametric loss, its compute-optimal frontier, and
the three ways the paper estimates that frontier from a sweep.

- `chinchilla_loss`, `compute_optimal`: L(N, D) = E + A/N^alpha + B/D^beta (eq 2) and its minimiser at fixed
  compute C = 6 N D (eq 4).
- `fit_approach1`: the lower envelope of training curves (sec 3.1).
- `fit_approach2`: isoFLOP profiles, one parabola per compute budget (sec 3.2).
- `fit_approach3`: a Huber fit of eq 2 in log space from a grid of starts (sec 3.3, eq 3); the starts run in one
  vectorised L-BFGS (`_lbfgs`), and `refit_approach3_batch` refits many resampled tables the same way (bootstrap).

Every fit returns a `FitResult` whose `extra["frontier"](C)` gives (N_opt, D_opt).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from ._lbfgs import batched_lbfgs, pad_ragged
from ._starts import outside_starts, ranges
from .errors import InputError
from .powerlaw import as_positive_array, exp_or_inf, predictor
from .result import FitResult
from .table import check_enough

PARAM_ORDER = ("a", "b", "e", "alpha", "beta")  # theta = (log A, log B, log E, alpha, beta)
GRIDS = {
    "chinchilla": {"alpha": np.arange(0, 2.01, 0.5), "beta": np.arange(0, 2.01, 0.5), "e": np.arange(-1, 1.01, 0.5),
                   "a": np.arange(0, 25.1, 5), "b": np.arange(0, 25.1, 5)},
    "small": {"alpha": np.array([0.25, 0.75]), "beta": np.array([0.25, 0.75]), "e": np.array([-1.0, 0.0, 1.0]),
              "a": np.array([0.0, 10.0, 20.0]), "b": np.array([0.0, 10.0, 20.0])},
}


def chinchilla_loss(N, D, E, A, B, alpha, beta):
    """The Chinchilla parametric loss, L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, eq 2).

    Parameters
    ----------
    N, D : float or array_like
        Parameters and training tokens (broadcast together).
    E, A, B, alpha, beta : float
        Irreducible loss, the two scale coefficients and the two exponents.

    Returns
    -------
    ndarray or float
        Loss in nats/token.
    """
    return E + A / np.asarray(N, dtype=float) ** alpha + B / np.asarray(D, dtype=float) ** beta


def _frontier_coefficient(A, B, alpha, beta):
    """G = (alpha A / (beta B))^(1/(alpha+beta)) of the compute-optimal frontier (Hoffmann et al. 2022, eq 4).

    Computed in log space: with alpha + beta near 0 the power is beyond the float range, and G is inf (no
    overflow warning, no OverflowError on Python floats).
    """
    log_G = (np.log(alpha) + np.log(A) - np.log(beta) - np.log(B)) / (alpha + beta)
    with np.errstate(over="ignore"):
        return np.exp(log_G)


def compute_optimal(C, E, A, B, alpha, beta):
    """The compute-optimal allocation: argmin of `chinchilla_loss` subject to 6 N D = C (Hoffmann et al. 2022, eq 4).

    N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = G^-1 (C/6)^(alpha/(alpha+beta)),
    G = (alpha A / (beta B))^(1/(alpha+beta)).

    Parameters
    ----------
    C : float or array_like
        Training compute in FLOPs (6 N D).
    E, A, B, alpha, beta : float
        Parameters of eq 2 (E does not move the optimum; it is taken so a fit's params can be splatted in).

    Returns
    -------
    (N_opt, D_opt) : tuple of ndarray or float
    """
    G = _frontier_coefficient(A, B, alpha, beta)
    c6 = np.asarray(C, dtype=float) / 6.0
    return G * c6 ** (beta / (alpha + beta)), c6 ** (alpha / (alpha + beta)) / G


def _theta(params) -> np.ndarray:
    """theta = (log A, log B, log E, alpha, beta), the vector Approach 3 optimises, from a params mapping."""
    return np.array([np.log(params["A"]), np.log(params["B"]), np.log(params["E"]), params["alpha"], params["beta"]])


def approach3_params(theta) -> dict[str, float]:
    """The params an Approach 3 fit reports, from theta = (log A, log B, log E, alpha, beta).

    E, A, B, alpha, beta; the frontier exponents a = beta/(alpha+beta) (N_opt ~ C^a) and b = alpha/(alpha+beta)
    (D_opt ~ C^b); and the frontier coefficient G of `compute_optimal` (NaN unless alpha, beta > 0).
    """
    log_A, log_B, log_E, alpha, beta = (float(v) for v in theta)
    A, B, E = exp_or_inf(log_A), exp_or_inf(log_B), exp_or_inf(log_E)
    s = alpha + beta
    G = float(_frontier_coefficient(A, B, alpha, beta)) if alpha > 0 and beta > 0 else float("nan")
    return {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta, "a": beta / s, "b": alpha / s, "G": G}


# ---------------------------------------------------------------- Approach 3


def huber_lse_objective(theta, logN, logD, logL, delta=1e-3, mean=False, weight=None):
    """Approach 3's objective and its gradient for a batch of parameter vectors (Hoffmann et al. 2022, eq 3).

    r = LSE(a - alpha log N, b - beta log D, e) - log L, Huber_delta(r) = c (r - c/2) with c = clip(r, -delta,
    delta); f = SUM of Huber_delta(r) / delta^2 (rescaled so L-BFGS's stopping rules see an O(1) objective), or
    with `mean` the unscaled mean (the trap).

    Parameters
    ----------
    theta : array_like, shape (S, 5) or (5,)
        Rows (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta).
    logN, logD, logL : ndarray, shape (n,) or (S, n)
        Logs of the data: one data set for every row of theta, or one per row (the bootstrap's resamples).
    delta : float
        Huber threshold.
    mean : bool
        Return the mean instead of the scaled sum.
    weight : ndarray, shape (S, n), optional
        Per-point weights (0 drops a point: the bootstrap pads resamples of unequal length with them).

    Returns
    -------
    f : ndarray, shape (S,)
    grad : ndarray, shape (S, 5)
        df/dtheta.
    """
    theta = np.atleast_2d(theta)
    a, b, e, alpha, beta = (theta[:, i:i + 1] for i in range(5))
    n_points = logL.shape[-1] if weight is None else weight.sum(axis=-1)
    u1 = np.exp(np.clip(a - alpha * logN, -700.0, 700.0))  # A / N^alpha; clipped: wild trial steps stay finite
    u2 = np.exp(np.clip(b - beta * logD, -700.0, 700.0))  # B / D^beta
    E = np.exp(np.clip(e, -700.0, 700.0))
    total = u1 + u2
    total += E
    r = np.log(total)
    r -= logL
    c = np.clip(r, -delta, delta)
    # The sum is divided by delta^2 for the optimizer: with 1% noise it is ~1e-4 unscaled, far below the 1 in
    # L-BFGS's relative-decrease denominator max(|f|, 1), which would stop it almost at once (the mean's trap, only
    # milder). Callers report f * delta^2, the sum itself. The mean is left as Hoffmann's mean to show the trap.
    scale = 1.0 / n_points if mean else 1.0 / delta**2
    r -= 0.5 * c  # Huber_delta(r) = c (r - c/2)
    if weight is not None:
        c *= weight  # f = sum w Huber(r), df/dr = w c
    f = np.einsum("ij,ij->i", c, r) * scale
    c /= total  # dHuber/dr * dr/dlog(total)
    p1, p2 = c * u1, c * u2
    if logN.ndim == 1:
        gN, gD = p1 @ logN, p2 @ logD
    else:
        gN, gD = np.einsum("ij,ij->i", p1, logN), np.einsum("ij,ij->i", p2, logD)
    grad = np.stack([p1.sum(1), p2.sum(1), c.sum(1) * E[:, 0], -gN, -gD], axis=1)
    return f, grad * np.reshape(scale, (-1, 1))


def _grid_starts(grid) -> tuple[np.ndarray, dict]:
    """Every start of `grid` (a name in GRIDS or a dict of 5 arrays) as rows of theta, and the grid's values."""
    g = GRIDS[grid] if isinstance(grid, str) else {k: np.asarray(v, dtype=float) for k, v in grid.items()}
    if set(g) != set(PARAM_ORDER):
        raise InputError("grid", f"needs values for {PARAM_ORDER}, got {sorted(g)}", 'use "chinchilla" or "small"')
    mesh = np.meshgrid(*(g[k] for k in PARAM_ORDER), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1), g


def fit_approach3(N, D, L, delta: float = 1e-3, grid="chinchilla", objective: str = "sum", init=None,
                  polish: int = 5) -> FitResult:
    """Chinchilla Approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta by a Huber loss in log space.

    Minimises SUM over runs of Huber_delta(LSE(a - alpha log N, b - beta log D, e) - log L) over
    theta = (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta) (Hoffmann et al. 2022, sec 3.3, eq 3),
    by L-BFGS from every start of a grid, all starts at once (`_lbfgs.batched_lbfgs`, scipy's stopping rules);
    the best `polish` distinct end points are polished with scipy's L-BFGS-B and the best is kept.

    Parameters
    ----------
    N, D, L : array_like
        Parameters, training tokens and loss (nats/token) of each run; at least 6 runs.
    delta : float
        Huber threshold (Hoffmann et al. use 1e-3).
    grid : {"chinchilla", "small"} or dict
        Starts: "chinchilla" is the paper's grid alpha, beta in {0, .5, .., 2}, e in {-1, -.5, .., 1},
        a, b in {0, 5, .., 25} (4500 starts); "small" a coarse 108-start grid for tests; or a dict of 5 arrays
        keyed by `PARAM_ORDER`.
    objective : {"sum", "mean"}
        "mean" divides by the number of runs, only to show the trap: L-BFGS then stops early
        (Besiroglu et al. 2024, arXiv:2404.10102).
    init : mapping, optional
        Start from these params (E, A, B, alpha, beta) instead of the grid, as the bootstrap does.
    polish : int
        How many distinct grid results scipy polishes.

    Returns
    -------
    FitResult
        params E, A, B, alpha, beta, a = beta/(alpha+beta), b = alpha/(alpha+beta), G (`approach3_params`);
        predict(N, D); objective the sum of Huber losses. extra: frontier (C -> (N_opt, D_opt)), message
        (scipy's), and for a grid n_starts, n_starts_at_best (starts within 1e-6 relative of the best objective),
        n_stopped_ok, median_iterations, best_start. Flags: a parameter outside its grid of starts (_starts.py), alpha or
        beta <= 0, no convergence, E above the smallest loss, fewer than 10 runs.
    """
    N, D, L = as_positive_array(N, "N"), as_positive_array(D, "D"), as_positive_array(L, "loss")
    if not len(N) == len(D) == len(L):
        raise InputError("N, D, L", f"lengths differ ({len(N)}, {len(D)}, {len(L)})", "pass one value per run")
    if objective not in ("sum", "mean"):
        raise InputError("objective", f"{objective!r} is not 'sum' or 'mean'", "use 'sum' (Hoffmann 2022)")
    check_enough(len(L), 6, "runs for fit_approach3 (5 parameters)")
    logN, logD, logL = np.log(N), np.log(D), np.log(L)
    mean = objective == "mean"

    def fun(theta, rows=None):
        return huber_lse_objective(theta, logN, logD, logL, delta, mean)

    def fun1(theta):
        f, g = fun(theta[None, :])
        return float(f[0]), g[0]

    extra = {}
    if init is not None:
        candidates = [_theta(init)]
        grid_values = None
    else:
        starts, grid_values = _grid_starts(grid)
        x, f, status, iters = batched_lbfgs(fun, starts)
        order = np.argsort(np.where(np.isfinite(f), f, np.inf))
        candidates, seen = [], []
        for i in order:  # the best few distinct end points
            if not any(np.allclose(x[i], s, rtol=1e-4, atol=1e-4) for s in seen):
                seen.append(x[i])
                candidates.append(x[i])
            if len(candidates) >= polish:
                break
        at_best = np.abs(f - f[order[0]]) <= 1e-6 * max(abs(f[order[0]]), 1e-12)
        extra.update(n_starts=len(starts), best_start=dict(zip(PARAM_ORDER, starts[order[0]])),
                     n_starts_at_best=int(at_best.sum()),
                     n_stopped_ok=int(np.sum(status == 0)), median_iterations=float(np.median(iters)))
    best = None
    for c in candidates:
        res = minimize(fun1, c, jac=True, method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    params = approach3_params(best.x)
    E, A, B, alpha, beta = (params[k] for k in ("E", "A", "B", "alpha", "beta"))
    flags = []
    # scipy reports ABNORMAL when its line search cannot improve an already-converged point (the Huber kinks at
    # +-delta); that is convergence when the gradient is negligible at the objective's scale.
    if not best.success and np.abs(best.jac).max() > 1e-3 * max(1.0, abs(best.fun)):
        flags.append(f"not converged: {best.message} (largest gradient {np.abs(best.jac).max():.3g})")
    if alpha <= 0 or beta <= 0:
        flags.append(f"degenerate exponent (alpha={alpha:.3g}, beta={beta:.3g}): a term does not fall with scale")
    if grid_values is not None:  # judged, like the registry's laws, against the paper's grid unless one is given
        judged = GRIDS["chinchilla"] if isinstance(grid, str) else grid_values
        flags += outside_starts(PARAM_ORDER, best.x, judged)
        extra["starts_range"] = ranges(PARAM_ORDER, judged)
    if E >= L.min():
        flags.append(f"E = {E:.4g} >= the smallest loss {L.min():.4g}")
    if len(L) < 10:
        flags.append(f"only {len(L)} runs for 5 parameters")
    extra.update(frontier=lambda C: compute_optimal(C, E, A, B, alpha, beta), message=str(best.message),
                 objective_kind=objective, delta=delta)
    return FitResult(name="Chinchilla Approach 3", params=params,
                     predict=predictor(lambda n, d: chinchilla_loss(n, d, E, A, B, alpha, beta), ["N", "D"]),
                     data=pd.DataFrame({"N": N, "D": D, "loss": L}),
                     objective=float(best.fun) * (1.0 if mean else delta**2),  # the SUM of Huber losses
                     flags=tuple(flags), extra=extra)


def refit_approach3_batch(samples, init, delta: float = 1e-3, objective: str = "sum", **_) -> list:
    """Refit Approach 3 on many resampled tables at once, each started from `init` (the bootstrap's batched refit).

    One `_lbfgs.batched_lbfgs` run whose rows are the resamples, same objective and stopping rules as
    `fit_approach3`'s grid of starts (no scipy polish).

    Parameters
    ----------
    samples : list of DataFrame
        Resampled tables with columns N, D, loss (of any lengths: shorter ones are padded with weight-0 rows).
    init : mapping
        The point estimate's params (E, A, B, alpha, beta).
    delta, objective
        As in `fit_approach3`; other keywords (e.g. grid) are ignored.

    Returns
    -------
    list
        Per sample, the params dict of `approach3_params`, or an error string when the refit failed (objective not
        finite, alpha or beta <= 0).
    """
    (logN, weight), (logD, _), (logL, _) = (pad_ragged([np.log(s[col].to_numpy(float)) for s in samples])
                                            for col in ("N", "D", "loss"))

    def fun(theta, rows):
        return huber_lse_objective(theta, logN[rows], logD[rows], logL[rows], delta, objective == "mean",
                                   None if weight is None else weight[rows])

    x, f, _, _ = batched_lbfgs(fun, np.tile(_theta(init), (len(samples), 1)))
    out = []
    for theta, fi in zip(x, f):
        alpha, beta = theta[3], theta[4]
        if not np.isfinite(fi) or alpha <= 0 or beta <= 0:
            out.append(f"refit failed (objective {fi:.3g}, alpha {alpha:.3g}, beta {beta:.3g})")
            continue
        out.append(approach3_params(theta))
    return out
