"""A vectorised L-BFGS: many independent minimisations advanced together, one numpy call per step for all.

Approach 3 (Hoffmann et al. 2022, sec 3.3) minimises its objective from 4500 starts, and its bootstrap refits
1000 resampled tables; one scipy `minimize` per start is the slow part. Here every start is a row of one array,
so each iteration costs one vectorised objective call for all the rows still running. The rules follow scipy's
L-BFGS-B (Byrd et al. 1995; Nocedal & Wright 2006, Algorithm 7.4 for the two-loop recursion), without bounds.
"""
from __future__ import annotations

import numpy as np

FTOL = 1e7 * np.finfo(float).eps  # scipy L-BFGS-B default factr * eps
PGTOL = 1e-5


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


def pad_ragged(arrays):
    """Stack S 1-d arrays of unequal length into one (S, width) array for a batched refit.

    Each array is padded by repeating its last value; weight (S, width) is 1 on its own entries and 0 on the
    padding (resamples of whole seed groups differ in length), or None when no array needed padding.
    """
    width = max(len(a) for a in arrays)
    stacked = np.stack([np.pad(np.asarray(a), (0, width - len(a)), mode="edge") for a in arrays])
    weight = np.stack([np.arange(width) < len(a) for a in arrays]).astype(float)
    return stacked, (None if weight.all() else weight)
