"""The functional forms of the law registry, each as log L_hat(theta) with its Jacobian (private).

Every form is written as a log-sum-exp of terms, log L_hat = LSE(z_1, ..., z_k), so that one Huber-in-log-space
objective (Hoffmann et al. 2022, eq 3) and one batched L-BFGS fit them all (_lawfit.py). theta is the vector
the optimiser sees (log scales, exponents); `params(theta)` gives the named parameters a user reads.
X is a dict of log inputs, lN = log N, lD = log D (and lU = log U_D, unique tokens); each (n,) or (S, n).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .chinchilla import GRIDS, approach3_params
from .powerlaw import exp_or_inf

LOG6 = float(np.log(6.0))
CHINCHILLA_GRID, SMALL_GRID = GRIDS["chinchilla"], GRIDS["small"]  # Hoffmann 2022 App. D.2; a coarse one


@dataclass(frozen=True)
class Form:
    """One law: its coordinates theta, grids of starts, log model with Jacobian, and named parameters."""

    name: str
    title: str
    formula: str
    source: str
    theta: tuple[str, ...]
    grids: dict  # "chinchilla" / "small" -> {theta name: start values}
    log_model: Callable  # (theta (S, d), X) -> (log L_hat (S, n), d log L_hat / d theta (S, n, d))
    params: Callable  # theta (d,) -> {name: value}
    exponents: tuple[str, ...]  # params that must be > 0 for the law to fall with scale
    inputs: tuple[str, ...] = ("lN", "lD")
    scale_param: str | None = "E"  # the irreducible loss, checked against the smallest loss
    notes: dict = field(default_factory=dict)


def _lse(z: list) -> tuple[np.ndarray, list]:
    """log(sum exp z_i) and the softmax weights p_i = exp(z_i - LSE), for broadcastable arrays z_i."""
    z = np.broadcast_arrays(*z)
    m = np.maximum.reduce(z)
    ex = [np.exp(zi - m) for zi in z]
    total = sum(ex)
    return m + np.log(total), [e / total for e in ex]


def _cols(theta):
    theta = np.atleast_2d(theta)
    return [theta[:, i:i + 1] for i in range(theta.shape[1])]


# ---------------------------------------------------------------- Chinchilla (Hoffmann et al. 2022, eq 2)


def _chinchilla(theta, X):
    a, b, e, alpha, beta = _cols(theta)
    lN, lD = X["lN"], X["lD"]
    v, (p1, p2, p3) = _lse([a - alpha * lN, b - beta * lD, e + 0 * lN])
    return v, np.stack([p1, p2, p3, -lN * p1, -lD * p2], axis=-1)


CHINCHILLA = Form(
    name="chinchilla", title="Chinchilla", formula="L = E + A / N^alpha + B / D^beta",
    source="Hoffmann et al. 2022 (arXiv:2203.15556), eq 2; fitted as in their Approach 3 (eq 3)",
    theta=("a", "b", "e", "alpha", "beta"), grids={"chinchilla": CHINCHILLA_GRID, "small": SMALL_GRID},
    log_model=_chinchilla, params=approach3_params, exponents=("alpha", "beta"))


# ---------------------------------------------------------------- Kaplan et al. 2020, eq 1.5


def _kaplan(theta, X):
    lNc, lDc, aN, aD = _cols(theta)
    z1, z2 = aN / aD * (lNc - X["lN"]), lDc - X["lD"]
    s, (p1, p2) = _lse([z1, z2])
    return aD * s, np.stack([aN * p1 + 0 * z2, aD * p2 + 0 * z1, p1 * (lNc - X["lN"]), s - p1 * z1], axis=-1)


KAPLAN = Form(
    name="kaplan", title="Kaplan L(N, D)", formula="L = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D",
    source="Kaplan et al. 2020 (arXiv:2001.08361), eq 1.5",
    theta=("log_N_c", "log_D_c", "alpha_N", "alpha_D"),
    grids={"chinchilla": {"log_N_c": np.array([10.0, 20.0, 30.0, 40.0]), "log_D_c": np.array([10.0, 20.0, 30.0, 40.0]),
                          "alpha_N": np.array([0.05, 0.1, 0.2, 0.4]), "alpha_D": np.array([0.05, 0.1, 0.2, 0.4])},
           "small": {"log_N_c": np.array([15.0, 30.0]), "log_D_c": np.array([15.0, 30.0]),
                     "alpha_N": np.array([0.05, 0.2]), "alpha_D": np.array([0.05, 0.2])}},
    log_model=_kaplan, exponents=("alpha_N", "alpha_D"), scale_param=None,
    params=lambda t: {"N_c": exp_or_inf(t[0]), "D_c": exp_or_inf(t[1]), "alpha_N": float(t[2]),
                      "alpha_D": float(t[3])})


# ---------------------------------------------------------------- Gadre et al. 2024 (over-training)


def _overtrain(theta, X):
    la, lb, e, eta = _cols(theta)
    lM, lC = X["lD"] - X["lN"], LOG6 + X["lN"] + X["lD"]
    v, (p1, p2, p3) = _lse([la + eta * (lM - lC), lb - eta * (lM + lC), e + 0 * lM])
    return v, np.stack([p1, p2, p3, p1 * (lM - lC) - p2 * (lM + lC)], axis=-1)


OVERTRAIN = Form(
    name="overtrain", title="Over-training (one shared exponent)",
    formula="L = E + (a M^eta + b M^-eta) C^-eta, C = 6 N D, M = D / N",
    source="Gadre et al. 2024 (arXiv:2403.08540), the scaling law in C and M (Chinchilla's form with alpha = beta)",
    theta=("log_a", "log_b", "e", "eta"),
    grids={"chinchilla": {"log_a": np.arange(0, 25.1, 5), "log_b": np.arange(0, 25.1, 5),
                          "e": np.arange(-1, 1.01, 0.5), "eta": np.arange(0.0, 1.01, 0.25)},
           "small": {"log_a": np.array([0.0, 10.0, 20.0]), "log_b": np.array([0.0, 10.0, 20.0]),
                     "e": np.array([-1.0, 0.0, 1.0]), "eta": np.array([0.15, 0.4])}},
    log_model=_overtrain, exponents=("eta",),
    params=lambda t: {"E": exp_or_inf(t[2]), "a": exp_or_inf(t[0]), "b": exp_or_inf(t[1]),
                      "eta": float(t[3])})


# ---------------------------------------------------------------- Muennighoff et al. 2023 (data-constrained)


def _effective_data(lD, lU, lR):
    """log D' and d log D'/d log R_D*, D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)), R_D = D / U_D - 1."""
    R_star = np.exp(np.clip(lR, -30.0, 30.0))
    R_D = np.maximum(np.exp(lD - lU) - 1.0, 0.0)
    x = R_D / R_star
    decay = np.exp(-x)
    lDp = lU + np.log1p(R_star * -np.expm1(-x))
    dlDp = np.exp(lU - lDp) * R_star * (-np.expm1(-x) - x * decay)
    return lDp, dlDp


def _data_constrained(theta, X):
    a, b, e, alpha, beta, lR = _cols(theta)
    lDp, dlDp = _effective_data(X["lD"], X["lU"], lR)
    lN = X["lN"]
    v, (p1, p2, p3) = _lse([a - alpha * lN, b - beta * lDp, e + 0 * lN])
    return v, np.stack([p1, p2, p3, -lN * p1, -lDp * p2, -beta * dlDp * p2], axis=-1)


def _with_lR(grid, values):
    return {**grid, "log_R_star": np.log(np.asarray(values, dtype=float))}


DATA_CONSTRAINED = Form(
    name="data_constrained", title="Data-constrained (repeated tokens)",
    formula="L = E + A / N^alpha + B / D'^beta, D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)), R_D = D / U_D - 1",
    source="Muennighoff et al. 2023 (arXiv:2305.16264), effective data D' (N' = N: parameters are not repeated)",
    theta=("a", "b", "e", "alpha", "beta", "log_R_star"),
    # R_D* starts at their fitted 15.4 only: the other five coordinates already span Chinchilla's grid.
    grids={"chinchilla": _with_lR(CHINCHILLA_GRID, [15.4]), "small": _with_lR(SMALL_GRID, [15.4])},
    log_model=_data_constrained, exponents=("alpha", "beta"), inputs=("lN", "lD", "lU"),
    params=lambda t: {**{k: v for k, v in approach3_params(t[:5]).items() if k not in ("a", "b", "G")},
                      "R_D_star": exp_or_inf(t[5])})


# ---------------------------------------------------------------- Chinchilla with E pinned


def pinned(E: float = 0.0) -> Form:
    """Chinchilla's form with the irreducible loss fixed at `E` (0: no irreducible term), 4 free parameters."""
    if not np.isfinite(E) or E < 0:
        raise ValueError(f"pinned E must be finite and >= 0, got {E}")
    log_E = float(np.log(E)) if E > 0 else None

    def log_model(theta, X):
        a, b, alpha, beta = _cols(theta)
        lN, lD = X["lN"], X["lD"]
        z = [a - alpha * lN, b - beta * lD] + ([log_E + 0 * lN] if log_E is not None else [])
        v, p = _lse(z)
        return v, np.stack([p[0], p[1], -lN * p[0], -lD * p[1]], axis=-1)

    def params(t):
        return approach3_params([t[0], t[1], log_E if log_E is not None else -np.inf, t[2], t[3]])

    grid = {k: v for k, v in CHINCHILLA_GRID.items() if k != "e"}
    small = {k: v for k, v in SMALL_GRID.items() if k != "e"}
    return Form(name="pinned_e", title=f"Chinchilla, E pinned at {E:g}",
                formula=f"L = E_0 + A / N^alpha + B / D^beta, E_0 = {E:g} fixed",
                source="Hoffmann et al. 2022 eq 2 with the irreducible loss fixed (pass E from a larger model "
                       "or an entropy estimate; 0 drops the term)",
                theta=("a", "b", "alpha", "beta"), grids={"chinchilla": grid, "small": small},
                log_model=log_model, params=params, exponents=("alpha", "beta"), scale_param=None,
                notes={"E": E})


FORMS = {f.name: f for f in (CHINCHILLA, KAPLAN, OVERTRAIN, DATA_CONSTRAINED, pinned())}
