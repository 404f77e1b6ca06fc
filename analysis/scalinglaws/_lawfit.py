"""One machinery for every form of the registry (private): Huber in log space, batched L-BFGS from a grid.

objective(theta) = sum_i Huber_delta(log L_hat(theta; x_i) - log L_i) / delta^2 (Hoffmann et al. 2022, eq 3;
the 1/delta^2 keeps L-BFGS's relative-decrease test away from its floor of 1, as in chinchilla.py).
Every start of the form's grid runs at once in _lbfgs.batched_lbfgs; the best few distinct end points are
polished with scipy's L-BFGS-B and the best kept. Bootstrap refits run as one batch too, every resample started
from the point estimate (Besiroglu et al. 2024, arXiv:2404.10102).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ._lbfgs import batched_lbfgs

GRID_MAX_ITER = 300  # per start of the grid; the best end points are then polished to convergence by scipy


def objective(form, theta, X, logL, delta, weight=None):
    """Huber objective f (S,) and gradient (S, d) of a batch of theta; X, logL (and weight, per run) are (n,)
    or (S, n)."""
    v, jac = form.log_model(theta, X)
    r = v - logL
    c = np.clip(r, -delta, delta)
    if weight is not None:
        c = c * weight
    f = np.einsum("ij,ij->i", c, r - 0.5 * np.clip(r, -delta, delta)) / delta**2
    g = np.einsum("ij,ijk->ik", c, jac) / delta**2
    bad = ~np.isfinite(f)
    f[bad] = np.inf
    return f, g




def _in_u(fun1, c, W, u):
    f, g = fun1(c + W @ u)
    return f, W.T @ g


def grid_starts(form, grid: str) -> tuple[np.ndarray, dict]:
    values = form.grids[grid]
    mesh = np.meshgrid(*(values[k] for k in form.theta), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1), values


def fit_theta(form, X, logL, grid="chinchilla", delta=1e-3, init=None, polish=5) -> dict:
    """Best theta from the grid of starts (or from `init` alone, a theta vector). Returns
    theta, objective (the sum of Huber losses, unscaled), converged (relative_offset below RELATIVE_OFFSET_TOL
    when scipy stops short of its own test), relative_offset, n_starts, n_starts_at_best,
    grid values."""

    def fun(theta, rows):
        return objective(form, theta, X, logL, delta)

    def fun1(theta):
        f, g = objective(form, theta[None, :], X, logL, delta)
        return float(f[0]), g[0]

    out = {"grid": None, "n_starts": 1, "n_starts_at_best": 1}
    if init is not None:
        candidates = [np.asarray(init, dtype=float)]
    else:
        starts, values = grid_starts(form, grid)
        x, f, _, _ = batched_lbfgs(fun, starts, max_iter=GRID_MAX_ITER)
        order = np.argsort(f)
        candidates, seen = [], []
        for i in order:
            if np.isfinite(f[i]) and not any(np.allclose(x[i], s, rtol=1e-4, atol=1e-4) for s in seen):
                seen.append(x[i])
                candidates.append(x[i])
            if len(candidates) >= polish:
                break
        at_best = np.abs(f - f[order[0]]) <= 1e-6 * max(abs(f[order[0]]), 1e-12)
        out.update(grid=values, n_starts=len(starts), n_starts_at_best=int(at_best.sum()))
    best = None
    for c in candidates:  # polished in whitened coordinates u, theta = c + W u
        W = whitening(form, X, c)
        res = minimize(lambda u: _in_u(fun1, c, W, u), np.zeros(len(c)), jac=True, method="L-BFGS-B")
        if np.isfinite(res.fun) and (best is None or res.fun < best.fun):
            best, best_theta = res, c + W @ res.x
    if best is None:
        raise ArithmeticError(f"{form.name}: no start gave a finite objective")
    offset = relative_offset(form, X, logL, best_theta, delta)
    out.update(theta=best_theta, objective=float(best.fun) * delta**2,
               relative_offset=offset, converged=bool(best.success or offset <= RELATIVE_OFFSET_TOL))
    return out


RELATIVE_OFFSET_TOL = 1e-3  # Bates & Watts 1981: the fit is converged when the offset is below 1e-3


def relative_offset(form, X, logL, theta, delta) -> float:
    """Bates & Watts' relative offset ||P_J psi|| / ||psi||: the cosine between the (Huber-clipped) residuals
    psi = clip(log L_hat - log L, +-delta) and the model's tangent plane, the columns of J = d log L_hat / d theta.

    Zero at a stationary point whatever the scale of theta or of the objective, so it judges convergence where
    L-BFGS stops on a line search at machine precision (Bates & Watts 1981, Technometrics 23:179, "A relative
    offset orthogonality convergence criterion for nonlinear least squares").
    """
    v, jac = form.log_model(np.asarray(theta, float)[None, :], X)
    psi = np.clip(v[0] - logL, -delta, delta)
    u, sv, _ = np.linalg.svd(jac[0], full_matrices=False)
    u = u[:, sv > 1e-10 * sv.max()] if sv.size and sv.max() > 0 else u[:, :0]  # a coordinate the data do not
    norm = float(np.linalg.norm(psi))                                        # move spans no direction
    return float(np.linalg.norm(u.T @ psi)) / norm if norm > 0 else 0.0


def whitening(form, X, theta0) -> np.ndarray:
    """W with theta = theta0 + W u making the Gauss-Newton matrix J^T J at theta0 the identity in u (one W per
    row when theta0 is (S, d)).

    The forms' coordinates are badly scaled and coupled (the over-training law's eta multiplies log C ~ 40),
    which stalls L-BFGS for hundreds of iterations; in u the problem is close to round.
    """
    theta0 = np.atleast_2d(theta0)
    _, jac = form.log_model(theta0, {k: np.atleast_2d(v)[:1] for k, v in X.items()})
    M = np.einsum("snd,sne->sde", jac, jac)
    d = M.shape[-1]
    M += (1e-9 * np.trace(M, axis1=1, axis2=2)[:, None, None] / d + 1e-12) * np.eye(d)
    M[~np.isfinite(M).all(axis=(1, 2))] = np.eye(d)
    W = np.linalg.inv(np.swapaxes(np.linalg.cholesky(M), 1, 2))
    return W if len(theta0) > 1 else W[0]


def refit_batch(form, Xs: dict, logLs: np.ndarray, theta0, delta=1e-3, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Refit S resampled data sets (rows of Xs[k], logLs, weights: (S, n)) from theta0 in one batch, in
    whitened coordinates. Returns theta (S, d) and ok (S,): a finite objective."""
    theta0 = np.asarray(theta0, float)
    W = whitening(form, Xs, theta0)

    def fun(u, rows):
        w = None if weights is None else weights[rows]
        f, g = objective(form, theta0 + u @ W.T, {k: v[rows] for k, v in Xs.items()}, logLs[rows], delta, w)
        return f, g @ W

    u, f, _, _ = batched_lbfgs(fun, np.zeros((len(logLs), len(theta0))))
    return theta0 + u @ W.T, np.isfinite(f)
