"""Kaplan et al. 2020 (arXiv:2001.08361) scaling laws, fitted by least squares on log L.

L(N) (eq 1.1), L(D) (eq 1.2), L(C_min) (eq 1.3), the joint L(N, D) (eq 1.5) and L(N, S_min) (eq 1.6), and the
critical batch size (eq 1.4). Every fit returns a FitResult and takes `init=` (a params dict to start from, as
the bootstrap does).
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, nnls

from .errors import InputError
from .powerlaw import as_positive_array, exp_or_inf, power_law, predictor
from .result import FitResult
from .table import check_enough


def fit_L_N(N, L, offset: bool = False, init=None) -> FitResult:
    """Kaplan's L(N) = (N_c/N)^alpha_N (+ L_inf): loss against parameters (Kaplan et al. 2020, eq 1.1).

    Least squares on log L: without offset the exact log-log regression; with offset, starts from log-log fits of
    L - L_inf for several L_inf < min(L), refined by scipy.optimize.least_squares (alpha_N >= 0, L_inf >= 0)
    (`powerlaw.power_law`).

    Parameters
    ----------
    N, L : array_like
        Parameters (Kaplan counts non-embedding ones) and loss (nats/token) per run.
    offset : bool
        Add an irreducible loss L_inf.
    init : mapping, optional
        Start the offset fit from these params (N_c, alpha_N, L_inf), as the bootstrap does.

    Returns
    -------
    FitResult
        params N_c, alpha_N (, L_inf); predict(N). Flags: alpha_N or L_inf on a bound, L_inf >= min(L), no
        convergence, no spare degree of freedom.
    """
    return power_law(N, L, offset, "L(N)", init, var="N", names=("N_c", "alpha_N", "L_inf"))


def fit_L_D(D, L, offset: bool = False, init=None) -> FitResult:
    """Kaplan's L(D) = (D_c/D)^alpha_D (+ L_inf): loss against training tokens (Kaplan et al. 2020, eq 1.2).

    Fitted as `fit_L_N` is.

    Parameters
    ----------
    D, L : array_like
        Training tokens and loss (nats/token) per run.
    offset, init
        As in `fit_L_N` (init: D_c, alpha_D, L_inf).

    Returns
    -------
    FitResult
        params D_c, alpha_D (, L_inf); predict(D).
    """
    return power_law(D, L, offset, "L(D)", init, var="D", names=("D_c", "alpha_D", "L_inf"))


def fit_L_C(C, L, offset: bool = False, init=None) -> FitResult:
    """Kaplan's L(C_min) = (C_c/C_min)^alpha_C (+ L_inf): loss against compute (Kaplan et al. 2020, eq 1.3).

    Fitted as `fit_L_N` is. Pass C_min (the compute of a compute-efficient run), or C when the batch is well
    below B_crit; the report fits the best loss of each isoFLOP budget.

    Parameters
    ----------
    C, L : array_like
        Training FLOPs and loss (nats/token) per run.
    offset, init
        As in `fit_L_N` (init: C_c, alpha_C, L_inf).

    Returns
    -------
    FitResult
        params C_c, alpha_C (, L_inf); predict(C).
    """
    return power_law(C, L, offset, "L(C)", init, var="C", names=("C_c", "alpha_C", "L_inf"))


def b_crit(L, B_star: float = 2e8, alpha_B: float = 0.21):
    """The critical batch size B_crit(L) = B* / L^(1/alpha_B) (Kaplan et al. 2020, eq 1.4).

    Parameters
    ----------
    L : float or array_like
        Loss (nats/token).
    B_star, alpha_B : float
        Kaplan's fitted constants: B* = 2e8 tokens, alpha_B = 0.21.

    Returns
    -------
    ndarray or float
        B_crit in tokens.
    """
    return B_star / np.asarray(L, dtype=float) ** (1.0 / alpha_B)


def _two_term_fit(x1, x2, L, names, exponent_grid, init, model, linearise):
    """Fit a two-term law in log space: grid of exponents -> NNLS for the scales -> least_squares refinement.

    `model(theta, lx1, lx2)` returns log L_hat for theta = (log s1, log s2, e1, e2); `linearise(e1, e2, x1, x2, L)`
    returns (target, basis columns, function mapping NNLS coefficients to (log s1, log s2)).
    """
    lx1, lx2, lL = np.log(x1), np.log(x2), np.log(L)

    def residual(theta):
        return model(theta, lx1, lx2) - lL

    if init is not None:
        starts = [np.array([np.log(init[names[0]]), np.log(init[names[1]]), init[names[2]], init[names[3]]])]
    else:
        scored = []
        for e1, e2 in itertools.product(*exponent_grid):
            target, basis, to_logs = linearise(e1, e2, x1, x2, L)
            scale = basis.max(axis=0)
            coef, _ = nnls(basis / scale, target)
            coef = coef / scale
            if np.any(coef <= 0):
                continue
            theta = np.array([*to_logs(coef), e1, e2])
            scored.append((float(np.sum(residual(theta) ** 2)), theta))
        if not scored:
            raise InputError("L", "no positive two-term fit at any start", "check that L falls with both inputs")
        starts = [t for _, t in sorted(scored, key=lambda s: s[0])[:4]]
    best = None
    for s in starts:
        with np.errstate(invalid="ignore", over="ignore"):  # a start that overflows just scores worse
            fit = least_squares(residual, s, bounds=([-np.inf, -np.inf, 0, 0], np.inf), x_scale="jac")
        if best is None or fit.cost < best.cost:
            best = fit
    flags = []
    if best.status <= 0:
        flags.append(f"not converged: {best.message}")
    for name, value in zip(names[2:], best.x[2:]):
        if value <= 1e-8:
            flags.append(f"{name} on its lower bound 0")
    if len(L) <= 5:
        flags.append(f"only {len(L)} points for 4 parameters")
    return best, flags


def fit_L_ND(N, D, L, init=None) -> FitResult:
    """Kaplan's joint law L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan et al. 2020, eq 1.5).

    Starts: for each (alpha_N, alpha_D) on a 5 x 5 grid, L^(1/alpha_D) is linear in (N_c^(alpha_N/alpha_D), D_c)
    and is solved by non-negative least squares; the 4 best starts are refined by least squares on log L
    (scipy.optimize.least_squares, exponents >= 0).

    Parameters
    ----------
    N, D, L : array_like
        Parameters, training tokens and loss per run; at least 5 runs.
    init : mapping, optional
        Start from these params (N_c, D_c, alpha_N, alpha_D) instead of the grid.

    Returns
    -------
    FitResult
        params N_c, D_c, alpha_N, alpha_D; predict(N, D). Flags an exponent on its bound, no convergence, and
        5 or fewer runs.
    """
    N, D, L = as_positive_array(N, "N"), as_positive_array(D, "D"), as_positive_array(L, "loss")
    check_enough(len(L), 5, "points for fit_L_ND (4 parameters)")

    def model(theta, lN, lD):
        log_Nc, log_Dc, aN, aD = theta
        return aD * np.logaddexp(aN / aD * (log_Nc - lN), log_Dc - lD)

    def linearise(aN, aD, N, D, L):
        # L^(1/aD) = Nc^(aN/aD) * N^(-aN/aD) + Dc * D^-1
        basis = np.column_stack([N ** (-aN / aD), 1.0 / D])
        return L ** (1.0 / aD), basis, lambda c: (np.log(c[0]) * aD / aN, np.log(c[1]))

    grid = ([0.03, 0.06, 0.1, 0.2, 0.4], [0.03, 0.06, 0.1, 0.2, 0.4])
    names = ("N_c", "D_c", "alpha_N", "alpha_D")
    best, flags = _two_term_fit(N, D, L, names, grid, init, model, linearise)
    theta = best.x.copy()
    params = {"N_c": exp_or_inf(theta[0]), "D_c": exp_or_inf(theta[1]),
              "alpha_N": float(theta[2]), "alpha_D": float(theta[3])}
    predict = predictor(lambda n, d: np.exp(model(theta, np.log(n), np.log(d))), ["N", "D"])
    return FitResult(name="L(N, D) Kaplan eq 1.5", params=params, predict=predict,
                     data=pd.DataFrame({"N": N, "D": D, "loss": L}), objective=float(2 * best.cost),
                     flags=tuple(flags))


def fit_L_NS(N, S, L, B=None, B_crit=None, init=None) -> FitResult:
    """Kaplan's L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S (Kaplan et al. 2020, eq 1.6).

    S_min = S / (1 + B_crit/B) (eq 5.4) when the batch size B is given; else S is taken as S_min. Fitted like
    `fit_L_ND` (NNLS starts on a grid of exponents, then least squares on log L).

    Parameters
    ----------
    N, S, L : array_like
        Parameters, optimizer steps and loss per run; at least 5 runs.
    B : float or array_like, optional
        Batch size in tokens.
    B_crit : float or array_like, optional
        Critical batch size in tokens; default `b_crit(L)`.
    init : mapping, optional
        Start from these params (N_c, S_c, alpha_N, alpha_S).

    Returns
    -------
    FitResult
        params N_c, alpha_N, S_c, alpha_S; predict(N, S) with S meaning S_min.
    """
    N, S, L = as_positive_array(N, "N"), as_positive_array(S, "S"), as_positive_array(L, "loss")
    check_enough(len(L), 5, "points for fit_L_NS (4 parameters)")
    S_min = S
    if B is not None:
        B = as_positive_array(np.broadcast_to(B, S.shape), "B")
        B_crit = b_crit(L) if B_crit is None else as_positive_array(np.broadcast_to(B_crit, S.shape), "B_crit")
        S_min = S / (1.0 + B_crit / B)

    def model(theta, lN, lS):
        log_Nc, log_Sc, aN, aS = theta
        return np.logaddexp(aN * (log_Nc - lN), aS * (log_Sc - lS))

    def linearise(aN, aS, N, S, L):
        # L = Nc^aN * N^-aN + Sc^aS * S^-aS
        return L, np.column_stack([N ** -aN, S ** -aS]), lambda c: (np.log(c[0]) / aN, np.log(c[1]) / aS)

    grid = ([0.03, 0.06, 0.1, 0.2, 0.4], [0.1, 0.3, 0.5, 0.8, 1.2])
    names = ("N_c", "S_c", "alpha_N", "alpha_S")
    best, flags = _two_term_fit(N, S_min, L, names, grid, init, model, linearise)
    theta = best.x.copy()
    params = {"N_c": exp_or_inf(theta[0]), "alpha_N": float(theta[2]),
              "S_c": exp_or_inf(theta[1]), "alpha_S": float(theta[3])}
    predict = predictor(lambda n, s: np.exp(model(theta, np.log(n), np.log(s))), ["N", "S"])
    return FitResult(name="L(N, S) Kaplan eq 1.6", params=params, predict=predict,
                     data=pd.DataFrame({"N": N, "S": S, "S_min": S_min, "loss": L}),
                     objective=float(2 * best.cost), flags=tuple(flags))
