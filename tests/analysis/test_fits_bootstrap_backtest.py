"""Bootstrap determinism and intervals; backtest held-out split and error on synthetic data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalinglaws.backtest import backtest
from scalinglaws.bootstrap import bootstrap
from scalinglaws.chinchilla import chinchilla_loss, compute_optimal, fit_approach3
from scalinglaws.errors import InputError
from scalinglaws.frontier import fit_approach2
from scalinglaws.kaplan import fit_L_N
from scalinglaws.result import FitResult

TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)


def isoflop(budgets, n_sizes=9, span=1.0, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    rows = [(n, c / (6 * n), c) for c in budgets
            for n in compute_optimal(c, **TRUE)[0] * np.logspace(-span, span, n_sizes)]
    df = pd.DataFrame(rows, columns=["N", "D", "C"])
    df["loss"] = chinchilla_loss(df["N"], df["D"], **TRUE) * np.exp(rng.normal(0, noise, len(df)))
    return df


def power_df(seed=0):
    N = np.geomspace(1e5, 1e9, 12)
    return pd.DataFrame({"N": N, "loss": (8.8e13 / N) ** 0.076 * np.exp(np.random.default_rng(seed).normal(0, 0.01, 12))})


def test_bootstrap_is_deterministic_and_intervals_contain_point():
    df = power_df()
    one, two = bootstrap(fit_L_N, df, n=200, seed=3), bootstrap(fit_L_N, df, n=200, seed=3)
    pd.testing.assert_frame_equal(one.extra["samples"], two.extra["samples"])
    assert one.intervals == two.intervals
    other = bootstrap(fit_L_N, df, n=200, seed=4)
    assert other.intervals != one.intervals
    for name, (lo, hi) in one.intervals.items():
        assert lo < one.params[name] < hi
    assert one.params == fit_L_N(df["N"], df["loss"]).params and one.level == 0.95
    assert len(one.extra["samples"]) == 200 and one.extra["n_failed"] == 0
    narrow = bootstrap(fit_L_N, df, n=200, seed=3, level=0.5)
    assert narrow.intervals["alpha_N"][1] - narrow.intervals["alpha_N"][0] < \
        one.intervals["alpha_N"][1] - one.intervals["alpha_N"][0]


def test_bootstrap_processes_give_the_same_answer():
    df = isoflop(np.geomspace(1e18, 1e22, 5))
    serial = bootstrap(fit_approach3, df, n=40, grid="small", seed=1)
    parallel = bootstrap(fit_approach3, df, n=40, grid="small", seed=1, n_jobs=2)
    pd.testing.assert_frame_equal(serial.extra["samples"], parallel.extra["samples"])


def count_budgets(N, C, L, budgets=None, init=None):
    """A fit that reports how many runs each budget has, to check resampling stays within budgets."""
    counts = pd.Series(C).value_counts().sort_index()
    return FitResult(name="counts", params={f"n{i}": float(v) for i, v in enumerate(counts)}, predict=None)


def test_grouped_bootstrap_resamples_within_each_budget():
    df = isoflop(np.geomspace(1e18, 1e22, 3), n_sizes=5)
    df = pd.concat([df, df[df["C"] == df["C"].max()]], ignore_index=True)  # budgets of 5, 5, 10 runs
    fit = bootstrap(count_budgets, df, n=30, groups="C")
    assert (fit.extra["samples"] == [5.0, 5.0, 10.0]).all().all()
    ungrouped = bootstrap(count_budgets, df, n=30)
    assert not (ungrouped.extra["samples"] == [5.0, 5.0, 10.0]).all().all()
    approach2 = bootstrap(fit_approach2, isoflop(np.geomspace(1e18, 1e22, 5)), n=50)
    lo, hi = approach2.intervals["a"]
    assert lo <= approach2.params["a"] <= hi


def test_backtest_right_law_predicts_held_out_runs():
    df = isoflop(np.geomspace(1e18, 1e24, 7), noise=0.005)
    bt = backtest(fit_approach3, df, grid="small")
    assert bt.cutoff_C == pytest.approx(1e24 / 8)
    assert set(bt.table.index) == set(df.index[df["C"] > 1e24 / 8])  # exactly the rows above the cutoff
    assert bt.n_fit == int((df["C"] <= 1e24 / 8).sum())
    assert bt.mape < 1.0
    np.testing.assert_allclose(bt.table["error_pct"],
                               100 * (bt.table["predicted"] - bt.table["loss"]) / bt.table["loss"])
    # a law without the offset E extrapolates worse
    wrong = backtest(fit_L_N, df, predict_cols=("N",))
    assert wrong.mape > 3 * bt.mape


def test_backtest_errors():
    df = isoflop(np.geomspace(1e18, 1e22, 3))
    with pytest.raises(InputError, match="nothing held out"):
        backtest(fit_approach3, df, cutoff_C=1e23, grid="small")
    few_small = df.drop(index=df.index[df["C"] == df["C"].min()][:5])  # 4 runs below the cutoff, 5 params
    with pytest.raises(InputError, match="too little left to fit"):
        backtest(fit_approach3, few_small, cutoff_C=1.5e18, grid="small")
    with pytest.raises(InputError, match="column 'D'"):
        backtest(fit_approach3, df.drop(columns=["D"]), grid="small")


def test_row_bootstrap_draws_whole_seed_groups_and_approach3_refits_them():
    df = isoflop(np.geomspace(1e18, 1e22, 4), n_sizes=5, noise=0.003)
    seeded = pd.concat([df.assign(seed=s, loss=df["loss"] * np.exp(0.003 * s)) for s in range(3)],
                       ignore_index=True)
    samples = bootstrap(count_configs, seeded, n=40).extra["samples"]
    assert (samples["split"] == 0).all()  # every config is drawn with all its 3 seeds or not at all
    assert samples["distinct"].nunique() > 1  # and configs are resampled
    assert (bootstrap(count_configs, seeded, n=40, groups=np.arange(len(seeded))).extra["samples"]["distinct"]
            == len(df)).all()  # groups of one run each keep every config: only whole groups move
    a3 = bootstrap(fit_approach3, seeded, n=30, grid="small", seed=2)
    assert a3.extra["n_failed"] == 0
    lo, hi = a3.intervals["alpha"]
    assert lo < a3.params["alpha"] < hi and lo < TRUE["alpha"] < hi


def count_configs(N, D, L, init=None):
    """Of a resample: its distinct (N, D), and how many of them hold a row count that is not a multiple of 3."""
    counts = pd.Series(list(zip(N, D))).value_counts()
    return FitResult(name="configs", params={"distinct": float(len(counts)), "split": float((counts % 3 != 0).sum())},
                     predict=None)
