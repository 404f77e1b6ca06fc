"""The one result type every fit returns."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import pandas as pd


@dataclass(frozen=True)
class FitResult:
    """A fitted law: point estimates, optional intervals, the data it saw, and how to predict with it.

    `params` holds the fitted values by name (e.g. E, A, B, alpha, beta, a, b). `intervals` maps a subset of
    those names to (low, high) bootstrap percentile bounds at `level`. `flags` lists reasons the fit should not
    be trusted (a parameter on a bound, no convergence, a refused budget ...); an empty tuple means none.
    `predict(**inputs)` evaluates the fitted law (e.g. predict(N=..., D=...)).
    """

    name: str
    params: Mapping[str, float]
    predict: Callable[..., object]
    data: pd.DataFrame = field(repr=False, default_factory=pd.DataFrame)
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    level: float = 0.95
    objective: float = float("nan")
    flags: tuple[str, ...] = ()
    extra: Mapping[str, object] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict:
        """JSON-ready summary (no data, no callables)."""
        return {
            "name": self.name,
            "params": {k: float(v) for k, v in self.params.items()},
            "intervals": {k: [float(lo), float(hi)] for k, (lo, hi) in self.intervals.items()},
            "level": self.level,
            "objective": float(self.objective),
            "flags": list(self.flags),
            "n_points": int(len(self.data)),
        }
