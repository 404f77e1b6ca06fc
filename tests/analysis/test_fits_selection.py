"""Choosing a law by held-out error: the law that generated the data wins; cutoffs and cross-validation."""
from __future__ import annotations

import numpy as np
import pytest

import _synthetic_runs as S
from scalinglaws.errors import InputError
from scalinglaws.selection import backtest_laws

BUDGETS = [1e15 * 4 ** k for k in range(6)]


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_data_from_the_overtraining_law_are_won_by_it(seed):
    df = S.isoflop(S.overtrain(), BUDGETS, n_sizes=7, span=0.75, noise=0.01, seed=seed)
    bt = backtest_laws(df, laws=["chinchilla", "kaplan", "overtrain", "pinned_e"], grid="small", cv=False)
    assert bt.cutoff_C == pytest.approx(BUDGETS[-1] / 8)
    assert bt.n_held == 2 * 7  # the two budgets above C_max / 8
    assert bt.winner == "overtrain"
    scores = bt.scores.set_index("law")
    assert scores.loc["overtrain", "mape"] == scores["mape"].min()
    assert scores.loc["overtrain", "worst"] >= scores.loc["overtrain", "mape"]
    assert {"overtrain error %", "chinchilla error %"} <= set(bt.predictions.columns)


def test_three_budgets_hold_out_the_largest_and_say_so():
    df = S.isoflop(S.chinchilla(), [1e15, 2e15, 5e15], n_sizes=5, noise=0.003)
    bt = backtest_laws(df, laws=["chinchilla", "overtrain"], grid="small")
    assert bt.cutoff_C == pytest.approx(2e15)
    assert "the largest budget alone is held out" in bt.cutoff_rule and "add a budget" in bt.cutoff_rule
    assert bt.n_held == 5
    assert bt.scores["cv_mape"].isna().all()  # cross-validation needs >= 4 budgets


def test_leave_one_budget_out_cross_validation_with_four_budgets():
    df = S.isoflop(S.chinchilla(), BUDGETS[:4], n_sizes=5, noise=0.002, seed=1)
    bt = backtest_laws(df, laws=["chinchilla"], grid="small", cutoff_C=BUDGETS[2])
    row = bt.scores.iloc[0]
    assert np.isfinite(row["cv_mape"]) and row["cv_worst"] >= row["cv_mape"]
    assert row["cv_mape"] < 1.0  # the true law predicts each left-out budget to within the noise


def test_one_budget_cannot_be_backtested():
    df = S.isoflop(S.chinchilla(), [1e15], n_sizes=5, noise=0.003)
    with pytest.raises(InputError, match="add runs at a second"):
        backtest_laws(df, laws=["chinchilla"], grid="small")
