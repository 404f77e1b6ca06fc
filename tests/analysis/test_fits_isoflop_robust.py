"""Robust Approach 2 on noisy isoFLOP sweeps with known truth a = 0.5 (alpha = beta)."""
from __future__ import annotations

import numpy as np
import pytest

import _synthetic_runs as S
from scalinglaws.frontier import fit_approach2
from scalinglaws.errors import InputError
from scalinglaws.isoflop import fit_approach2_robust
from scalinglaws.noise import estimate_noise, prediction_interval, seed_groups
from scalinglaws.table import fit_table

BUDGETS = [1e15 * 4 ** k for k in range(6)]
OFF_CENTRE = [1, 6, 1, 1 / 6, 1, 6]  # sizes centred away from the optimum: some minima sit near or past an edge


@pytest.mark.parametrize("seed", range(5))
def test_robust_approach2_recovers_a_where_the_old_one_refuses_budgets(seed):
    df = S.isoflop(S.chinchilla(), BUDGETS, n_sizes=7, span=0.75, noise=0.005, offset=OFF_CENTRE, seed=seed)
    old = fit_table(fit_approach2, df)
    assert old.extra["refused"]  # the old parabola refuses the budget whose vertex lies past the sampled range
    robust = fit_table(fit_approach2_robust, df, window=None, n_resamples=200)
    assert not robust.extra["refused"]  # kept, with its uncertainty
    assert len(robust.extra["minima"]) == len(BUDGETS)
    assert robust.params["a"] == pytest.approx(0.5, abs=0.03)
    lo, hi = robust.intervals["a"]
    assert lo < 0.5 < hi
    minima = robust.extra["minima"]
    edge = minima["vertex_position"].sub(0.5).abs().idxmax()  # the minimum nearest an edge is the least certain
    assert minima.loc[edge, "sigma_logN"] > minima["sigma_logN"].median()
    assert minima["weight"].sum() == pytest.approx(1.0)


def test_robust_approach2_uses_seed_noise_when_configs_repeat():
    df = S.isoflop(S.chinchilla(), BUDGETS[:4], n_sizes=5, span=0.6, noise=0.004, seeds=3, seed=2)
    fit = fit_table(fit_approach2_robust, df, n_resamples=100)
    assert fit.extra["noise"].source == "seeds"
    assert fit.extra["noise"].sigma == pytest.approx(0.004, rel=0.3)
    assert fit.params["a"] == pytest.approx(0.5, abs=0.05)


def test_robust_approach2_refuses_only_budgets_without_information():
    df = S.isoflop(S.chinchilla(), BUDGETS[:4], n_sizes=5, span=0.75, noise=0.003, seed=1)
    two_sizes = S.isoflop(S.chinchilla(), [1e20], n_sizes=2, span=0.3, noise=0.003)
    monotone = S.isoflop(S.chinchilla(), [4e20], n_sizes=5, span=0.2, noise=0.0, offset=[1e-3])
    fit = fit_table(fit_approach2_robust, __import__("pandas").concat([df, two_sizes, monotone]), n_resamples=100)
    assert set(fit.extra["refused"]) == {1e20, 4e20}
    assert "2 distinct sizes" in fit.extra["refused"][1e20]
    assert len(fit.extra["minima"]) == 4
    with pytest.raises(InputError, match="budget"):
        fit_table(fit_approach2_robust, two_sizes, n_resamples=100)


def test_seed_groups_and_noise_estimates():
    df = S.isoflop(S.chinchilla(), BUDGETS[:3], n_sizes=4, noise=0.01, seeds=4, seed=3)
    groups = seed_groups(df)
    assert len(np.unique(groups)) == 12 and np.bincount(groups).tolist() == [4] * 12
    noise = estimate_noise(df)
    assert noise.source == "seeds" and noise.dof == 36
    assert noise.sigma == pytest.approx(0.01, rel=0.25)
    assert len(noise.per_budget) == 3
    single = df[df["seed"] == 0]
    r = np.random.default_rng(0).normal(0, 0.02, len(single))
    fallback = estimate_noise(single, residuals=r, n_params=2)
    assert fallback.source == "residuals" and fallback.sigma == pytest.approx(0.02, rel=0.4)
    assert "residual scatter stands in" in fallback.describe()


def test_prediction_interval_adds_noise_to_parameter_uncertainty():
    noise = estimate_noise(S.isoflop(S.chinchilla(), BUDGETS[:2], n_sizes=3, noise=0.01, seeds=5, seed=4))
    lo0, mid0, hi0 = prediction_interval(np.log([3.0]), noise)
    # noise only: +-1.96 sigma in log loss
    assert np.log(hi0 / mid0) == pytest.approx(1.96 * noise.sigma, rel=0.15)
    wide = np.log(3.0) + np.random.default_rng(0).normal(0, 0.02, 500)
    lo1, mid1, hi1 = prediction_interval(wide, noise)
    assert np.log(hi1 / lo1) == pytest.approx(2 * 1.96 * np.hypot(0.02, noise.sigma), rel=0.15)


def test_classic_window_counts_distinct_sizes_and_keeps_every_seed():
    df = S.isoflop(S.chinchilla(), BUDGETS[:3], n_sizes=9, span=1.0, noise=0.002, seeds=3, seed=4)
    fit = fit_table(fit_approach2, df, window=5)
    assert (fit.extra["minima"]["n_sizes"] == 5 * 3).all()  # 5 sizes x 3 seeds, not 5 rows
    assert not fit.extra["refused"]
    assert fit.params["a"] == pytest.approx(0.5, abs=0.05)


def test_the_default_parabola_takes_every_size_and_holds_a_at_1_percent_noise():
    """1% noise, 3 seeds, 9 sizes a budget: the default (all sizes) recovers a = 0.5 within 0.03 at each of 10
    draws; a window of the 5 sizes nearest the noisy lowest loss scatters more (it is chosen by the noise)."""
    default, narrow = [], []
    for seed in range(10):
        df = S.isoflop(S.chinchilla(), BUDGETS[:5], n_sizes=9, span=0.9, noise=0.01, seeds=3, seed=seed)
        default.append(fit_table(fit_approach2_robust, df, n_resamples=100).params["a"])
        narrow.append(fit_table(fit_approach2_robust, df, window=5, n_resamples=100).params["a"])
    assert np.abs(np.array(default) - 0.5).max() <= 0.03, default
    assert np.std(default) < np.std(narrow)


def test_without_a_noise_estimate_the_minima_carry_no_uncertainty():
    """3 sizes a budget and one seed: no residual dof and no seeds, so no sigma; budgets weigh equally."""
    df = S.isoflop(S.chinchilla(), BUDGETS[:4], n_sizes=3, span=0.5, noise=0.003, seed=5)
    fit = fit_table(fit_approach2_robust, df, n_resamples=100)
    minima = fit.extra["minima"]
    assert fit.extra["noise"] is None and minima["sigma_logN"].isna().all()
    assert minima["weight"].to_numpy() == pytest.approx(np.full(4, 0.25)) and "a" not in fit.intervals
