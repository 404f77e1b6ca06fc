"""A registry of scaling laws L(N, D), all fitted by one machinery, each checked for identifiability.

Laws (`LAWS`; `describe_laws()` gives formulas and sources):
- chinchilla: L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, eq 2).
- kaplan: L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan et al. 2020, eq 1.5).
- overtrain: L = E + (a M^eta + b M^-eta) C^-eta, C = 6ND, M = D/N (Gadre et al. 2024, arXiv:2403.08540).
- data_constrained: Chinchilla's form with effective data D' = U_D + U_D R_D* (1 - exp(-R_D/R_D*)),
  R_D = D/U_D - 1 (Muennighoff et al. 2023, arXiv:2305.16264). U_D (unique tokens) comes from a
  `unique_tokens` column, else U_D = D / max(epochs, 1) from an `epochs` column, else U_D = D (no repetition).
- pinned_e: Chinchilla's form with E fixed (`E=`, default 0).

Machinery (_lawfit.py): minimise sum_i Huber_delta(log L_hat - log L_i) (Hoffmann 2022 eq 3, delta 1e-3) by
L-BFGS from every start of the law's grid at once, polish the best with scipy. Bootstrap: `n_boot` resamples of
whole seed groups (noise.seed_groups: plain runs when no config repeats), all refitted in one batch from the
point estimate. A law is *not identified* (`extra["not_identified"]`, also in `flags`) when an exponent is
<= 0, a parameter ends outside the range its grid of starts covers (E only below it: above, the smallest-loss
check applies), the data have fewer distinct (N, D) than the law has
parameters, E is not below the smallest loss, the fit did not converge, or more than 10% of bootstrap refits
fail; each reason comes with its fix.

Public API
- `fit_law(name, table, grid="chinchilla", delta=1e-3, n_boot=0, seed=0, level=0.95, E=0.0, init=None)`
  (table: canonical columns N, D, loss; see table.read_table). params as named by the law; predict(N, D[, U]);
  extra: law, theta, theta_samples, noise (noise.Noise), not_identified [(problem, fix)], n_starts.
- `predict_log(fit, N, D, U=None, samples=False)`: log L_hat at (N, D), per bootstrap draw when samples=True.
- `predict_run(fit, N, D, level=0.95) -> (low, loss, high)`: the loss one new run at (N, D) will show: the
  bootstrap draws' predictions plus run-to-run noise (fit.extra["noise"]: seeds, else residual scatter),
  noise.prediction_interval.
- `optimal_N(fit, C) -> N`: the N of least predicted loss on 6 N D = C (a grid of 2001 log-spaced N over
  1e-4 to 1e4 times sqrt(C / 120), refined by a parabola through the best three), for any law.
- `LAWS`, `describe_laws() -> DataFrame`; `repeats_data(table)`: any run with U_D < D.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import _lawfit
from ._forms import FORMS, pinned
from ._lbfgs import pad_ragged
from .errors import InputError
from ._starts import outside_starts, ranges
from .noise import estimate_noise, prediction_interval, seed_groups
from .powerlaw import as_positive_array
from .result import FitResult
from .table import config_columns

__all__ = ["LAWS", "describe_laws", "fit_law", "predict_log", "predict_run", "optimal_N", "unique_tokens",
           "repeats_data", "MAX_FAILED_FRACTION"]

LAWS = FORMS
MAX_FAILED_FRACTION = 0.10
OUTSIDE_FIX = "the data do not pin it down: add budgets or sizes"


def describe_laws(names=None) -> pd.DataFrame:
    """The registry's laws.

    Parameters
    ----------
    names : sequence of str, optional
        Laws to describe (default: all of LAWS).

    Returns
    -------
    DataFrame
        One row per law: law, title, formula, parameters, source.
    """
    rows = [{"law": f.name, "title": f.title, "formula": f.formula,
             "parameters": ", ".join(f.params(np.zeros(len(f.theta)) + 0.5)), "source": f.source}
            for f in (LAWS[n] for n in (names or LAWS))]
    return pd.DataFrame(rows)


def unique_tokens(table: pd.DataFrame) -> np.ndarray:
    """U_D per run: `unique_tokens`, else D / max(epochs, 1), else D (module docstring)."""
    D = table["D"].to_numpy(float)
    if "unique_tokens" in table:
        return np.minimum(table["unique_tokens"].to_numpy(float), D)
    if "epochs" in table:
        return D / np.maximum(pd.to_numeric(table["epochs"], errors="coerce").fillna(1.0).to_numpy(float), 1.0)
    return D


def repeats_data(table: pd.DataFrame) -> bool:
    """Whether any run saw a token more than once (U_D < D): without that, R_D* carries no information."""
    return bool((unique_tokens(table) < table["D"].to_numpy(float) * (1 - 1e-9)).any())


def _form(name: str, E: float):
    if name not in LAWS:
        raise InputError("law", f"unknown law {name!r}", f"use one of {', '.join(LAWS)} (`scalinglaws laws`)")
    if name == "pinned_e":
        if not np.isfinite(E) or E < 0:
            raise InputError("E", f"{E!r} is not a finite value >= 0", "pass the irreducible loss in nats/token")
        return pinned(E)
    return LAWS[name]


def _inputs(form, N, D, U=None) -> dict:
    X = {"lN": np.log(np.asarray(N, float)), "lD": np.log(np.asarray(D, float))}
    if "lU" in form.inputs:
        X["lU"] = np.log(np.asarray(D if U is None else U, float))
    return X


def _problems(form, fit: dict, params: dict, table: pd.DataFrame, n_failed: int, n_boot: int) -> list:
    """[(problem, fix)] for each reason the law's parameters are not identified by these data."""
    out = []
    for e in form.exponents:
        if not params[e] > 0:
            out.append((f"{e} = {params[e]:.3g} <= 0: a term does not fall with scale",
                        "add runs that vary that input over a wider range"))
    if fit["grid"] is not None:  # judged against the full (chinchilla) grid, whichever grid the starts came from
        out += [(p, OUTSIDE_FIX) for p in outside_starts(form.theta, fit["theta"], form.grids["chinchilla"])]
    cols = config_columns(table) if "lU" in form.inputs else ["N", "D"]  # repetition is an input of this law
    distinct = len(table[cols].drop_duplicates())
    if distinct <= len(form.theta):
        out.append((f"{distinct} distinct ({', '.join(cols)}) for {len(form.theta)} parameters",
                    "add runs at more sizes and budgets, or fit a law with fewer parameters"))
    if form.scale_param and params[form.scale_param] >= table["loss"].min():
        out.append((f"{form.scale_param} = {params[form.scale_param]:.4g} is not below the smallest loss "
                    f"{table['loss'].min():.4g}", "add larger runs (or pin E with the pinned_e law)"))
    if "lU" in form.inputs and not repeats_data(table):
        out.append(("no run repeats data (D <= U_D everywhere): R_D* carries no information",
                    "add runs with epochs > 1 (or a unique_tokens column)"))
    if not fit["converged"]:
        fix = ("refit from the full grid of starts (grid='chinchilla', --grid chinchilla)" if fit["grid"] is not None
               and fit["grid"] is not form.grids["chinchilla"] else "add runs: the objective is too flat to converge")
        out.append((f"not converged (the residuals are {fit['relative_offset']:.2g} from orthogonal to the model, "
                    f"above {_lawfit.RELATIVE_OFFSET_TOL:g})", fix))
    if n_boot and n_failed > MAX_FAILED_FRACTION * n_boot:
        out.append((f"{n_failed} of {n_boot} bootstrap refits failed (> {MAX_FAILED_FRACTION:.0%})",
                    "the parameters move to a degenerate point when runs are resampled: add runs"))
    return out


def _failed(form, theta: np.ndarray, ok: np.ndarray) -> np.ndarray:
    failed = ~ok | ~np.isfinite(theta).all(axis=1)
    for e in form.exponents:  # an exponent is one coordinate of theta in every form
        failed |= ~(theta[:, form.theta.index(e)] > 0)
    return failed


def fit_law(name: str, table: pd.DataFrame, grid: str = "chinchilla", delta: float = 1e-3, n_boot: int = 0,
            seed: int = 0, level: float = 0.95, E: float = 0.0, init=None) -> FitResult:
    """Fit law `name` to `table` (columns N, D, loss) with Huber in log space from its grid of starts.

    Parameters
    ----------
    name : str
        A key of LAWS (`scalinglaws laws`).
    table : DataFrame
        One row per run, canonical columns N, D, loss (and `epochs` or `unique_tokens` for data_constrained).
    grid : {"chinchilla", "small"}
        Grid of starts ("small": a coarse grid for tests).
    delta : float
        Huber threshold in log loss (Hoffmann et al. 2022 use 1e-3).
    n_boot : int
        Bootstrap resamples of whole seed groups (0: no intervals).
    E : float
        The fixed irreducible loss of the pinned_e law.
    init : array, optional
        Start L-BFGS from this theta (another fit's extra["theta"]) instead of the grid: a warm start, as the
        cross-validation refits use.

    Returns
    -------
    FitResult
        params, intervals (percentile, at `level`), flags (one per reason the law is not identified),
        predict(N, D[, U]), extra (module docstring).
    """
    form = _form(name, E)
    for col in ("N", "D", "loss"):
        if col not in table:
            raise InputError(f"column {col!r}", f"needed by the {name} law; columns are {list(table.columns)}",
                             "load the table with scalinglaws.read_table")
    if grid not in form.grids:
        raise InputError("grid", f"unknown grid {grid!r}", f"use one of {', '.join(form.grids)}")
    if len(table) < 2:
        raise InputError("runs", f"need at least 2 runs, got {len(table)}", "add runs")
    try:
        N, D, L = (as_positive_array(table[c].to_numpy(), f"column {c!r}, row") for c in ("N", "D", "loss"))
    except InputError:
        raise
    except ValueError as e:  # not a number at all
        raise InputError("table", f"N, D and loss must be numbers ({e})", "load the table with scalinglaws.read_table, "
                         "which names the row") from None
    U = unique_tokens(table)
    X, logL = _inputs(form, N, D, U), np.log(L)
    fit = _lawfit.fit_theta(form, X, logL, grid=grid, delta=delta, init=init)
    theta = fit["theta"]
    params = form.params(theta)
    residuals = form.log_model(theta[None, :], X)[0][0] - logL
    intervals, theta_samples, n_failed = {}, None, 0
    if n_boot:
        groups = seed_groups(table)
        members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        rng = np.random.default_rng(seed)
        draws = [np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
                 for _ in range(int(n_boot))]
        draws, weights = pad_ragged(draws)  # groups differ in size: weight-0 runs pad the short draws
        Xs = {k: v[draws] for k, v in X.items()}
        thetas, ok = _lawfit.refit_batch(form, Xs, logL[draws], theta, delta, weights)
        failed = _failed(form, thetas, ok)
        n_failed = int(failed.sum())
        theta_samples = thetas[~failed]
        if len(theta_samples):
            samples = pd.DataFrame([form.params(t) for t in theta_samples])
            tail = 50 * (1 - level)
            intervals = {k: (float(np.nanpercentile(samples[k], tail)), float(np.nanpercentile(samples[k], 100 - tail)))
                         for k in samples.columns if np.isfinite(samples[k]).any()}
    problems = _problems(form, fit, params, table, n_failed, int(n_boot))
    noise = estimate_noise(table.assign(C=table["C"] if "C" in table else 6 * N * D), residuals, len(form.theta))

    def predict(N, D, U=None):
        Xn = _inputs(form, np.asarray(N, float), np.asarray(D, float), U)
        return np.exp(form.log_model(theta[None, :], {k: np.atleast_1d(v) for k, v in Xn.items()})[0][0]).reshape(
            np.shape(np.asarray(N, float) * np.asarray(D, float)))

    extra = {"law": form.name, "form": form, "theta": theta, "theta_samples": theta_samples, "n_failed": n_failed,
             "n_boot": int(n_boot), "noise": noise, "not_identified": problems, "n_starts": fit["n_starts"],
             "n_starts_at_best": fit["n_starts_at_best"], "residuals": residuals, "delta": delta,
             "starts_range": ranges(form.theta, form.grids["chinchilla"])}
    return FitResult(name=f"law {form.name}: {form.title}", params=params, predict=predict,
                     data=table[["N", "D", "loss"]].reset_index(drop=True), intervals=intervals, level=level,
                     objective=fit["objective"], flags=tuple(f"not identified: {p}" for p, _ in problems),
                     extra=extra)


def predict_log(fit: FitResult, N, D, U=None, samples: bool = False) -> np.ndarray:
    """log L_hat at (N, D): (n,) from the point estimate, or (S, n) over the bootstrap draws (samples=True)."""
    form = fit.extra["form"]
    X = {k: np.atleast_1d(v) for k, v in _inputs(form, N, D, U).items()}
    theta = fit.extra["theta_samples"] if samples else fit.extra["theta"][None, :]
    if theta is None or not len(theta):
        theta = fit.extra["theta"][None, :]
    v = form.log_model(theta, X)[0]
    return v if samples else v[0]


def predict_run(fit: FitResult, N: float, D: float, level: float = 0.95) -> tuple[float, float, float]:
    """The loss one new run at (N, D) will show: bootstrap draws of the law + run-to-run noise.

    Parameters
    ----------
    fit : FitResult
        A fit_law result (with n_boot > 0 for parameter uncertainty).
    N, D : float
        The new run.
    level : float
        Coverage of the interval.

    Returns
    -------
    tuple of float
        (low, loss, high): the point prediction and its prediction interval (noise.prediction_interval).
    """
    log_pred = predict_log(fit, N, D, samples=True)[:, 0]
    low, _, high = prediction_interval(log_pred, fit.extra["noise"], level=level)
    return low, float(np.exp(predict_log(fit, N, D)[0])), high


def optimal_N(fit: FitResult, C: float) -> float:
    """The N of least predicted loss at fixed compute, D = C / (6 N), for any law of the registry.

    Parameters
    ----------
    fit : FitResult
        A fit_law result.
    C : float
        Training FLOPs (6 N D).

    Returns
    -------
    float
        N_opt: grid of 2001 log-spaced N around sqrt(C / 120), refined by a parabola through the best three.
    """
    lN = np.log(np.sqrt(C / 120.0)) + np.linspace(np.log(1e-4), np.log(1e4), 2001)
    N = np.exp(lN)
    logL = predict_log(fit, N, C / (6 * N))
    i = int(np.clip(np.argmin(logL), 1, len(N) - 2))
    c2, c1, _ = np.polyfit(lN[i - 1:i + 2], logL[i - 1:i + 2], 2)
    return float(np.exp(-c1 / (2 * c2))) if c2 > 0 else float(N[i])
