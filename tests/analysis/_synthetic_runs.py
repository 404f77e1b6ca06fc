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


# Kaplan et al. 2020 at scalinglab's CPU scale: L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S (eq 1.6) and
# B_crit(L) = B_star / L^(1/alpha_B) (eq 5.3), with B_star chosen so that B_crit falls inside batch sizes of
# 8-256 sequences of 64 tokens at losses 5-6.5 nats.
KAPLAN_TRUE = {"N_c": 8.8e13, "alpha_N": 0.076, "S_c": 2.1e3, "alpha_S": 0.76, "B_star": 1.3e7, "alpha_B": 0.21}


def kaplan_curves(sizes, batch_sizes, n_ctx=64, final_loss=None, points=40, noise=0.002, seed=0, law=None,
                  embed=None, sweep="bs"):
    """(runs, curves) of runs at every (size, batch size) whose learning curves follow Kaplan eq 1.6 with
    S = S_min (1 + B_crit(L)/B) (eq 5.1, 5.4) exactly, plus multiplicative noise on val_loss.

    sizes: non-embedding parameters; batch_sizes in sequences of n_ctx tokens; each run trains until its loss
    reaches final_loss(N) (default: the N term plus 0.35 nats); `embed` (default 64 * 1024 + n_ctx * 64) is added
    for n_params. Eval points are log-spaced in steps from where the loss is the N term plus 2.2 nats."""
    p = dict(KAPLAN_TRUE, **(law or {}))
    rng = np.random.default_rng(seed)
    runs, frames = [], []
    for N in sizes:
        floor = (p["N_c"] / N) ** p["alpha_N"]
        L_fine = floor + np.geomspace(2.2, 0.3, 4000)
        S_min = p["S_c"] / (L_fine - floor) ** (1 / p["alpha_S"])
        B_crit = p["B_star"] / L_fine ** (1 / p["alpha_B"])
        L_end = floor + 0.35 if final_loss is None else final_loss(N)
        for b in batch_sizes:
            B = b * n_ctx
            S = S_min * (1 + B_crit / B)  # increasing as L_fine falls
            S_end = float(np.interp(np.log(L_end), np.log(L_fine[::-1]), S[::-1]))
            steps = np.unique(np.round(np.geomspace(S[0], S_end, points)).astype(int))
            loss = np.exp(np.interp(np.log(steps), np.log(S), np.log(L_fine)))
            run_id = f"n{N:.3g}-b{b}"
            frames.append(pd.DataFrame({
                "run_id": run_id, "step": steps, "tokens": steps * B,
                "val_loss": loss * np.exp(rng.normal(0, noise, len(steps))), "lr": 1e-3}))
            runs.append({"run_id": run_id, "sweep": sweep, "status": "complete", "n_params_nonembed": N,
                         "n_params": N + (64 * 1024 + n_ctx * 64 if embed is None else embed), "batch_size": b,
                         "n_ctx": n_ctx, "steps": int(steps[-1]), "tokens": float(steps[-1] * B),
                         "loss": float(frames[-1]["val_loss"].iloc[-1])})
    return pd.DataFrame(runs), pd.concat(frames, ignore_index=True)


SOURCE_OFFSETS = {"speeches": -0.1, "plays": 0.4, "bible": 0.9}  # bible: held out of training in every run


def write_kaplan_runs(root, sizes=(3e4, 1e5, 3e5, 1e6), batch_sizes=(8, 32, 128), seed=0):
    """A runs directory `<root>/bs/<run_id>/` of `kaplan_curves` runs whose summaries also hold per-source losses
    (val_loss/<source> = loss + SOURCE_OFFSETS[source] + 0.005 noise, bible held out) and whose curves hold a
    gradient noise scale (half the true B_crit(L)); returns (root, runs, curves)."""
    from pathlib import Path

    runs, curves = kaplan_curves(sizes, batch_sizes, noise=0.002, seed=seed)
    curves["grad_noise_scale"] = 0.5 * KAPLAN_TRUE["B_star"] / curves["val_loss"] ** (1 / KAPLAN_TRUE["alpha_B"])
    rng = np.random.default_rng(seed)
    for source, offset in SOURCE_OFFSETS.items():
        runs[f"val_loss/{source}"] = runs["loss"] + offset + rng.normal(0, 0.005, len(runs))
    runs["holdout_source"] = "bible"
    root = Path(root)
    for row in runs.to_dict("records"):
        run_dir = root / row["sweep"] / row["run_id"]
        run_dir.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([row]).to_parquet(run_dir / "summary.parquet", index=False)
        curves[curves["run_id"] == row["run_id"]].drop(columns="run_id").to_parquet(run_dir / "metrics.parquet",
                                                                                       index=False)
    return root, runs, curves
