"""Numbers and durations for people: `si(1.5e6) == "1.5M"`, `duration(5400) == "90.0m"`."""
from __future__ import annotations

SI_PREFIXES = (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3))


def si(x: float) -> str:
    """`x` to three significant digits with an SI prefix (K = 1e3 ... E = 1e18)."""
    for prefix, scale in SI_PREFIXES:
        if abs(x) >= scale:
            return f"{x / scale:.3g}{prefix}"
    return f"{x:.3g}"


def duration(seconds: float) -> str:
    """Seconds below two minutes, minutes below two hours, else hours."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
