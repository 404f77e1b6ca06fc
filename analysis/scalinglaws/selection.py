"""Choose a law by held-out error: fit every law of the registry on small budgets, predict the large ones.

Method: the runs with C <= cutoff (default C_max / 8) are the training set; each law is fitted there
(registry.fit_law) and predicts the held-out runs above the cutoff; error_pct = 100 (predicted - loss) / loss,
per law the MAPE and the worst |error_pct|. When fewer than 2 budgets lie below C_max / 8 (a 3-budget sweep),
the cutoff drops to just below the largest budget, so only that budget is held out, and `cutoff_rule` says
so. The winner is chosen among the identified laws (no reason in registry's not_identified) by the
one-standard-error rule (Hastie, Tibshirani & Friedman 2009, sec 7.10): of the laws whose held-out MAPE is
within one standard error of the least (se = std(|error_pct|) / sqrt(n_held) of the best law), the one with the
fewest parameters, then the least MAPE. The laws are nested (Chinchilla's form holds the over-training law as
alpha = beta), so on data from a simpler law a richer one ties it up to noise; the rule then keeps the simpler.
With >= 4 budgets, leave-one-budget-out cross-validation refits each law without each budget in turn and
predicts it (each refit warm-started from the law's backtest fit, with no grid of starts), giving cv_mape (mean
of the per-budget MAPEs) and cv_worst.

Public API
- `backtest_laws(table, laws=None, cutoff_C=None, grid="chinchilla", cv=True, E=0.0) -> LawBacktest`.
- `LawBacktest` (frozen dataclass): cutoff_C, cutoff_rule, scores (one row per law: law, mape, worst, cv_mape,
  cv_worst, mape_se, n_params, identified, why_not), predictions (held-out runs x laws), winner (law name or None), fits
  (law -> FitResult on the training set), n_fit, n_held, problems (law -> [(problem, fix)], each law
  not identified below the cutoff).
- `default_cutoff(table) -> (cutoff_C, rule)`: the cutoff rule above, for other backtests (the report's).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .frontier import budget_labels
from .errors import InputError
from .registry import LAWS, fit_law, repeats_data, unique_tokens
from .result import FitResult

__all__ = ["LawBacktest", "backtest_laws", "default_cutoff", "BACKTEST_FRACTION", "MIN_CV_BUDGETS", "WINNER_RULE"]

BACKTEST_FRACTION = 8
MIN_CV_BUDGETS = 4
WINNER_RULE = ("of the identified laws within one standard error of the least held-out MAPE, the one with the fewest "
               "parameters (the one-standard-error rule, Hastie et al. 2009 sec 7.10)")


@dataclass(frozen=True)
class LawBacktest:
    """Held-out errors of every law fitted below `cutoff_C`; see the module docstring."""

    cutoff_C: float
    cutoff_rule: str
    scores: pd.DataFrame
    predictions: pd.DataFrame
    winner: str | None
    fits: dict = field(repr=False, default_factory=dict)
    n_fit: int = 0
    n_held: int = 0
    problems: dict = field(repr=False, default_factory=dict)  # law -> [(problem, fix)] when not identified


def _cutoff(table, labels, cutoff_C=None):
    C = table["C"].to_numpy(float)
    budgets = np.unique(labels)
    if len(budgets) < 2:
        raise InputError("budgets", f"the runs span {len(budgets)} compute budget(s): nothing to hold out",
                         "add runs at a second, larger budget (4x or more the first)")
    if cutoff_C is not None:
        return float(cutoff_C), f"C <= {cutoff_C:.3g} FLOPs (given)"
    cutoff = C.max() / BACKTEST_FRACTION
    if len(np.unique(labels[C <= cutoff])) >= 2:
        return float(cutoff), f"C <= C_max / {BACKTEST_FRACTION} = {cutoff:.3g} FLOPs"
    largest = labels == budgets.max()
    cutoff = float(C[~largest].max())
    below = len(np.unique(labels[C <= C.max() / BACKTEST_FRACTION]))
    return cutoff, (f"C <= {cutoff:.3g} FLOPs (the largest budget alone is held out: {below} budget(s) lie below "
                    f"C_max / {BACKTEST_FRACTION}; add a budget >= {BACKTEST_FRACTION}x the second largest to "
                    "backtest over a wider gap)")


def default_cutoff(table: pd.DataFrame) -> tuple[float, str]:
    """(cutoff_C, rule): C_max / 8, or just below the largest budget when that leaves fewer than 2 budgets."""
    return _cutoff(table, budget_labels(table))


def _errors(fit: FitResult, held: pd.DataFrame) -> np.ndarray:
    kw = {"U": unique_tokens(held)} if "lU" in fit.extra["form"].inputs else {}
    predicted = fit.predict(held["N"].to_numpy(float), held["D"].to_numpy(float), **kw)
    return 100 * (np.asarray(predicted) - held["loss"].to_numpy(float)) / held["loss"].to_numpy(float)


def _one_se_winner(scores: pd.DataFrame) -> str | None:
    """The one-standard-error rule of the module docstring, over the identified laws with a MAPE."""
    ok = scores[scores["identified"] & scores["mape"].notna()]
    if not len(ok):
        return None
    best = ok.loc[ok["mape"].idxmin()]
    close = ok[ok["mape"] <= best["mape"] + best["mape_se"]]
    return str(close.sort_values(["n_params", "mape"], kind="stable")["law"].iloc[0])


def _held(table: pd.DataFrame) -> pd.DataFrame:
    """The table with `unique_tokens` filled in, so held-out predictions see the same U_D as the fits."""
    return table.assign(unique_tokens=unique_tokens(table))


def backtest_laws(table: pd.DataFrame, laws=None, cutoff_C: float | None = None, grid: str = "chinchilla",
                  cv: bool = True, E: float = 0.0) -> LawBacktest:
    """Fit each law on C <= cutoff, score it on the runs above; leave-one-budget-out CV with >= 4 budgets.

    Parameters
    ----------
    table : DataFrame
        Canonical columns N, D, C, loss (table.read_table); `budget` when the sweep has one.
    laws : sequence of str, optional
        Registry names (default: every law in LAWS).
    cutoff_C : float, optional
        Fit on C <= cutoff_C (default C_max / 8, lowered when that leaves fewer than 2 budgets).
    grid : {"chinchilla", "small"}
        Grid of starts of the fits below the cutoff.
    cv : bool
        Run leave-one-budget-out cross-validation when there are >= 4 budgets.
    E : float
        The pinned_e law's fixed irreducible loss.

    Returns
    -------
    LawBacktest
        cutoff_C, cutoff_rule, scores (MAPE, worst, CV per law), predictions, winner, fits.
    """
    laws = list(LAWS) if laws is None else list(laws)
    unknown = [n for n in laws if n not in LAWS]
    if unknown:
        raise InputError("laws", f"unknown law(s) {unknown}", f"use names from: {', '.join(LAWS)}")
    table = _held(table)
    labels = budget_labels(table)
    cutoff, rule = _cutoff(table, labels, cutoff_C)
    below = table["C"].to_numpy(float) <= cutoff
    if below.all() or not below.any():
        raise InputError("cutoff_C", f"{rule}: {'nothing held out' if below.all() else 'nothing to fit on'}",
                         "choose a cutoff between the smallest and the largest C")
    if len(np.unique(labels[below])) < 2:  # one budget: N and D move together, no law of both is identified
        tops = np.sort([table["C"][labels == b].max() for b in np.unique(labels)])
        if cutoff_C is None:
            raise InputError("budgets", f"the runs span {len(tops)} compute budgets: a backtest fits on 2 or more "
                             "and holds out a larger one", "add runs at a third, larger budget")
        raise InputError("cutoff_C", f"{rule}: only one budget lies below it, where N and D move together",
                         f"choose a cutoff >= {tops[1]:.3g} and < {tops[-1]:.3g} FLOPs")
    train, held = table[below], table[~below]
    predictions = held[[c for c in ("run_id", "N", "D", "C", "loss") if c in held]].copy()
    rows, fits, problems = [], {}, {}
    for name in laws:
        if "lU" in LAWS[name].inputs and not repeats_data(table):
            problems[name] = [("no run repeats data: R_D* carries no information, and the law reduces to "
                               "chinchilla", "add runs with epochs > 1 (or a unique_tokens column)")]
            rows.append({"law": name, "mape": np.nan, "worst": np.nan, "identified": False,
                         "n_params": len(LAWS[name].theta), "why_not": problems[name][0][0]})
            continue
        try:
            fit = fit_law(name, train, grid=grid, E=E)
        except (InputError, ArithmeticError) as e:
            problems[name] = [(str(e), "add runs below the cutoff (or move it: --cutoff)")]
            rows.append({"law": name, "mape": np.nan, "worst": np.nan, "identified": False,
                         "n_params": len(LAWS[name].theta), "why_not": str(e)})
            continue
        if fit.extra["not_identified"]:
            problems[name] = list(fit.extra["not_identified"])
        fits[name] = fit
        err = _errors(fit, held)
        predictions[f"{name} error %"] = err
        reasons = fit.extra["not_identified"]
        rows.append({"law": name, "mape": float(np.mean(np.abs(err))), "worst": float(np.max(np.abs(err))),
                     "mape_se": float(np.std(np.abs(err), ddof=1) / np.sqrt(len(err))) if len(err) > 1 else 0.0,
                     "n_params": len(fit.extra["form"].theta), "identified": not reasons,
                     "why_not": "; ".join(p for p, _ in reasons)})
    scores = pd.DataFrame(rows)
    scores["cv_mape"], scores["cv_worst"] = np.nan, np.nan
    budgets = np.unique(labels)
    if cv and len(budgets) >= MIN_CV_BUDGETS:
        for i, name in enumerate(scores["law"]):
            if name not in fits:
                continue
            per_budget = []
            for b in budgets:
                out = labels == b
                try:
                    fit = fit_law(name, table[~out], E=E, init=fits[name].extra["theta"])
                except (InputError, ArithmeticError):
                    per_budget = []
                    break
                per_budget.append(np.abs(_errors(fit, table[out])))
            if per_budget:
                scores.loc[i, "cv_mape"] = float(np.mean([e.mean() for e in per_budget]))
                scores.loc[i, "cv_worst"] = float(max(e.max() for e in per_budget))
    winner = _one_se_winner(scores)
    scores = scores.reindex(columns=["law", "mape", "worst", "cv_mape", "cv_worst", "mape_se", "n_params",
                                     "identified", "why_not"])
    return LawBacktest(cutoff_C=cutoff, cutoff_rule=rule, scores=scores, predictions=predictions, winner=winner,
                       fits=fits, n_fit=int(below.sum()), n_held=int((~below).sum()), problems=problems)
