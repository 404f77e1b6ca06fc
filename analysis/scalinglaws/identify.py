"""Is a fit identified by its data? The rules a report applies before printing a fit as a result.

A fit is *not identified* when any of these holds (each reason comes with its fix):
- an exponent (alpha, beta, alpha_N, alpha_D, alpha_C, eta, a, b) is <= 0, or its bootstrap interval reaches 0:
  the term does not (demonstrably) fall with scale;
- an exponent's bootstrap interval spans more than a factor MAX_EXPONENT_SPREAD = 10 (hi / lo): known only that
  loosely, it predicts nothing at another scale;
- a parameter ended outside the range its grid of starts covers (the fit's own flag says so; _starts.py), or its
  bootstrap interval leaves that range;
- the data hold fewer distinct inputs than the law has parameters, or (a law of N and D) a single compute budget;
- more than 10% of bootstrap refits failed (registry.MAX_FAILED_FRACTION).
Registry fits carry their own reasons (extra["not_identified"], registry.fit_law); the interval rule is added.

Public API
- `not_identified(fit) -> list[(problem, fix)]` (empty: the fit holds).
"""
from __future__ import annotations

from .frontier import budget_groups
from .registry import MAX_FAILED_FRACTION
from .result import FitResult

__all__ = ["not_identified", "EXPONENTS"]

EXPONENTS = ("alpha", "beta", "alpha_N", "alpha_D", "alpha_C", "alpha_S", "alpha_B", "alpha_C_min", "eta", "a", "b")
MAX_EXPONENT_SPREAD = 10.0
INPUTS = ("N", "D", "C", "x")
# Parameters the report reads off each kind of fit (the rest are derived from them).
BOTH_N_AND_D = ("Chinchilla Approach 3", "L(N, D)")
FREE = {"Chinchilla Approach 1": ("a", "k_N"), "Chinchilla Approach 2": ("a", "k_N"),
        "Chinchilla Approach 3": ("E", "A", "B", "alpha", "beta")}


def _of_N_and_D(fit: FitResult) -> bool:
    """Whether `fit` is a law of both N and D (Approach 3, Kaplan eq 1.5, the registry's laws) fitted to a table."""
    form = fit.extra.get("form")
    both = ("lD" in form.inputs) if form is not None else fit.name.startswith(BOTH_N_AND_D)
    return both and fit.data is not None and {"N", "D"} <= set(fit.data.columns) and len(fit.data) > 0


def not_identified(fit: FitResult) -> list[tuple[str, str]]:
    """Reasons `fit` is not identified by its data, each with a fix (rules in the module docstring).

    Parameters
    ----------
    fit : FitResult
        Any fit of the package (a registry fit carries its own reasons).

    Returns
    -------
    list of (str, str)
        (problem, fix) pairs; empty when the fit holds.
    """
    out = []
    form = fit.extra.get("form")
    exponents = form.exponents if form is not None else EXPONENTS  # a registry law's a, b are coefficients
    for name in exponents:  # at the fit's own level, the exponent may be <= 0
        lo = fit.intervals.get(name, (1.0, 1.0))[0]
        if float(fit.params.get(name, 1.0)) > 0 and not lo > 0:
            out.append((f"the {fit.level:.0%} interval of {name} reaches {lo:.3g} <= 0: the data do not show that "
                        "the term falls with scale", "add runs over a wider range of that input, or more seeds"))
        elif name in fit.intervals and lo > 0 and fit.intervals[name][1] > MAX_EXPONENT_SPREAD * lo:
            hi = fit.intervals[name][1]
            out.append((f"the {fit.level:.0%} interval of {name} [{lo:.3g}, {hi:.3g}] spans a factor {hi / lo:.0f} "
                        f"(> {MAX_EXPONENT_SPREAD:g}): the data do not pin the exponent down",
                        "add runs over a wider range of that input, or more seeds"))
    for name, (lo, hi) in fit.extra.get("starts_range", {}).items():  # _starts.ranges: the grid in user units
        low, high = fit.intervals.get(name, (lo, lo))
        if low < lo or high > hi:
            out.append((f"the {fit.level:.0%} interval of {name} [{low:.3g}, {high:.3g}] leaves the range its "
                        f"starts cover [{lo:.3g}, {hi:.3g}]: resampled runs send it where the data do not hold it",
                        "add budgets or sizes (or seeds) so the resampled fits agree"))
    if _of_N_and_D(fit) and len(set(budget_groups(fit.data["N"].to_numpy(float) * fit.data["D"].to_numpy(float)))) < 2:
        out.append(("every run has one compute budget (N x D fixed), so N and D move together and the N and D "
                    "terms cannot be told apart", "add runs at a second budget (4x or more the first)"))
    if "not_identified" in fit.extra:
        return list(fit.extra["not_identified"]) + out
    for name in EXPONENTS:
        value = fit.params.get(name)
        if value is not None and not float(value) > 0:
            out.append((f"{name} = {float(value):.3g} <= 0: the loss does not fall with scale as the law assumes",
                        "add runs over a wider range of that input (or with less noise: more seeds)"))
    for flag in fit.flags:
        if "ends outside the range its starts cover" in flag:
            out.append((flag, "the data do not pin this parameter down: add budgets or sizes"))
        if "one model wins every envelope point" in flag:
            out.append((flag, "train sizes on both sides of the optimum at every budget"))
    free = FREE.get(fit.name.split(" (")[0], tuple(fit.params))
    data = fit.extra.get("envelope") if fit.name.startswith("Chinchilla Approach 1") else fit.data
    if data is not None and len(data):
        cols = [c for c in (("N_opt",) if "N_opt" in data else INPUTS) if c in data]
        distinct = len(data[cols].drop_duplicates()) if cols else len(data)
        if distinct < len(free):
            out.append((f"{distinct} distinct input value(s) for {len(free)} parameters",
                        "add runs at more sizes or budgets, or fit a law with fewer parameters"))
    n_boot, n_failed = fit.extra.get("n_boot"), fit.extra.get("n_failed", 0)
    if n_boot and n_failed > MAX_FAILED_FRACTION * n_boot:
        out.append((f"{n_failed} of {n_boot} bootstrap refits failed (> {MAX_FAILED_FRACTION:.0%})",
                    "resampled runs do not support the fit: add runs (more budgets, sizes or seeds)"))
    return out
