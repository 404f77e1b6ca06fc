"""Choosing a law by held-out error: the law that generated the data wins; cutoffs and cross-validation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import _synthetic_runs as S
from scalinglaws.errors import InputError
from scalinglaws.selection import _one_se_winner, backtest_laws

BUDGETS = [1e15 * 4 ** k for k in range(6)]


@pytest.mark.parametrize("seed", range(6))
def test_data_from_the_overtraining_law_are_won_by_it(seed):
    df = S.isoflop(S.overtrain(), BUDGETS, n_sizes=7, span=0.75, noise=0.01, seed=seed)
    bt = backtest_laws(df, laws=["chinchilla", "kaplan", "overtrain", "pinned_e"], grid="small", cv=False)
    assert bt.cutoff_C == pytest.approx(BUDGETS[-1] / 8)
    assert bt.n_held == 2 * 7  # the two budgets above C_max / 8
    assert bt.winner == "overtrain"
    scores = bt.scores.set_index("law")
    # Chinchilla's form holds this law (alpha = beta), so it can tie it up to noise; within one standard error
    # the law with fewer parameters wins
    assert scores.loc["overtrain", "mape"] <= scores["mape"].min() + scores.loc[scores["mape"].idxmin(), "mape_se"]
    assert scores.loc["overtrain", "n_params"] == 4 and scores.loc["chinchilla", "n_params"] == 5
    assert scores.loc["overtrain", "worst"] >= scores.loc["overtrain", "mape"]
    assert {"overtrain error %", "chinchilla error %"} <= set(bt.predictions.columns)


def test_overtraining_data_at_large_budgets_are_won_by_it_from_the_full_grid():
    """Five budgets from 2.2e18 FLOPs, 0.3% noise: scipy's polish stops on a line search at the optimum; the
    fit is judged converged by its relative offset (a largest theta gradient of 0.07 once read 'not converged')."""
    law = S.overtrain(E=1.589, a=34.83, b=746.3, eta=0.130)
    df = S.isoflop(law, [2.22e18 * 3 ** k for k in range(5)], n_sizes=6, span=1.185, noise=0.003, seed=8)
    bt = backtest_laws(df, laws=["chinchilla", "overtrain"], cv=False)
    assert bt.scores.set_index("law").loc["overtrain", "why_not"] == ""
    assert bt.winner == "overtrain"


def test_the_one_standard_error_rule():
    scores = pd.DataFrame({"law": ["rich", "simple", "worse", "unidentified"], "mape": [1.0, 1.2, 2.0, 0.1],
                           "mape_se": [0.3, 0.1, 0.1, 0.0], "n_params": [5, 4, 3, 2],
                           "identified": [True, True, True, False]})
    assert _one_se_winner(scores) == "simple"  # within 1.0 + 0.3 and fewer parameters; 'worse' is not within
    assert _one_se_winner(scores.assign(mape_se=[0.1, 0.1, 0.1, 0.0])) == "rich"
    assert _one_se_winner(scores.assign(identified=False)) is None


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


def test_a_cutoff_that_leaves_one_budget_to_fit_on_is_refused():
    df = S.isoflop(S.chinchilla(), BUDGETS[:4], n_sizes=5, noise=0.003)
    with pytest.raises(InputError, match=r"only one budget lies below it.*choose a cutoff >= 4e\+15"):
        backtest_laws(df, laws=["chinchilla"], grid="small", cutoff_C=BUDGETS[0])
    with pytest.raises(InputError, match="span 2 compute budgets.*add runs at a third"):
        backtest_laws(df[df["C"] <= BUDGETS[1]], laws=["chinchilla"], grid="small")
