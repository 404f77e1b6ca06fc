"""Where a fit ended against its grid of starts (private): the one rule the registry and Approach 3 apply.

A coordinate that ends outside the range its grid of starts covers has run to where the data do not hold it
(Hoffmann et al. 2022 App. D.2 chose the grid to bracket plausible values). The irreducible loss is the
exception above its range: E above exp(max e) is pinned by the data as long as it stays below the smallest
loss, which the fits check on their own, so only E below its range counts. Messages name the parameter the
user reads (E = exp(e), A = exp(a), ...), not the optimiser's coordinate. `ranges` gives the same ranges in the
user's units, so identify.py can hold a bootstrap interval to them (an interval that leaves them shows that
resampled runs send the parameter where the data do not hold it).
"""
from __future__ import annotations

import numpy as np

from .powerlaw import exp_or_inf

# theta coordinates that are the log of a named parameter
LOG_OF = {"a": "A", "b": "B", "e": "E", "log_a": "a", "log_b": "b", "log_N_c": "N_c", "log_D_c": "D_c",
          "log_R_star": "R_D_star"}
IRREDUCIBLE = "e"  # log E


def ranges(names, grid: dict) -> dict:
    """{parameter: (low, high)} that its starts cover, in the user's units (E: no upper end, as above)."""
    out = {}
    for name in names:
        values = np.asarray(grid[name], dtype=float)
        if len(values) < 2:
            continue
        lo, hi = values.min(), (np.inf if name == IRREDUCIBLE else values.max())
        out[LOG_OF.get(name, name)] = ((exp_or_inf(lo), exp_or_inf(hi) if np.isfinite(hi) else np.inf)
                                       if name in LOG_OF else (float(lo), float(hi)))
    return out


def outside_starts(names, theta, grid: dict) -> list[str]:
    """One message per coordinate of `theta` (named `names`) outside the range of its values in `grid`.

    Returns e.g. ['E = 3e-08 ends outside the range its starts cover [0.368, 2.72]'].
    """
    out = []
    for name, value in zip(names, theta):
        values = np.asarray(grid[name], dtype=float)
        lo, hi = values.min(), values.max()
        if len(values) < 2 or lo <= value <= (np.inf if name == IRREDUCIBLE else hi):
            continue
        if name in LOG_OF:
            out.append(f"{LOG_OF[name]} = {exp_or_inf(value):.3g} ends outside the range its starts cover "
                       f"[{exp_or_inf(lo):.3g}, {exp_or_inf(hi):.3g}]")
        else:
            out.append(f"{name} = {value:.3g} ends outside the range its starts cover [{lo:g}, {hi:g}]")
    return out
