"""Kaplan et al. 2020's L(N, S_min) on learning curves (eq 1.6) and the compute-efficient frontier it implies (sec 6).

Every eval point of every run is one observation (N, S, L) at batch size B tokens per step. The steps the run
would have needed at a very large batch are S_min = S / (1 + B_crit(L)/B) (eq 5.4), with B_crit(L)
= B* / L^(1/alpha_B) fitted from a batch-size sweep (`critical_batch.fit_critical_batch`) or, when there is
none, Kaplan's published B* = 2e8 tokens, alpha_B = 0.21 (the result says which). Then
L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S is fitted (`kaplan.fit_L_NS`).

The compute-efficient frontier: minimising L over N at fixed C_min = 6 N B_crit(L) S_min (the compute of a run at
B << B_crit, eq 5.5), the Lagrange condition gives alpha_N (N_c/N)^alpha_N = alpha_S (S_c/S_min)^alpha_S at
the optimum, so that exactly

    N_opt = N_c (C_min / K)^(alpha_C_min / alpha_N),  alpha_C_min = 1 / (1/alpha_S + 1/alpha_B + 1/alpha_N),
    K = 6 N_c S_c B* (alpha_N/alpha_S)^(-1/alpha_S) (1 + alpha_N/alpha_S)^(-1/alpha_B)

(Kaplan et al. 2020, eq 1.8, sec 6.1 and Appendix B; published N_opt ~ C_min^0.73, eq 1.7).

- `fit_L_NS_curves(curves, runs, n_col, B_crit, n_boot)`: eq 1.6 on learning curves, with bootstrap intervals over
  whole curves (paired with the B_crit fit's own bootstrap draws when it has them).
- `kaplan_frontier(fit)`: the frontier of an eq 1.6 fit: exponent a = alpha_C_min / alpha_N, N_opt(C_min),
  with intervals from the fit's bootstrap draws.
- `frontier_point(params, C_min)`: N_opt, S_min, B_crit and L at the optimum for given parameters.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import kaplan
from .critical_batch import ALPHA_B, B_STAR, _after_warmup, _tokens_per_step
from .errors import InputError
from .powerlaw import predictor
from .result import FitResult

__all__ = ["fit_L_NS_curves", "kaplan_frontier", "frontier_point", "PUBLISHED_FRONTIER_EXPONENT"]

PUBLISHED_FRONTIER_EXPONENT = 0.73  # Kaplan et al. 2020, eq 1.7 / sec 6.1: N_opt ~ C_min^0.73
N_COLUMNS = {"n_params_nonembed": "non-embedding N", "n_params": "total N"}


def _observations(curves: pd.DataFrame, runs: pd.DataFrame, n_col: str) -> pd.DataFrame:
    """One row per usable eval point: run_id, N, B (tokens per step), S (step), L (val_loss)."""
    for col in ("run_id", "step", "val_loss"):
        if col not in curves:
            raise InputError(f"column {col!r}", "missing from the learning curves", "pass the runs' metrics.parquet")
    if n_col not in runs:
        raise InputError(f"column {n_col!r}", "missing from the runs table", "pass the runs' summaries")
    runs = runs[~runs["role"].eq("cooldown")] if "role" in runs else runs  # a cooldown's curve starts mid-run
    info = pd.DataFrame({"run_id": runs["run_id"].to_numpy(), "N": pd.to_numeric(runs[n_col], errors="coerce"),
                         "B": _tokens_per_step(runs).to_numpy()}).dropna()
    info = info[(info["N"] > 0) & (info["B"] > 0)]
    frames = []
    for run_id, g in curves[curves["run_id"].isin(info["run_id"])].groupby("run_id", sort=False):
        g = _after_warmup(g.dropna(subset=["step", "val_loss"]).sort_values("step"))
        frames.append(g.loc[(g["step"] > 0) & (g["val_loss"] > 0), ["run_id", "step", "val_loss"]])
    if not frames:
        raise InputError("curves", "no learning curve of a run with batch_size, n_ctx and N", "pass a runs directory")
    obs = pd.concat(frames, ignore_index=True).merge(info, on="run_id")
    return obs.rename(columns={"step": "S", "val_loss": "L"})[["run_id", "N", "B", "S", "L"]]


def _s_min(obs: pd.DataFrame, B_star: float, alpha_B: float) -> np.ndarray:
    """S_min = S / (1 + B_crit(L)/B), B_crit(L) = B* / L^(1/alpha_B) (Kaplan et al. 2020, eq 5.4 and 5.3)."""
    L = obs["L"].to_numpy(float)
    return obs["S"].to_numpy(float) / (1.0 + B_star / L ** (1.0 / alpha_B) / obs["B"].to_numpy(float))


def fit_L_NS_curves(curves: pd.DataFrame, runs: pd.DataFrame, n_col: str = "n_params_nonembed", B_crit=None,
                    n_boot: int = 0, seed: int = 0, level: float = 0.95) -> FitResult:
    """Kaplan's L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S (Kaplan et al. 2020, eq 1.6) on learning curves.

    Every eval point after the LR warmup (the peak of `lr`, when recorded) of every run but WSD cooldowns is one
    observation; S_min = S / (1 + B_crit(L)/B) with B = batch_size x n_ctx (eq 5.4). The bootstrap resamples
    whole learning curves `n_boot` times and refits from the point estimate; when `B_crit` carries bootstrap
    draws (extra["samples"]), draw i also uses B_crit draw i, so the intervals include B_crit's uncertainty.

    Parameters
    ----------
    curves : DataFrame
        Eval points: run_id, step, val_loss (lr optional).
    runs : DataFrame
        One row per run: run_id, batch_size (sequences), n_ctx and the `n_col` column (role optional).
    n_col : str
        The parameter count: "n_params_nonembed" (Kaplan's N) or "n_params" (every parameter).
    B_crit : FitResult, optional
        A B_crit(L) fit (params B_star, alpha_B: `critical_batch.fit_critical_batch` or `load_B_crit`); default
        Kaplan's published B* = 2e8 tokens, alpha_B = 0.21.
    n_boot, seed, level
        Bootstrap resamples (0: none), their seed and the intervals' coverage.

    Returns
    -------
    FitResult
        params N_c, alpha_N, S_c, alpha_S; predict(N, S_min); intervals; data: the observations (run_id, N, B,
        S, S_min, loss); extra: n_col, B_crit_source ("fitted" or "published"), B_star, alpha_B, samples (one
        row per resample: the four params and the B_star, alpha_B it used), n_boot, n_failed, not_identified
        [(problem, fix)]: fewer than 3 sizes, an exponent on its bound 0 (or its interval reaching it), more than
        10% failed refits.
    """
    if n_col not in N_COLUMNS:
        raise InputError("n_col", f"unknown parameter count {n_col!r}", f"use one of {', '.join(N_COLUMNS)}")
    obs = _observations(curves, runs, n_col)
    n_sizes = obs["N"].nunique()
    if n_sizes < 2:
        raise InputError(n_col, f"the learning curves are of {n_sizes} model size", "add runs of 2 or more sizes "
                         "(3 or more to test the N term)")
    if B_crit is None:
        B_star, alpha_B, source, bsamples = B_STAR, ALPHA_B, "published", None
    else:
        B_star, alpha_B, source = float(B_crit.params["B_star"]), float(B_crit.params["alpha_B"]), "fitted"
        bsamples = B_crit.extra.get("samples")
        bsamples = bsamples.dropna() if bsamples is not None and len(bsamples.dropna()) else None
    S_min = _s_min(obs, B_star, alpha_B)
    point = kaplan.fit_L_NS(obs["N"], S_min, obs["L"])
    flags = list(point.flags)
    if n_sizes < 3:
        flags.append(f"only {n_sizes} model sizes: alpha_N has no spare degree of freedom")
    samples, n_failed, intervals = None, 0, {}
    if n_boot:
        rng = np.random.default_rng(seed)
        run_ids = obs["run_id"].unique()
        rows = {r: np.flatnonzero(obs["run_id"].to_numpy() == r) for r in run_ids}
        out = []
        for i in range(int(n_boot)):
            pick = np.concatenate([rows[r] for r in run_ids[rng.integers(0, len(run_ids), len(run_ids))]])
            bs, ab = (B_star, alpha_B) if bsamples is None else (
                float(bsamples["B_star"].iloc[i % len(bsamples)]), float(bsamples["alpha_B"].iloc[i % len(bsamples)]))
            sub = obs.iloc[pick]
            try:
                if sub["N"].nunique() < 2:
                    raise InputError("N", "one size drawn", "")
                fit = kaplan.fit_L_NS(sub["N"], _s_min(sub, bs, ab), sub["L"], init=point.params)
                out.append({**fit.params, "B_star": bs, "alpha_B": ab})
            except (InputError, ValueError, np.linalg.LinAlgError):
                out.append({"B_star": bs, "alpha_B": ab})
        samples = pd.DataFrame(out, columns=[*point.params, "B_star", "alpha_B"])
        n_failed = int(samples["alpha_N"].isna().sum())
        tail = 50 * (1 - level)
        for k in point.params:
            v = samples[k].to_numpy(float)
            v = v[np.isfinite(v)]
            if len(v):
                intervals[k] = (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)))
        if n_failed:
            flags.append(f"bootstrap: {n_failed} of {n_boot} refits failed")
    problems = _problems(point.params, intervals, n_sizes, n_failed, int(n_boot), level)
    data = obs.assign(S_min=S_min, D=obs["S"] * obs["B"]).rename(columns={"L": "loss"})
    return FitResult(name=f"L(N, S_min) Kaplan eq 1.6 ({N_COLUMNS[n_col]})", params=point.params,
                     predict=point.predict, data=data, intervals=intervals, level=level, objective=point.objective,
                     flags=tuple(flags),
                     extra={"n_col": n_col, "B_crit_source": source, "B_star": B_star, "alpha_B": alpha_B,
                            "samples": samples, "n_boot": int(n_boot), "n_failed": n_failed,
                            "not_identified": problems})


ZERO = 1e-6  # an exponent below this sits on its bound 0 (least squares keeps exponents >= 0)


def _problems(params, intervals, n_sizes, n_failed, n_boot, level) -> list[tuple[str, str]]:
    """[(problem, fix)]: why the eq 1.6 fit is not identified by its data (identify.not_identified reads them)."""
    out = []
    if n_sizes < 3:
        out.append((f"{n_sizes} model sizes for the N term's 2 parameters (N_c, alpha_N)",
                    "train 3 or more sizes"))
    for name in ("alpha_N", "alpha_S"):
        lo = intervals.get(name, (params[name], params[name]))[0]
        if not params[name] > ZERO or not lo > ZERO:
            out.append((f"{name} = {params[name]:.3g}, its {level:.0%} interval reaching {lo:.3g}: on its bound 0",
                        "add sizes (for alpha_N) or longer learning curves (for alpha_S)"))
    if n_boot and n_failed > 0.1 * n_boot:
        out.append((f"{n_failed} of {n_boot} bootstrap refits failed (> 10%)", "add runs"))
    return out


def _frontier_constants(p: dict):
    aN, aS, aB = p["alpha_N"], p["alpha_S"], p["alpha_B"]
    q = 1.0 / aN + 1.0 / aS + 1.0 / aB
    log_K = (np.log(6 * p["N_c"] * p["S_c"] * p["B_star"]) - np.log(aN / aS) / aS - np.log1p(aN / aS) / aB)
    return q, log_K


def frontier_point(params, C_min) -> dict:
    """The compute-efficient model at C_min FLOPs under eq 1.6 and eq 5.3 (Kaplan et al. 2020, sec 6.1).

    Parameters
    ----------
    params : mapping
        N_c, alpha_N, S_c, alpha_S (eq 1.6) and B_star, alpha_B (eq 5.3).
    C_min : float or array_like
        Compute of training at B << B_crit, FLOPs (C_min = 6 N B_crit S_min).

    Returns
    -------
    dict
        N (N_opt), S_min, B_crit (tokens), L (nats/token) at the optimum, and a = alpha_C_min / alpha_N,
        alpha_C_min = 1 / (1/alpha_S + 1/alpha_B + 1/alpha_N) (module docstring).
    """
    p = {k: float(params[k]) for k in ("N_c", "alpha_N", "S_c", "alpha_S", "B_star", "alpha_B")}
    q, log_K = _frontier_constants(p)
    x = np.exp(-(np.log(np.asarray(C_min, float)) - log_K) / q)  # the N term (N_c/N)^alpha_N at the optimum
    ratio = p["alpha_N"] / p["alpha_S"]
    L = x * (1 + ratio)
    return {"N": p["N_c"] * x ** (-1 / p["alpha_N"]), "S_min": p["S_c"] * (ratio * x) ** (-1 / p["alpha_S"]),
            "B_crit": p["B_star"] * L ** (-1 / p["alpha_B"]), "L": L, "a": 1.0 / (p["alpha_N"] * q),
            "alpha_C_min": 1.0 / q}


def kaplan_frontier(fit: FitResult) -> FitResult:
    """Kaplan's compute-efficient frontier N_opt ~ C_min^a of an eq 1.6 fit (Kaplan et al. 2020, sec 6.1, eq 1.7).

    a = alpha_C_min / alpha_N with alpha_C_min = 1 / (1/alpha_S + 1/alpha_B + 1/alpha_N); N_opt = k C_min^a with
    k = N_c K^(-a) (module docstring). Intervals: percentiles of a, alpha_C_min and k over the fit's bootstrap
    draws (each with the B_crit draw it used).

    Parameters
    ----------
    fit : FitResult
        A `fit_L_NS_curves` result.

    Returns
    -------
    FitResult
        params a, alpha_C_min, k; predict(C_min) -> N_opt; extra: law (the parameters used), n_col, B_crit_source,
        not_identified (the eq 1.6 fit's). Flags: the eq 1.6 fit's. InputError for an exponent <= 0.
    """
    p = {**fit.params, "B_star": fit.extra["B_star"], "alpha_B": fit.extra["alpha_B"]}
    flags = list(fit.flags)
    for k in ("alpha_N", "alpha_S", "alpha_B"):
        if not p[k] > 0:
            raise InputError(k, f"= {p[k]:.3g} <= 0: no compute-efficient frontier", "fit eq 1.6 on more sizes and "
                             "steps")

    def derived(params):
        with np.errstate(over="ignore", invalid="ignore"):  # degenerate bootstrap draws give inf, dropped below
            q, log_K = _frontier_constants(params)
            a = 1.0 / (params["alpha_N"] * q)
            return {"a": a, "alpha_C_min": 1.0 / q, "k": float(params["N_c"] * np.exp(-a * log_K))}

    params = derived(p)
    intervals = {}
    samples = fit.extra.get("samples")
    if samples is not None and len(samples.dropna()):
        rows = [derived(r) for r in samples.dropna().to_dict("records")
                if all(r[k] > 0 for k in ("alpha_N", "alpha_S", "alpha_B"))]
        if rows:
            d = pd.DataFrame(rows)
            tail = 50 * (1 - fit.level)
            for k in d:
                v = d[k].to_numpy(float)
                v = v[np.isfinite(v)]
                if len(v):
                    intervals[k] = (float(np.percentile(v, tail)), float(np.percentile(v, 100 - tail)))
    a, k = params["a"], params["k"]
    return FitResult(name=f"Kaplan compute-efficient frontier ({N_COLUMNS.get(fit.extra.get('n_col'), 'N')})",
                     params=params, predict=predictor(lambda c: k * c ** a, ["C_min"]), data=fit.data,
                     intervals=intervals, level=fit.level, flags=tuple(flags),
                     extra={"n_col": fit.extra.get("n_col"), "B_crit_source": fit.extra.get("B_crit_source"),
                            "law": p, "n_boot": fit.extra.get("n_boot"), "n_failed": fit.extra.get("n_failed", 0),
                            "not_identified": list(fit.extra.get("not_identified", []))})
