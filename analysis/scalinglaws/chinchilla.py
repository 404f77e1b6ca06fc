"""Hoffmann et al. 2022 (Chinchilla, arXiv:2203.15556): Approaches 1, 2, 3 and the compute-optimal frontier.

Public API (fits return FitResult; each takes `init=` to start from given params, as bootstrap does)
- `chinchilla_loss(N, D, E, A, B, alpha, beta)` = E + A/N^alpha + B/D^beta (eq 2 / Approach 3 form).
- `compute_optimal(C, E, A, B, alpha, beta) -> (N_opt, D_opt)`: minimiser of that loss subject to 6ND = C (eq 4):
  N_opt = G (C/6)^(beta/(alpha+beta)), D_opt = G^-1 (C/6)^(alpha/(alpha+beta)), G = (alpha A/(beta B))^(1/(alpha+beta)).
- `fit_approach3(N, D, L, delta=1e-3, grid="chinchilla", objective="sum", init=None)`: minimise
  SUM over runs of Huber_delta(LSE(a - alpha log N, b - beta log D, e) - log L) (Approach 3, eq 3) by L-BFGS
  from every start of the grid alpha, beta in {0,.5,..,2}, e in {-1,-.5,..,1}, a, b in {0,5,..,25} (4500 starts;
  grid="small" is a coarse 108-start grid for tests; a dict of 5 arrays is a custom grid) with the analytic gradient.
  All starts run at once in a vectorised L-BFGS (same stopping rules as scipy's L-BFGS-B: projected gradient
  <= 1e-5, or relative decrease <= 2.2e-9 with the denominator max(|f|, 1)); the best distinct results are then
  polished with scipy.optimize.minimize(method="L-BFGS-B", jac=True) and the best kept. params E, A, B, alpha,
  beta, a = beta/(alpha+beta), b = alpha/(alpha+beta), G; predict(N, D); extra["frontier"] = C -> (N_opt, D_opt).
  objective="mean" divides by the number of runs: only to demonstrate the trap (L-BFGS stops early).
  Flags: a parameter outside the grid of starts, alpha or beta <= 0, no convergence, too few runs.
  extra: n_starts, n_starts_at_best (starts whose L-BFGS ended within 1e-6 relative of the best objective),
  n_stopped_ok, median_iterations, best_start, message (scipy's), frontier.
- `fit_approach2(N, D, C, L, budgets=None)`: IsoFLOP profiles. Runs are grouped by `budgets` (labels) if given,
  else by C (values within 0.05 decades of each other are one budget). Per budget, parabolas of L in log N and in
  log D give N_opt, D_opt; a budget is refused (extra["refused"] = {budget: reason}) when it has < 3 sizes, the
  curvature is not positive, or a vertex lies outside the sampled range. Then N_opt = k_N C^a, D_opt = k_D C^b
  over the accepted budgets (>= 2, else InputError). params a, b, k_N, k_D; predict(C) = N_opt;
  extra["minima"] (one row per budget), extra["frontier"]. A vertex in the outer 15% of the sampled log range is
  flagged: parabolas over sizes not centred on the minimum are biased (centre the sweep).
- `fit_approach1(curves, n_bins=30)`: envelope of training curves. `curves` has run_id, N and a FLOPs column
  (flops, C or flops_6nd) and a loss column (loss or val_loss) per eval point. Each curve is interpolated in log C
  onto n_bins log-spaced budgets; at each budget the run of least loss wins, giving N_opt and D_opt = C/(6 N_opt).
  Budgets where the winner is the smallest or largest of the runs covering it are dropped (the optimum may lie
  beyond the sampled sizes). Then N_opt = k_N C^a, D_opt = k_D C^b. params a, b, k_N, k_D; predict(C) = N_opt;
  extra["envelope"]. Flags fewer than 4 envelope points.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from .errors import InputError
from .powerlaw import as_positive_array, fit_loglinear, predictor
from .result import FitResult
from .table import check_enough

PARAM_ORDER = ("a", "b", "e", "alpha", "beta")  # theta = (log A, log B, log E, alpha, beta)
GRIDS = {
    "chinchilla": {"alpha": np.arange(0, 2.01, 0.5), "beta": np.arange(0, 2.01, 0.5), "e": np.arange(-1, 1.01, 0.5),
                   "a": np.arange(0, 25.1, 5), "b": np.arange(0, 25.1, 5)},
    "small": {"alpha": np.array([0.25, 0.75]), "beta": np.array([0.25, 0.75]), "e": np.array([-1.0, 0.0, 1.0]),
              "a": np.array([0.0, 10.0, 20.0]), "b": np.array([0.0, 10.0, 20.0])},
}
FTOL = 1e7 * np.finfo(float).eps  # scipy L-BFGS-B default factr * eps
PGTOL = 1e-5


def chinchilla_loss(N, D, E, A, B, alpha, beta):
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann 2022, eq 2)."""
    return E + A / np.asarray(N, dtype=float) ** alpha + B / np.asarray(D, dtype=float) ** beta


def compute_optimal(C, E, A, B, alpha, beta):
    """(N_opt, D_opt) minimising chinchilla_loss subject to 6 N D = C (Hoffmann 2022, eq 4)."""
    G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    c6 = np.asarray(C, dtype=float) / 6.0
    return G * c6 ** (beta / (alpha + beta)), c6 ** (alpha / (alpha + beta)) / G


# ---------------------------------------------------------------- Approach 3


def huber_lse_objective(theta, logN, logD, logL, delta=1e-3, mean=False):
    """Objective and gradient for a batch of parameter vectors theta (S, 5) = (a, b, e, alpha, beta).

    logN, logD, logL are (n,) (one data set for every row of theta) or (S, n) (a data set per row: bootstrap).
    r = LSE(a - alpha log N, b - beta log D, e) - log L; f = sum of Huber_delta(r) / delta^2 (Hoffmann eq 3,
    rescaled so L-BFGS's stopping rules see an O(1) objective), or the unscaled mean (the trap).
    Huber_delta(r) = c (r - c/2) with c = clip(r, -delta, delta). Returns f (S,) and df/dtheta (S, 5).
    """
    theta = np.atleast_2d(theta)
    a, b, e, alpha, beta = (theta[:, i:i + 1] for i in range(5))
    n_points = logL.shape[-1]
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
    f = np.einsum("ij,ij->i", c, r - 0.5 * c) * scale
    c /= total  # dHuber/dr * dr/dlog(total)
    p1, p2 = c * u1, c * u2
    if logN.ndim == 1:
        gN, gD = p1 @ logN, p2 @ logD
    else:
        gN, gD = np.einsum("ij,ij->i", p1, logN), np.einsum("ij,ij->i", p2, logD)
    grad = np.stack([p1.sum(1), p2.sum(1), c.sum(1) * E[:, 0], -gN, -gD], axis=1)
    return f, grad * scale


def batched_lbfgs(fun, x0, memory=10, max_iter=1000, max_backtracks=30):
    """Minimise fun over many independent starts at once. fun(X (k, d), rows (k,)) -> (f (k,), g (k, d)),
    where rows are the start indices the k parameter vectors belong to.

    L-BFGS two-loop recursion per start with Armijo backtracking; a start stops when its largest gradient
    component is <= PGTOL or its relative decrease (f_k - f_k+1)/max(|f_k|, |f_k+1|, 1) <= FTOL (scipy's rules).
    Returns x, f, status (0 converged, 1 iteration limit, 2 line search failed) and iteration counts.
    """
    x = np.array(x0, dtype=float)
    S, d = x.shape
    f, g = fun(x, np.arange(S))
    s_hist, y_hist = np.zeros((S, memory, d)), np.zeros((S, memory, d))  # slot memory-1 is the newest pair
    rho = np.zeros((S, memory))  # 0 marks an empty slot
    status = np.ones(S, dtype=int)
    iters = np.zeros(S, dtype=int)
    done = np.abs(g).max(axis=1) <= PGTOL
    status[done] = 0
    for _ in range(max_iter):
        idx = np.flatnonzero(~done)
        if idx.size == 0:
            break
        gi, si, yi, ri = g[idx], s_hist[idx], y_hist[idx], rho[idx]
        q = gi.copy()
        alphas = np.zeros((idx.size, memory))
        for j in reversed(range(memory)):  # newest to oldest
            alphas[:, j] = ri[:, j] * np.einsum("ij,ij->i", si[:, j], q)
            q -= alphas[:, j, None] * yi[:, j]
        has_memory = ri[:, -1] > 0
        yy = np.einsum("ij,ij->i", yi[:, -1], yi[:, -1])
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = 1.0 / (ri[:, -1] * yy)  # s.y / y.y of the newest pair
        gamma = np.where(has_memory & np.isfinite(gamma) & (gamma > 0), gamma, 1.0)
        r = gamma[:, None] * q
        for j in range(memory):  # oldest to newest
            beta = ri[:, j] * np.einsum("ij,ij->i", yi[:, j], r)
            r += (alphas[:, j] - beta)[:, None] * si[:, j]
        direction = -r
        slope = np.einsum("ij,ij->i", gi, direction)
        reset = ~(slope < 0)
        if reset.any():  # not a descent direction: forget the memory, take steepest descent
            direction[reset] = -gi[reset]
            rho[idx[reset]] = 0.0
            has_memory[reset] = False
            slope = np.einsum("ij,ij->i", gi, direction)
        step = np.where(has_memory, 1.0, np.minimum(1.0, 1.0 / np.maximum(np.linalg.norm(gi, axis=1), 1e-300)))
        # Armijo backtracking, all pending starts evaluated together
        pending = np.arange(idx.size)
        x_new, f_new, g_new = x[idx], f[idx], gi.copy()
        accepted = np.zeros(idx.size, dtype=bool)
        for _ in range(max_backtracks):
            trial = x[idx[pending]] + step[pending, None] * direction[pending]
            ft, gt = fun(trial, idx[pending])
            ok = np.isfinite(ft) & (ft <= f[idx[pending]] + 1e-4 * step[pending] * slope[pending])
            good = pending[ok]
            x_new[good], f_new[good], g_new[good] = trial[ok], ft[ok], gt[ok]
            accepted[good] = True
            pending = pending[~ok]
            if pending.size == 0:
                break
            step[pending] *= 0.5
        failed = idx[~accepted]
        done[failed], status[failed] = True, 2
        acc = np.flatnonzero(accepted)
        ia = idx[acc]
        s_vec, y_vec = x_new[acc] - x[ia], g_new[acc] - g[ia]
        sy = np.einsum("ij,ij->i", s_vec, y_vec)
        keep = (sy > 1e-10 * np.einsum("ij,ij->i", y_vec, y_vec)) & (sy > 1e-100)  # positive curvature only
        ik = ia[keep]
        s_hist[ik, :-1], y_hist[ik, :-1], rho[ik, :-1] = s_hist[ik, 1:], y_hist[ik, 1:], rho[ik, 1:]
        s_hist[ik, -1], y_hist[ik, -1], rho[ik, -1] = s_vec[keep], y_vec[keep], 1.0 / sy[keep]
        rel = (f[ia] - f_new[acc]) / np.maximum(np.maximum(np.abs(f[ia]), np.abs(f_new[acc])), 1.0)
        x[ia], f[ia], g[ia] = x_new[acc], f_new[acc], g_new[acc]
        iters[ia] += 1
        conv = (rel <= FTOL) | (np.abs(g_new[acc]).max(axis=1) <= PGTOL)
        done[ia[conv]], status[ia[conv]] = True, 0
    return x, f, status, iters


def _grid_starts(grid) -> tuple[np.ndarray, dict]:
    g = GRIDS[grid] if isinstance(grid, str) else {k: np.asarray(v, dtype=float) for k, v in grid.items()}
    if set(g) != set(PARAM_ORDER):
        raise InputError("grid", f"needs values for {PARAM_ORDER}, got {sorted(g)}", 'use "chinchilla" or "small"')
    mesh = np.meshgrid(*(g[k] for k in PARAM_ORDER), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1), g


def fit_approach3(N, D, L, delta: float = 1e-3, grid="chinchilla", objective: str = "sum", init=None,
                  polish: int = 5) -> FitResult:
    """Chinchilla Approach 3: Huber fit of L = E + A/N^alpha + B/D^beta in log space (see module docstring)."""
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
        candidates = [np.array([np.log(init["A"]), np.log(init["B"]), np.log(init["E"]), init["alpha"], init["beta"]])]
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
    a_, b_, e_, alpha, beta = (float(v) for v in best.x)
    E, A, B = np.exp(e_), np.exp(a_), np.exp(b_)
    flags = []
    # scipy reports ABNORMAL when its line search cannot improve an already-converged point (the Huber kinks at
    # +-delta); that is convergence when the gradient is negligible at the objective's scale.
    if not best.success and np.abs(best.jac).max() > 1e-3 * max(1.0, abs(best.fun)):
        flags.append(f"not converged: {best.message} (largest gradient {np.abs(best.jac).max():.3g})")
    if alpha <= 0 or beta <= 0:
        flags.append(f"degenerate exponent (alpha={alpha:.3g}, beta={beta:.3g}): a term does not fall with scale")
    if grid_values is not None:
        for name, value in zip(PARAM_ORDER, best.x):
            lo, hi = grid_values[name].min(), grid_values[name].max()
            if not lo <= value <= hi:
                flags.append(f"{name} = {value:.3g} outside the grid of starts [{lo:g}, {hi:g}]: widen the grid")
    if E >= L.min():
        flags.append(f"E = {E:.4g} >= the smallest loss {L.min():.4g}")
    if len(L) < 10:
        flags.append(f"only {len(L)} runs for 5 parameters")
    s = alpha + beta
    G = (alpha * A / (beta * B)) ** (1 / s) if alpha > 0 and beta > 0 else float("nan")
    params = {"E": E, "A": A, "B": B, "alpha": alpha, "beta": beta, "a": beta / s, "b": alpha / s, "G": G}
    extra.update(frontier=lambda C: compute_optimal(C, E, A, B, alpha, beta), message=str(best.message),
                 objective_kind=objective, delta=delta)
    return FitResult(name="Chinchilla Approach 3", params=params,
                     predict=predictor(lambda n, d: chinchilla_loss(n, d, E, A, B, alpha, beta), ["N", "D"]),
                     data=pd.DataFrame({"N": N, "D": D, "loss": L}),
                     objective=float(best.fun) * (1.0 if mean else delta**2),  # the SUM of Huber losses
                     flags=tuple(flags), extra=extra)


def _approach3_refit_batch(samples, init, delta=1e-3, objective="sum", **_):
    """Refit Approach 3 on many resampled tables at once, every one started from `init` (used by bootstrap).

    One vectorised L-BFGS run whose rows are the resamples (same stopping rules as fit_approach3's starts).
    """
    logN = np.log(np.stack([s["N"].to_numpy(float) for s in samples]))
    logD = np.log(np.stack([s["D"].to_numpy(float) for s in samples]))
    logL = np.log(np.stack([s["loss"].to_numpy(float) for s in samples]))
    start = np.array([np.log(init["A"]), np.log(init["B"]), np.log(init["E"]), init["alpha"], init["beta"]])

    def fun(theta, rows):
        return huber_lse_objective(theta, logN[rows], logD[rows], logL[rows], delta, objective == "mean")

    x, f, status, _ = batched_lbfgs(fun, np.tile(start, (len(samples), 1)))
    out = []
    for (a_, b_, e_, alpha, beta), fi in zip(x, f):
        if not np.isfinite(fi) or alpha <= 0 or beta <= 0:
            out.append(f"refit failed (objective {fi:.3g}, alpha {alpha:.3g}, beta {beta:.3g})")
            continue
        s = alpha + beta
        A, B = np.exp(a_), np.exp(b_)
        out.append({"E": float(np.exp(e_)), "A": float(A), "B": float(B), "alpha": float(alpha),
                    "beta": float(beta), "a": float(beta / s), "b": float(alpha / s),
                    "G": float((alpha * A / (beta * B)) ** (1 / s))})
    return out


fit_approach3.refit_batch = _approach3_refit_batch  # bootstrap refits all resamples in one vectorised run


# ---------------------------------------------------------------- Approach 2


def budget_groups(C, tol_decades: float = 0.05) -> np.ndarray:
    """Budget label per run: runs whose log10 C lie within `tol_decades` of a neighbour share a budget.

    The label is the group's geometric-mean C rounded to 2 significant digits.
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


def _vertex(x, y, edge_frac):
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
    """Mask of the `window` sizes of budget mask `m` nearest (by rank in N) its lowest-loss run."""
    if window is None or m.sum() <= window:
        return m
    idx = np.flatnonzero(m)[np.argsort(N[m])]
    best = int(np.argmin(L[idx]))
    start = min(max(best - window // 2, 0), len(idx) - window)
    keep = np.zeros_like(m)
    keep[idx[start:start + window]] = True
    return keep


def fit_approach2(N, D, C, L, budgets=None, init=None, edge_frac: float = 0.15, window: int | None = None) -> FitResult:
    """Chinchilla Approach 2: isoFLOP parabolas, then N_opt ~ C^a, D_opt ~ C^b (see module docstring).

    `window`: fit each budget's parabola to the `window` sizes nearest its lowest-loss run (by rank of N) instead
    of all of them: over a wide ladder the profile is not a parabola in log N, and far sizes pull the vertex.
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
        vN, cN, posN, whyN = _vertex(np.log(N[m]), L[m], edge_frac)
        vD, cD, posD, whyD = _vertex(np.log(D[m]), L[m], edge_frac)
        why = whyN or (whyD and f"in log D: {whyD}")
        if why:
            refused[key] = why
            continue
        C_b = float(np.exp(np.log(C[m]).mean()))
        rows.append({"budget": key, "C": C_b, "N_opt": float(np.exp(vN)), "D_opt": float(np.exp(vD)),
                     "n_sizes": int(m.sum()), "curvature": float(cN), "vertex_position": float(posN)})
        if min(posN, 1 - posN) < edge_frac:
            flags.append(f"budget {key}: minimum at {posN:.2f} of the sampled log N range (near an edge: the "
                         "parabola is biased; centre the sizes on the optimum)")
    if refused:
        flags.append(f"{len(refused)} budget(s) refused: " + "; ".join(f"{k}: {v}" for k, v in refused.items()))
    if len(rows) < 2:
        raise InputError("budgets", f"{len(rows)} usable isoFLOP budget(s); refused: {refused}",
                         "sweep at least 2 budgets with >= 3 sizes each, centred on the loss minimum")
    minima = pd.DataFrame(rows).sort_values("C", ignore_index=True)
    fit_N = fit_loglinear(minima["C"], minima["N_opt"])
    fit_D = fit_loglinear(minima["C"], minima["D_opt"])
    if len(rows) == 2:
        flags.append("only 2 budgets: the exponents have no spare degree of freedom")
    a, kN, b, kD = fit_N.params["p"], fit_N.params["k"], fit_D.params["p"], fit_D.params["k"]
    params = {"a": a, "b": b, "k_N": kN, "k_D": kD}
    data = pd.DataFrame({"N": N, "D": D, "C": C, "loss": L, "budget": labels})
    return FitResult(name="Chinchilla Approach 2", params=params, predict=predictor(lambda c: kN * c ** a, ["C"]),
                     data=data, objective=float(fit_N.objective), flags=tuple(flags),
                     extra={"minima": minima, "refused": refused,
                            "frontier": lambda c: (kN * np.asarray(c, float) ** a, kD * np.asarray(c, float) ** b)})


def _approach2_groups(df: pd.DataFrame) -> np.ndarray:
    return df["budget"].to_numpy() if "budget" in df.columns else budget_groups(df["C"].to_numpy())


fit_approach2.bootstrap_groups = _approach2_groups  # bootstrap resamples within each budget


# ---------------------------------------------------------------- Approach 1


def _first_column(df, names, what):
    for n in names:
        if n in df.columns:
            return n
    raise InputError(f"curves column {what}", f"none of {names} present; columns are {list(df.columns)}",
                     "rename or add the column")


def fit_approach1(curves: pd.DataFrame, n_bins: int = 30, init=None) -> FitResult:
    """Chinchilla Approach 1: envelope of training curves, then N_opt ~ C^a, D_opt ~ C^b (see module docstring)."""
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
    fit_N, fit_D = fit_loglinear(env["C"], env["N_opt"]), fit_loglinear(env["C"], env["D_opt"])
    a, kN, b, kD = fit_N.params["p"], fit_N.params["k"], fit_D.params["p"], fit_D.params["k"]
    return FitResult(name="Chinchilla Approach 1", params={"a": a, "b": b, "k_N": kN, "k_D": kD},
                     predict=predictor(lambda c: kN * c ** a, ["C"]), data=df, objective=float(fit_N.objective),
                     flags=tuple(flags),
                     extra={"envelope": env, "dropped_bins": dropped,
                            "frontier": lambda c: (kN * np.asarray(c, float) ** a, kD * np.asarray(c, float) ** b)})


fit_approach1.bootstrap_unit = "run_id"  # bootstrap resamples whole training curves
