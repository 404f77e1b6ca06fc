"""Benchmark the Chinchilla Approach 3 fit: full 4500-start grid and a 1000-resample bootstrap.

Usage: python scripts/bench_fit.py [--boot 1000] [--jobs 2] [--subset 90] [--repeat 3]

Data: 240 synthetic runs (12 isoFLOP budgets 1e16-1e22 x 20 sizes over +-1.5 decades around N_opt), losses from
Chinchilla's published law (E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28) with 1% log-normal noise, seed 0.
Targets: grid < 5 s, bootstrap < 20 s on 2 cores.
Baseline: a plain scipy loop, scipy.optimize.minimize(method="L-BFGS-B") per start with numerical (2-point)
gradients and scipy.special.huber, run on a random subset of the starts (and of the resamples) and
extrapolated linearly to the full count; the printed ratio is baseline / ours. The PyPI package `chinchilla` is
not used (not installed).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

from scalinglaws.bootstrap import bootstrap
from scalinglaws.chinchilla import _grid_starts, chinchilla_loss, compute_optimal, fit_approach3

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def synthetic(seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(n, c / (6 * n), c) for c in np.geomspace(1e16, 1e22, 12)
            for n in compute_optimal(c, **TRUE)[0] * np.logspace(-1.5, 1.5, 20)]
    df = pd.DataFrame(rows, columns=["N", "D", "C"])
    df["loss"] = chinchilla_loss(df["N"], df["D"], **TRUE) * np.exp(rng.normal(0, 0.01, len(df)))
    return df


def plain_objective(theta, logN, logD, logL, delta=1e-3):
    a, b, e, alpha, beta = theta
    pred = logsumexp([a - alpha * logN, b - beta * logD, np.full_like(logN, e)], axis=0)
    return float(np.sum(huber(delta, pred - logL)))


def plain_fit(start, logs):
    return minimize(plain_objective, start, args=logs, method="L-BFGS-B")


def timed(fn, repeat=1):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=90, help="starts (and resamples) timed for the scipy baseline")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    df = synthetic()
    logs = tuple(np.log(df[c].to_numpy()) for c in ("N", "D", "loss"))
    starts, _ = _grid_starts("chinchilla")
    t_grid, fit = timed(lambda: fit_approach3(df["N"], df["D"], df["loss"]), args.repeat)
    # bootstrap() runs one point fit first: use the 108-start grid for it (the resample refits all start from
    # the point estimate, which is the same here), so the time is essentially the 1000 refits
    t_boot, boot = timed(lambda: bootstrap(fit_approach3, df, n=args.boot, n_jobs=args.jobs, seed=0, grid="small"))

    rng = np.random.default_rng(0)
    subset = starts[rng.choice(len(starts), args.subset, replace=False)]
    t_sub, base = timed(lambda: [plain_fit(s, logs) for s in subset])
    t_base_grid = t_sub * len(starts) / args.subset
    p = fit.params
    init = np.array([np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]])
    draws = [rng.integers(0, len(df), len(df)) for _ in range(args.subset)]
    t_bsub, _ = timed(lambda: [plain_fit(init, tuple(x[d] for x in logs)) for d in draws])
    t_base_boot = t_bsub * args.boot / args.subset
    best_base = min(r.fun for r in base)

    print(f"data: {len(df)} synthetic runs; grid {len(starts)} starts; bootstrap n={args.boot}, n_jobs={args.jobs}")
    print(f"fit: E={p['E']:.4f} alpha={p['alpha']:.4f} beta={p['beta']:.4f} a={p['a']:.4f} objective="
          f"{fit.objective:.6g} flags={list(fit.flags)}; starts reaching the best: {fit.extra['n_starts_at_best']}")
    print(f"bootstrap 95% alpha {boot.intervals['alpha'][0]:.4f}-{boot.intervals['alpha'][1]:.4f}, "
          f"failed refits {boot.extra['n_failed']}")
    print(f"scipy baseline best objective over its {args.subset}-start subset: {best_base:.6g}")
    print()
    print(f"| {'task':<34} | {'scalinglaws s':>13} | {'target s':>8} | {'scipy loop s':>12} | {'ratio':>6} |")
    print(f"|{'-' * 36}|{'-' * 15}|{'-' * 10}|{'-' * 14}|{'-' * 8}|")
    print(f"| {'Approach 3, 4500-start grid':<34} | {t_grid:13.2f} | {5:8.0f} | {t_base_grid:12.1f} | "
          f"{t_base_grid / t_grid:6.0f} |")
    print(f"| {f'bootstrap, {args.boot} resamples':<34} | {t_boot:13.2f} | {20:8.0f} | {t_base_boot:12.1f} | "
          f"{t_base_boot / t_boot:6.0f} |")
    print(f"(scipy loop: {args.subset} starts/resamples timed, extrapolated x{len(starts) / args.subset:.0f} and "
          f"x{args.boot / args.subset:.1f}; ours: median of {args.repeat} grid runs, 1 bootstrap run "
          "whose point fit uses the 108-start grid)")


if __name__ == "__main__":
    main()
