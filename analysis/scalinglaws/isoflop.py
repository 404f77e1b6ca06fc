"""Robust Approach 2: isoFLOP minima with uncertainties, kept and weighted instead of refused.

Method: Hoffmann et al. 2022 (arXiv:2203.15556) Approach 2, with an uncertainty per isoFLOP minimum and a
frontier fit weighted by it, in the spirit of Porian et al. 2024 (arXiv:2406.19146), who resample each budget's
points to put an uncertainty on its minimum (here a parabola in log N, not their interpolation):
1. Seeds of one (budget, N) are averaged (geometric mean), y_j with n_j seeds. The noise sigma of one run's
   log loss is the pooled seed std (noise.estimate_noise) or, without seeds, the pooled relative residual std
   of the budgets' parabolas (sqrt(sum (r / y)^2 / sum (n_b - 3))).
2. Per budget, a parabola y = c0 + c1 x + c2 x^2 in x = log N (loss, as Hoffmann et al. fit it) is fitted by
   weighted least squares (weights n_j / (sigma y_j)^2) to all its sizes (or the `window` nearest the lowest
   loss); its vertex v = -c1 / (2 c2) estimates log N_opt. All sizes is the default: where the profile is not a
   parabola, the vertex is off by about the same shift in log N at every budget of a self-similar law, which the
   slope a does not see, while fewer points add noise (a 5-size window scattered a 2-4x more in simulations).
3. Its uncertainty comes from `n_resamples` parametric resamples y*_j = y_hat_j (1 + Normal(0, sigma^2 / n_j));
   each resample's minimum is the parabola's minimum over the sampled range widened by half its width on each
   side (a resample with no curvature takes the lower end point). sigma_b = (q84 - q16) / 2 of those minima.
   A vertex near or beyond an edge is kept: its sigma_b is large, so it weighs little.
4. log N_opt = a log C + log k_N by weighted least squares, weights 1 / sigma_b^2; the interval of a is the
   percentile interval of the same regression on each resample's minima, widened by sqrt(chi^2 / dof) when the
   minima scatter about the line more than their sigmas allow. D_opt = (N D)_b / N_opt likewise gives b, k_D.
A budget is refused only when it carries no information: fewer than 3 distinct sizes, no positive curvature, or
a vertex further than half the sampled range beyond its edge (extra["refused"] says which and why).

Public API
- `fit_approach2_robust(N, D, C, L, budgets=None, window=None, n_resamples=400, seed=0, level=0.95)`
  -> FitResult: params a, b, k_N, k_D; intervals a, b; predict(C) = N_opt; extra minima (one row per kept
  budget: budget, C, N_opt, D_opt, sigma_logN, weight, vertex_position, n_sizes), refused, noise, chi2_dof,
  a_draws, frontier.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .frontier import budget_groups
from .errors import InputError
from .noise import Noise, estimate_noise
from .powerlaw import as_positive_array, predictor
from .result import FitResult

__all__ = ["fit_approach2_robust"]

REACH = 0.5  # a minimum may lie this fraction of the sampled log N range beyond an edge


def _parabola(x, y, w):
    """Weighted least-squares parabola coefficients (c2, c1, c0) for y(x); y may be (n,) or (S, n)."""
    V = np.stack([x ** 2, x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
    coef, *_ = np.linalg.lstsq(V, (np.atleast_2d(y) * np.sqrt(w)).T, rcond=None)
    return coef  # (3, S)


def _minimum(coef, lo, hi):
    """Argmin over [lo, hi] of each parabola (columns of coef)."""
    c2, c1, c0 = coef
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(c2 > 0, -c1 / (2 * c2), np.nan)
    inside = np.clip(v, lo, hi)
    ends = np.where(c2 * lo ** 2 + c1 * lo <= c2 * hi ** 2 + c1 * hi, lo, hi)
    return np.where(np.isfinite(v), inside, ends)


def _window(x, y, window):
    order = np.argsort(x)
    if window is None or len(x) <= window:
        return order
    best = int(np.argmin(y[order]))
    start = min(max(best - window // 2, 0), len(x) - window)
    return order[start:start + window]


def _wls_line(x, y, w):
    """Slope, intercept, chi^2 of y = intercept + slope x with weights w; x (n,), y (n,) or (S, n)."""
    V = np.stack([x, np.ones_like(x)], axis=1) * np.sqrt(w)[:, None]
    Y = (np.atleast_2d(y) * np.sqrt(w)).T
    coef, *_ = np.linalg.lstsq(V, Y, rcond=None)
    chi2 = ((Y - V @ coef) ** 2).sum(axis=0)
    return coef[0], coef[1], chi2


def fit_approach2_robust(N, D, C, L, budgets=None, window: int | None = None, n_resamples: int = 400, seed: int = 0,
                         level: float = 0.95) -> FitResult:
    """Approach 2 with per-budget minima uncertainties and a weighted frontier fit (Hoffmann et al. 2022,
    Approach 2; uncertainties in the spirit of Porian et al. 2024): log N_opt = a log C + log k_N, weights 1/sigma_b^2.

    Parameters
    ----------
    N, D, C, L : array_like
        Parameters, tokens, FLOPs and loss of each run.
    budgets : array_like, optional
        Budget label per run (default: C grouped within 0.05 decades).
    window : int or None
        Fit each parabola to this many sizes nearest the budget's lowest loss (default None: all).
    n_resamples, seed : int
        Parametric resamples per budget for the minima's uncertainty, and their seed.
    level : float
        Coverage of the intervals of a and b.

    Returns
    -------
    FitResult
        params a, b, k_N, k_D; intervals a, b; extra minima, refused, noise, chi2_dof, a_draws, frontier.
    """
    N, D = as_positive_array(N, "N"), as_positive_array(D, "D")
    C, L = as_positive_array(C, "C"), as_positive_array(L, "loss")
    if window is not None and (int(window) != window or window < 3):
        raise InputError("window", f"must be an integer >= 3, got {window!r}", "pass e.g. window=5, or None for all")
    if n_resamples < 20:
        raise InputError("n_resamples", f"{n_resamples} is too few to estimate a spread", "use n_resamples >= 100")
    labels = budget_groups(C) if budgets is None else np.asarray(budgets)
    runs = pd.DataFrame({"budget": labels, "N": N, "D": D, "C": C, "loss": L, "y": np.log(L)})
    configs = (runs.groupby(["budget", "N"], sort=False)
               .agg(y=("y", "mean"), n=("y", "size"), C=("C", "mean")).reset_index())
    configs["y"] = np.exp(configs["y"])
    configs["lND"] = runs.assign(lND=np.log(N * D)).groupby(["budget", "N"], sort=False)["lND"].mean().to_numpy()
    refused, fits = {}, []
    for label, g in configs.groupby("budget", sort=False):
        key = label.item() if hasattr(label, "item") else label
        x, y, n = np.log(g["N"].to_numpy()), g["y"].to_numpy(), g["n"].to_numpy(float)
        if len(np.unique(x)) < 3:
            refused[key] = f"only {len(np.unique(x))} distinct sizes: a parabola needs 3"
            continue
        keep = _window(x, y, window)
        fits.append((key, g.iloc[keep], x[keep], y[keep], n[keep]))
    repeats = (runs.groupby(["budget", "N"]).size() > 1).any()
    if repeats:
        noise = estimate_noise(runs[["N", "D", "C", "loss"]])
    else:  # pooled residual scatter of unweighted parabolas (needs a budget with more than 3 sizes)
        ss = dof = 0.0
        for _, _, x, y, n in fits:
            coef = _parabola(x, y, n)[:, 0]
            ss += float((((np.polyval(coef, x) - y) / y) ** 2).sum())
            dof += len(x) - 3
        noise = Noise(float(np.sqrt(ss / dof)), "residuals", int(dof)) if dof else None
    sigma = noise.sigma if noise is not None and np.isfinite(noise.sigma) and noise.sigma > 0 else None
    rng = np.random.default_rng(seed)
    rows, draws = [], []
    for key, g, x, y, n in fits:
        w = n / (sigma * y) ** 2 if sigma else n
        coef = _parabola(x, y, w)[:, 0]
        width = x.max() - x.min()
        lo, hi = x.min() - REACH * width, x.max() + REACH * width
        if not coef[0] > 0:
            refused[key] = f"curvature {coef[0]:.3g} is not positive: the losses have no minimum to locate"
            continue
        v = -coef[1] / (2 * coef[0])
        if not lo <= v <= hi:
            refused[key] = (f"minimum at {(v - x.min()) / width:.2f} of the sampled log N range, more than "
                            f"{REACH:g} of it beyond an edge: add sizes on that side")
            continue
        fitted = np.polyval(coef, x)
        scale = sigma * y / np.sqrt(n) if sigma else 1e-3 * y
        ystar = fitted[None, :] + rng.normal(size=(n_resamples, len(x))) * scale[None, :]
        vs = _minimum(_parabola(x, ystar, w), lo, hi)
        q16, q84 = np.percentile(vs, [16, 84])
        s_b = max(float(q84 - q16) / 2, 1e-6)
        lND = float(g["lND"].mean())
        rows.append({"budget": key, "C": float(np.exp(np.log(g["C"]).mean())), "N_opt": float(np.exp(v)),
                     "D_opt": float(np.exp(lND - v)), "sigma_logN": s_b, "vertex_position": float((v - x.min()) / width),
                     "n_sizes": len(x), "lND": lND})
        draws.append(vs)
    if refused and len(rows) < 2:
        raise InputError("budgets", f"{len(rows)} budget(s) carry information about N_opt; refused: {refused}",
                         "sweep at least 2 budgets with >= 3 sizes each around the loss minimum")
    if len(rows) < 2:
        raise InputError("budgets", f"{len(rows)} isoFLOP budget(s)", "sweep at least 2 budgets with >= 3 sizes each")
    minima = pd.DataFrame(rows)
    draws = np.array(draws).T  # (S, budgets)
    order = np.argsort(minima["C"].to_numpy())
    minima, draws = minima.iloc[order].reset_index(drop=True), draws[:, order]
    lC, v, s_b = np.log(minima["C"].to_numpy()), np.log(minima["N_opt"].to_numpy()), minima["sigma_logN"].to_numpy()
    weight = 1.0 / s_b ** 2 if sigma else np.ones_like(s_b)
    a, lk, chi2 = (float(t[0]) for t in _wls_line(lC, v, weight))
    b, lkD, _ = (float(t[0]) for t in _wls_line(lC, minima["lND"].to_numpy() - v, weight))
    lND = minima["lND"].to_numpy()
    a_draws, b_draws = _wls_line(lC, draws, weight)[0], _wls_line(lC, lND[None, :] - draws, weight)[0]
    dof = len(minima) - 2
    chi2_dof = chi2 / dof if dof > 0 and sigma else float("nan")
    widen = np.sqrt(max(1.0, chi2_dof)) if np.isfinite(chi2_dof) else 1.0
    tail = 50 * (1 - level)

    def interval(point, values):
        q_lo, q_hi = np.percentile(values, [tail, 100 - tail])
        return float(point - widen * (point - q_lo)), float(point + widen * (q_hi - point))

    intervals = {"a": interval(a, a_draws), "b": interval(b, b_draws)}
    flags = []
    if not a > 0:
        flags.append(f"not identified: a = {a:.3g} <= 0: the minima do not grow with compute")
    if dof == 0:
        flags.append("only 2 budgets: the exponent has no spare degree of freedom")
    if sigma is None:
        flags.append("no noise estimate (no seeds, and every budget has 3 sizes): budgets weighted equally, "
                     "interval not available")
        intervals = {}
    if refused:
        flags.append(f"{len(refused)} budget(s) refused: " + "; ".join(f"{k}: {r}" for k, r in refused.items()))
    minima["weight"] = weight / weight.sum()
    if not sigma:  # resampled at a nominal scale only: no uncertainty to report
        minima["sigma_logN"] = np.nan
    minima = minima.drop(columns="lND")
    kN, kD = float(np.exp(lk)), float(np.exp(lkD))
    data = runs.drop(columns="y")
    return FitResult(name="Chinchilla Approach 2 (robust)", params={"a": a, "b": b, "k_N": kN, "k_D": kD},
                     predict=predictor(lambda c: kN * c ** a, ["C"]), data=data, intervals=intervals, level=level,
                     objective=chi2, flags=tuple(flags),
                     extra={"minima": minima, "refused": refused, "noise": noise, "chi2_dof": chi2_dof,
                            "a_draws": a_draws, "window": window,
                            "frontier": lambda c: (kN * np.asarray(c, float) ** a, kD * np.asarray(c, float) ** b)})
