"""Chinchilla Approaches 1-3 and the compute-optimal frontier on synthetic data with a known answer."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize_scalar

from scalinglaws.bootstrap import bootstrap
from scalinglaws.chinchilla import chinchilla_loss, compute_optimal, fit_approach3, huber_lse_objective
from scalinglaws.errors import InputError
from scalinglaws.frontier import fit_approach1, fit_approach2

# Hoffmann et al. 2022, Approach 3 fit (docs/DESIGN.md section 3)
TRUE = dict(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
WIDE_BUDGETS = np.geomspace(1e14, 1e26, 13)


def isoflop(budgets=WIDE_BUDGETS, n_sizes=15, span=1.5, noise=0.01, seed=0, shift=0.0):
    """IsoFLOP design: per budget, n_sizes sizes log-spaced over +-span decades around N_opt (shifted by
    `shift` decades); loss = true law times 1% log-normal noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = compute_optimal(c, **TRUE)
        for n in n_opt * np.logspace(-span + shift, span + shift, n_sizes):
            rows.append((n, c / (6 * n), c))
    df = pd.DataFrame(rows, columns=["N", "D", "C"])
    df["loss"] = chinchilla_loss(df["N"], df["D"], **TRUE) * np.exp(rng.normal(0, noise, len(df)))
    return df


def test_published_frontier_exponents():
    fit_a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert round(fit_a, 4) == 0.4516 and round(1 - fit_a, 4) == 0.5484
    C = np.array([1e18, 1e24])
    N, D = compute_optimal(C, **TRUE)
    slope_N = np.diff(np.log(N)) / np.diff(np.log(C))
    slope_D = np.diff(np.log(D)) / np.diff(np.log(C))
    assert slope_N[0] == pytest.approx(0.4516, abs=5e-5) and slope_D[0] == pytest.approx(0.5484, abs=5e-5)
    np.testing.assert_allclose(6 * N * D, C, rtol=1e-12)


@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e26])
def test_compute_optimal_matches_brute_force(C):
    def loss_at(log_n):
        n = np.exp(log_n)
        return chinchilla_loss(n, C / (6 * n), **TRUE)

    res = minimize_scalar(loss_at, bracket=(np.log(1e6), np.log(1e12)), tol=1e-12)
    N_opt, D_opt = compute_optimal(C, **TRUE)
    assert N_opt == pytest.approx(np.exp(res.x), rel=1e-6)
    assert D_opt == pytest.approx(C / (6 * np.exp(res.x)), rel=1e-6)


def test_objective_gradient_matches_finite_differences():
    df = isoflop(n_sizes=5)
    logN, logD, logL = np.log(df["N"].to_numpy()), np.log(df["D"].to_numpy()), np.log(df["loss"].to_numpy())
    theta = np.array([[6.5, 5.5, 0.4, 0.36, 0.27], [10.0, 3.0, -0.5, 1.0, 0.5]])
    for mean in (False, True):
        f, g = huber_lse_objective(theta, logN, logD, logL, mean=mean)
        for k in range(5):
            step = np.zeros(5)
            step[k] = 1e-7
            fp, _ = huber_lse_objective(theta + step, logN, logD, logL, mean=mean)
            fm, _ = huber_lse_objective(theta - step, logN, logD, logL, mean=mean)
            np.testing.assert_allclose(g[:, k], (fp - fm) / 2e-7, rtol=1e-4, atol=1e-9)


def test_approach3_recovers_truth_and_bootstrap_covers_it():
    # Seed 2 of the design below; over seeds 0-39 the 95% intervals (n=200) covered E, alpha, beta in
    # 88%, 90%, 95% of cases (percentile bootstrap undercovers a little); seed 0 misses beta narrowly.
    df = isoflop(seed=2)
    fit = bootstrap(fit_approach3, df, n=200, seed=0)  # full 4500-start grid for the point fit
    assert fit.ok, fit.flags
    for name in ("E", "alpha", "beta"):
        assert fit.params[name] == pytest.approx(TRUE[name], rel=0.02)
        lo, hi = fit.intervals[name]
        assert lo <= TRUE[name] <= hi, (name, lo, hi)
        assert lo <= fit.params[name] <= hi
    assert fit.extra["n_starts"] == 4500
    assert fit.params["a"] == pytest.approx(fit.params["beta"] / (fit.params["alpha"] + fit.params["beta"]))
    N_opt, D_opt = fit.extra["frontier"](1e21)
    assert (N_opt, D_opt) == pytest.approx(compute_optimal(1e21, *(fit.params[k] for k in TRUE)))
    assert fit.predict(N=1e9, D=2e10) == pytest.approx(chinchilla_loss(1e9, 2e10, *(fit.params[k] for k in TRUE)))


def test_mean_huber_stops_early_where_sum_converges():
    df = isoflop(seed=0)
    N, D, L = df["N"], df["D"], df["loss"]
    start = dict(A=np.exp(20.0), B=np.exp(10.0), E=np.exp(0.0), alpha=0.75, beta=0.75)  # a point of the grid
    by_sum = fit_approach3(N, D, L, init=start)
    by_mean = fit_approach3(N, D, L, init=start, objective="mean")
    assert by_sum.params["alpha"] == pytest.approx(TRUE["alpha"], rel=0.02)
    assert abs(by_mean.params["alpha"] - TRUE["alpha"]) > 0.1  # stopped far from the optimum
    logs = [np.log(df[c].to_numpy()) for c in ("N", "D", "loss")]

    def sum_objective(p):
        theta = [np.log(p["A"]), np.log(p["B"]), np.log(p["E"]), p["alpha"], p["beta"]]
        return huber_lse_objective(np.array(theta), *logs)[0][0]

    assert sum_objective(by_mean.params) > 5 * sum_objective(by_sum.params)
    # over a grid of starts, far fewer mean-objective runs reach the best value
    grid_sum = fit_approach3(N, D, L, grid="small")
    grid_mean = fit_approach3(N, D, L, grid="small", objective="mean")
    assert grid_mean.extra["n_starts_at_best"] < grid_sum.extra["n_starts_at_best"]


def test_approach3_flags_parameter_outside_grid():
    df = isoflop(n_sizes=7)
    tight = {"alpha": [0.5, 1.0], "beta": [0.5, 1.0], "e": [-1.0, 0.0], "a": [0.0, 5.0], "b": [0.0, 5.0]}
    fit = fit_approach3(df["N"], df["D"], df["loss"], grid=tight)
    assert any("ends outside the range its starts cover" in f for f in fit.flags)
    with pytest.raises(InputError, match="runs for fit_approach3"):
        fit_approach3([1e6, 1e7], [1e9, 1e9], [3.0, 2.9])


def test_approach2_recovers_allocation_exponent():
    df = isoflop(budgets=np.geomspace(1e18, 1e22, 5), n_sizes=9, span=1.0, seed=0)
    fit = fit_approach2(df["N"], df["D"], df["C"], df["loss"])
    a_true = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert fit.ok, fit.flags
    assert fit.params["a"] == pytest.approx(a_true, abs=0.03)
    assert fit.params["b"] == pytest.approx(1 - a_true, abs=0.03)
    assert len(fit.extra["minima"]) == 5 and fit.extra["refused"] == {}


def test_approach2_refuses_budget_without_interior_minimum():
    good = isoflop(budgets=np.geomspace(1e18, 1e22, 4), n_sizes=9, span=1.0, noise=0.0)
    # a budget whose sizes all lie above the optimum: loss rises monotonically, the vertex is outside the range
    bad = isoflop(budgets=[1e20 * 3], n_sizes=7, span=0.4, shift=1.0, noise=0.0)
    df = pd.concat([good, bad], ignore_index=True)
    fit = fit_approach2(df["N"], df["D"], df["C"], df["loss"])
    assert list(fit.extra["refused"]) == [3e20]
    assert "not interior" in fit.extra["refused"][3e20] or "not positive" in fit.extra["refused"][3e20]
    assert any("refused" in f for f in fit.flags)
    assert len(fit.extra["minima"]) == 4
    # a two-size budget is refused too, and with < 2 usable budgets the fit refuses to run
    with pytest.raises(InputError, match="usable isoFLOP budget"):
        two = good[good["C"] == good["C"].min()]
        fit_approach2(two["N"], two["D"], two["C"], two["loss"])


def test_approach2_flags_minimum_near_edge():
    df = isoflop(budgets=np.geomspace(1e18, 1e22, 4), n_sizes=9, span=1.0, shift=0.8, noise=0.0)
    fit = fit_approach2(df["N"], df["D"], df["C"], df["loss"])
    assert any("near an edge" in f for f in fit.flags)


def test_approach1_envelope_recovers_allocation_exponent():
    # 16 sizes over 3 decades, each curve from 1e8 to 3e11 tokens; the envelope picks discrete sizes, so the
    # exponent is recovered only to the size spacing: tolerance 0.03 on a = 0.4516.
    curves = []
    for i, n in enumerate(np.geomspace(1e7, 1e10, 16)):
        D = np.geomspace(1e8, 3e11, 60)
        curves.append(pd.DataFrame({"run_id": f"r{i}", "N": n, "flops": 6 * n * D,
                                    "loss": chinchilla_loss(n, D, **TRUE)}))
    fit = fit_approach1(pd.concat(curves, ignore_index=True))
    assert fit.params["a"] == pytest.approx(0.4516, abs=0.03)
    assert fit.params["b"] == pytest.approx(0.5484, abs=0.03)
    assert len(fit.extra["envelope"]) >= 10 and fit.ok
    with pytest.raises(InputError, match="curves column"):
        fit_approach1(pd.concat(curves).drop(columns=["flops"]))


def test_approach2_window_fits_each_parabola_near_its_minimum():
    # Budget 1: a clean parabola in log N around 3e4. Budget 2: measured losses of six sizes at C = 1e12 (the
    # reproduction's isoFLOP sweep): lowest at 33K with higher losses on both sides, but the far sizes do not follow
    # a parabola, and the all-sizes parabola puts its vertex left of the sampled range.
    n1 = 3e4 * 1.6 ** np.arange(-2, 3)
    l1 = 3.0 + 0.3 * np.log(n1 / 3e4) ** 2
    n2 = np.array([22632, 33248, 59088, 87360, 141056, 191040.0])
    l2 = np.array([3.5273, 3.4129, 3.4532, 3.7141, 3.9094, 3.7448])
    N, L = np.concatenate([n1, n2]), np.concatenate([l1, l2])
    C = np.repeat([3e11, 1e12], [5, 6])
    D = C / (6 * N)
    with pytest.raises(InputError, match="1 usable isoFLOP budget"):
        fit_approach2(N, D, C, L)
    fit = fit_approach2(N, D, C, L, window=5)
    minima = fit.extra["minima"]
    assert minima["N_opt"].iloc[0] == pytest.approx(3e4, rel=1e-6)
    assert 22632 < minima["N_opt"].iloc[1] < 59088 and minima["n_sizes"].tolist() == [5, 5]
    with pytest.raises(InputError, match="window"):
        fit_approach2(N, D, C, L, window=2)


def test_batched_refit_ignores_the_padding_of_shorter_resamples():
    """A short resample refitted beside a longer one (so padded with weight-0 rows) ends where it ends alone."""
    from scalinglaws.chinchilla import refit_approach3_batch
    df = isoflop(budgets=WIDE_BUDGETS[:6], n_sizes=9, seed=3)
    init = fit_approach3(df["N"], df["D"], df["loss"]).params
    short = df.iloc[: len(df) * 2 // 3]
    alone = refit_approach3_batch([short], init)[0]
    padded = refit_approach3_batch([df, short], init)[1]
    assert all(padded[k] == pytest.approx(alone[k], rel=1e-4) for k in ("E", "A", "B", "alpha", "beta"))
    full = refit_approach3_batch([df], init)[0]
    assert abs(full["alpha"] - alone["alpha"]) > 1e-4  # the dropped rows did matter, so the check can fail
