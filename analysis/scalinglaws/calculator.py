"""What a law says about a plan: loss, compute-optimal allocation, critical batch, inference-aware sizing.

All compute is training compute C = 6 N D FLOPs (Chinchilla's convention); inference costs 2 N FLOPs per token.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from .errors import InputError
from .laws import Law, load_B_crit, load_law

B_STAR = 2e8  # tokens, Kaplan et al. 2020 eq 5.3 / design notes section 3
A_B = 0.21

# Famous (N, D) plans: parameters, training tokens.
FAMOUS_PLANS: dict[str, tuple[float, float]] = {
    "GPT-3": (175e9, 300e9),  # Brown et al. 2020
    "Gopher": (280e9, 300e9),  # Rae et al. 2021
    "Chinchilla": (70e9, 1.4e12),  # Hoffmann et al. 2022
    "LLaMA-1 65B": (65e9, 1.4e12),  # Touvron et al. 2023a
    "LLaMA-2 70B": (70e9, 2e12),  # Touvron et al. 2023b
}


def _positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(name, f"must be a positive finite number, got {value!r}", f"pass e.g. {name}=1e9")
    return arr


def _scalar(x):
    return float(x) if np.ndim(x) == 0 else x


def _interval(law: Law, fn) -> tuple[float, float] | None:
    """Interval of fn(params) over the law's uncertainty.

    With bootstrap draws: the percentile interval of fn over the draws at law.level. With only per-parameter
    intervals: min/max of fn over the corners of the interval box (conservative: ignores correlations).
    """
    if law.samples:
        values = np.array([fn(law.core(s)) for s in law.samples], dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return None
        tail = 100 * (1 - law.level) / 2
        lo, hi = np.percentile(values, [tail, 100 - tail])
        return float(lo), float(hi)
    names = [p for p in law.core() if p in law.intervals]
    if not names:
        return None
    values = []
    for corner in itertools.product(*(law.intervals[p] for p in names)):
        params = {**law.core(), **dict(zip(names, corner))}
        values.append(fn(params))
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if values.size else None


def predict(law, N, D):
    """Predicted loss (nats/token) of a model with N parameters trained on D tokens."""
    law = load_law(law)
    return _scalar(law.loss(_positive("N", N), _positive("D", D)))


def predict_interval(law, N: float, D: float) -> tuple[float, float] | None:
    """Uncertainty interval of predict(law, N, D), or None when the law carries no intervals."""
    law = load_law(law)
    N, D = float(_positive("N", N)), float(_positive("D", D))
    return _interval(law, lambda p: float(law.loss(N, D, p)))


@dataclass(frozen=True)
class Allocation:
    """Compute-optimal model at training compute C; `intervals` maps N, D, loss to (low, high) when known."""

    C: float
    N: float
    D: float
    loss: float
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def tokens_per_param(self) -> float:
        return self.D / self.N


def allocate(law, C: float) -> Allocation:
    """N_opt, D_opt = argmin L(N, D) s.t. 6 N D = C (Hoffmann et al. 2022), and the loss there."""
    law = load_law(law)
    C = float(_positive("C", C))
    N, D = law.allocate(C)
    intervals = {}
    for name, fn in {
        "N": lambda p: law.allocate(C, p)[0],
        "D": lambda p: law.allocate(C, p)[1],
        "loss": lambda p: law.loss(*law.allocate(C, p), p),
    }.items():
        iv = _interval(law, lambda p, fn=fn: float(fn(p)))
        if iv is not None:
            intervals[name] = iv
    return Allocation(C=C, N=float(N), D=float(D), loss=float(law.loss(N, D)), intervals=intervals)


def bcrit(loss, law=None):
    """The critical batch size in tokens, B_crit(L) = B* / L^(1/a_B) (Kaplan et al. 2020, eq 5.3).

    law None: Kaplan's published B* = 2e8, a_B = 0.21; else the path of a fitted B_crit(L)
    (laws.save_B_crit: the report's bcrit.json, or `scalinglaws fit RUNS --approach bcrit --save`).
    """
    loss = _positive("loss", loss)
    if law is None:
        return _scalar(B_STAR / loss ** (1.0 / A_B))
    return _scalar(np.asarray(load_B_crit(law).predict(loss), dtype=float))


def bcrit_summary(loss: float, law=None) -> dict:
    """B_crit at `loss` with where it comes from: loss, B_crit_tokens, law (the file, or "Kaplan 2020 eq 5.3"),
    params (B_star, alpha_B), interval (percentiles over the fit's bootstrap draws; None without) and level."""
    loss = float(_positive("loss", loss))
    if law is None:
        return {"loss": loss, "B_crit_tokens": bcrit(loss), "law": "Kaplan 2020 eq 5.3",
                "params": {"B_star": B_STAR, "alpha_B": A_B}, "interval": None, "level": None}
    fit = load_B_crit(law)
    samples, interval = fit.extra["samples"].dropna(), None
    if len(samples):
        values = samples["B_star"].to_numpy(float) / loss ** (1.0 / samples["alpha_B"].to_numpy(float))
        tail = 100 * (1 - fit.level) / 2
        interval = [float(v) for v in np.percentile(values, [tail, 100 - tail])]
    return {"loss": loss, "B_crit_tokens": float(fit.predict(loss)), "law": str(law), "params": dict(fit.params),
            "interval": interval, "level": fit.level}


def compare(law, plans: Mapping[str, tuple[float, float]] | None = None) -> pd.DataFrame:
    """Side-by-side table of named (N, D) plans: tokens/param, 6ND compute, predicted loss, and the
    compute-optimal model and loss at the same compute (NaN when the law has no allocation)."""
    law = load_law(law)
    plans = FAMOUS_PLANS if plans is None else plans
    rows = []
    for name, (N, D) in plans.items():
        N, D = float(_positive(f"plan {name} N", N)), float(_positive(f"plan {name} D", D))
        C = 6 * N * D
        row = {"plan": name, "N": N, "D": D, "tokens_per_param": D / N, "C": C, "loss": float(law.loss(N, D))}
        if law.form == "chinchilla":
            N_opt, D_opt = law.allocate(C)
            loss_opt = float(law.loss(N_opt, D_opt))
        else:
            N_opt = D_opt = loss_opt = float("nan")
        row.update(N_opt=float(N_opt), D_opt=float(D_opt), loss_opt=loss_opt, excess_loss=row["loss"] - loss_opt)
        rows.append(row)
    return pd.DataFrame(rows)


def parse_plan(text: str) -> tuple[str, tuple[float, float]]:
    """'name:N:D' -> (name, (N, D)), e.g. 'mine:1e9:2e10'."""
    parts = text.split(":")
    try:
        if len(parts) != 3 or not parts[0]:
            raise ValueError
        N, D = float(parts[1]), float(parts[2])
    except ValueError:
        raise InputError(f"plan {text!r}", "not of the form name:N:D", "write it like mine:1e9:2e10") from None
    _positive(f"plan {parts[0]} N", N), _positive(f"plan {parts[0]} D", D)
    return parts[0], (N, D)


# --- inference-aware allocation (Sardana et al. 2023, "Beyond Chinchilla-optimal") -------------------------------

def tokens_for_loss(law: Law, N, loss: float):
    """D such that L(N, D) = loss, inf where N alone cannot reach it.

    chinchilla: D = (B / (loss - E - A/N^alpha))^(1/beta); kaplan_nd: D = D_c / (loss^(1/a_D) - (N_c/N)^(a_N/a_D)).
    """
    N = np.asarray(N, dtype=float)
    p = law.core()
    if law.form == "chinchilla":
        gap = loss - p["E"] - p["A"] / N ** p["alpha"]
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gap > 0, (p["B"] / np.where(gap > 0, gap, 1)) ** (1 / p["beta"]), np.inf)
    gap = loss ** (1 / p["a_D"]) - (p["N_c"] / N) ** (p["a_N"] / p["a_D"])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap > 0, p["D_c"] / np.where(gap > 0, gap, 1), np.inf)


def _smallest_N(law: Law, loss: float) -> float:
    """The N below which no amount of data reaches `loss` (D -> inf)."""
    p = law.core()
    if law.form == "chinchilla":
        if loss <= p["E"]:
            raise InputError("loss", f"target {loss} is at or below the law's irreducible loss E = {p['E']:.4g}",
                             "pick a larger target loss")
        return (p["A"] / (loss - p["E"])) ** (1 / p["alpha"])
    return p["N_c"] / loss ** (1 / p["a_N"])


def _min_total_flops(law: Law, loss: float, inference_tokens: float) -> tuple[float, float]:
    """argmin_N 6 N D(N) + 2 N T_inf with D(N) from L(N, D) = loss; a log-grid search refined by bounded Brent."""
    N_min = _smallest_N(law, loss)
    lo, hi = np.log(N_min) + 1e-9, np.log(N_min) + np.log(1e12)

    def total(logN):
        N = np.exp(logN)
        return np.log(6 * N * tokens_for_loss(law, N, loss) + 2 * N * inference_tokens)

    grid = np.linspace(lo, hi, 4001)
    values = total(grid)
    i = int(np.argmin(values))
    if i == len(grid) - 1:
        raise InputError("loss", f"no finite optimum for target {loss} within 1e12 x the smallest feasible N",
                         "check the law's parameters")
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    res = minimize_scalar(total, bounds=(a, b), method="bounded", options={"xatol": 1e-10})
    N = float(np.exp(res.x))
    return N, float(tokens_for_loss(law, N, loss))


@dataclass(frozen=True)
class InferenceAllocation:
    """The model of loss `loss` that minimises training + inference FLOPs, next to the Chinchilla-optimal one."""

    loss: float
    inference_tokens: float
    N: float
    D: float
    train_flops: float
    inference_flops: float
    chinchilla_N: float
    chinchilla_D: float
    chinchilla_total_flops: float

    @property
    def tokens_per_param(self) -> float:
        return self.D / self.N

    @property
    def total_flops(self) -> float:
        return self.train_flops + self.inference_flops

    @property
    def saving(self) -> float:
        """Fraction of total FLOPs saved vs the Chinchilla-optimal model of the same loss."""
        return 1.0 - self.total_flops / self.chinchilla_total_flops


def allocate_inference(law, inference_tokens: float, loss: float | None = None, C: float | None = None) -> InferenceAllocation:
    """Minimise 6 N D + 2 N T_inf subject to L(N, D) = loss (Sardana et al. 2023, arXiv:2401.00448, sec. 2).

    Give the target `loss`, or a training budget `C`, in which case the target is the loss of the
    Chinchilla-optimal model at C. The reference (T_inf = 0) is the cheapest-to-train model of the same loss.
    """
    law = load_law(law)
    if (loss is None) == (C is None):
        raise InputError("loss/C", "give exactly one of a target loss or a compute budget C", "pass loss=... or C=...")
    T = float(np.asarray(inference_tokens, dtype=float))
    if not np.isfinite(T) or T < 0:
        raise InputError("inference_tokens", f"must be >= 0, got {inference_tokens!r}", "pass e.g. 1e12")
    if loss is None:
        loss = allocate(law, C).loss
    loss = float(_positive("loss", loss))
    N, D = _min_total_flops(law, loss, T)
    N0, D0 = _min_total_flops(law, loss, 0.0)
    return InferenceAllocation(
        loss=loss, inference_tokens=T, N=N, D=D, train_flops=6 * N * D, inference_flops=2 * N * T,
        chinchilla_N=N0, chinchilla_D=D0, chinchilla_total_flops=6 * N0 * D0 + 2 * N0 * T,
    )
