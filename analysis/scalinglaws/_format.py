"""The one way numbers become text in reports, figures and the command line."""
from __future__ import annotations

import numpy as np


def fmt(x, digits: int = 4, sci: bool = True) -> str:
    """`x` as short text, with `digits` significant figures.

    sci=True (report tables): floats in [1e-3, 1e5) and 0 as %g (0.4615, 1.411e+05 -> "1.411e+05"), others in
    scientific notation with digits-1 decimals ("2.500e+13"), non-finite floats as "n/a"; integers print whole
    (they are counts). sci=False (legends, the console): any number as %g ("3e+11", "nan"). Anything else: str(x).
    """
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.number)):
        return str(x)
    if not sci:
        return f"{x:.{digits}g}"
    if not isinstance(x, (float, np.floating)):
        return str(x)
    if not np.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}" if 1e-3 <= abs(x) < 1e5 or x == 0 else f"{x:.{digits - 1}e}"
