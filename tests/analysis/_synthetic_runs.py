"""Synthetic isoFLOP sweeps with known truth, for the fits' tests: loss = law(N, D) * exp(Normal(0, noise))."""
from __future__ import annotations

import numpy as np
import pandas as pd


def isoflop(law, budgets, n_sizes=7, span=1.0, noise=0.005, seeds=1, centre=lambda C: np.sqrt(C / 120),
            offset=None, seed=0) -> pd.DataFrame:
    """Runs of `n_sizes` sizes log-spaced over +-`span` decades around centre(C) (times offset[i] for budget i),
    D = C / (6 N), `seeds` repeats of each; law(N, D) -> loss."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, C in enumerate(budgets):
        mid = centre(C) * (1.0 if offset is None else offset[i])
        for N in mid * np.logspace(-span, span, n_sizes):
            D = C / (6 * N)
            for s in range(seeds):
                rows.append({"N": N, "D": D, "C": C, "budget": C, "seed": s})
    df = pd.DataFrame(rows)
    df["loss"] = law(df["N"].to_numpy(), df["D"].to_numpy()) * np.exp(rng.normal(0, noise, len(df)))
    return df


def chinchilla(E=1.8, A=400.0, B=400.0, alpha=0.34, beta=0.34):
    return lambda N, D: E + A / N ** alpha + B / D ** beta


def overtrain(E=1.8, a=60.0, b=3000.0, eta=0.17):
    def law(N, D):
        C, M = 6 * N * D, D / N
        return E + (a * M ** eta + b * M ** -eta) * C ** -eta
    return law


def quickstart_like(seed=0, noise=0.01) -> pd.DataFrame:
    """A table shaped like the README quickstart (sweeps/quickstart.yaml): 3 budgets 1e11, 2e11, 5e11 FLOPs and
    5 sizes 12.5K-137K parameters (the largest dropped at 1e11, as its min_tokens does), 14 runs, 1% noise."""
    sizes = [12.5e3, 21.1e3, 31.2e3, 84.3e3, 137e3]
    law = chinchilla(E=2.5, A=20.0, B=59.0, alpha=0.3, beta=0.3)
    rng = np.random.default_rng(seed)
    rows = [{"run_id": f"q{int(C / 1e11)}-{i}", "N": N, "D": C / (6 * N), "C": C, "budget": C}
            for C in (1e11, 2e11, 5e11) for i, N in enumerate(sizes) if not (C == 1e11 and N == sizes[-1])]
    df = pd.DataFrame(rows)
    df["loss"] = law(df["N"].to_numpy(), df["D"].to_numpy()) * np.exp(rng.normal(0, noise, len(df)))
    return df
