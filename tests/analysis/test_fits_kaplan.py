"""Kaplan 2020 laws, the generic power-law fits, and eq 1.6 on learning curves with the compute-efficient frontier
recover known parameters from synthetic data."""
from __future__ import annotations

import numpy as np
import pytest
from _synthetic_runs import KAPLAN_TRUE, kaplan_curves
from scipy.optimize import brentq

from scalinglaws.critical_batch import fit_B_crit, fit_critical_batch
from scalinglaws.errors import InputError
from scalinglaws.kaplan import b_crit, fit_L_C, fit_L_D, fit_L_N, fit_L_ND, fit_L_NS
from scalinglaws.kaplan_frontier import fit_L_NS_curves, frontier_point, kaplan_frontier
from scalinglaws.powerlaw import fit_loglinear, fit_power_law

RNG_SEED = 0


def noisy(values, rel=0.01, seed=RNG_SEED):
    return values * np.exp(np.random.default_rng(seed).normal(0, rel, np.shape(values)))


@pytest.mark.parametrize("fit_fn, var, scale, alpha, lo, hi", [
    (fit_L_N, "N", 8.8e13, 0.076, 1e3, 1e9),  # Kaplan eq 1.1 (docs/DESIGN.md section 3)
    (fit_L_D, "D", 5.4e13, 0.095, 1e6, 1e12),  # eq 1.2
    (fit_L_C, "C", 3.1e8, 0.050, 1e-8, 1e0),  # eq 1.3, C_min in PF-days
])
def test_kaplan_single_variable_laws_recover_exponent(fit_fn, var, scale, alpha, lo, hi):
    x = np.geomspace(lo, hi, 20)
    fit = fit_fn(x, noisy((scale / x) ** alpha))
    assert fit.ok, fit.flags
    assert fit.params[f"alpha_{var}"] == pytest.approx(alpha, rel=0.02)
    assert np.log(fit.params[f"{var}_c"]) == pytest.approx(np.log(scale), rel=0.02)
    assert fit.predict(**{var: x[:3]}) == pytest.approx((scale / x[:3]) ** alpha, rel=0.02)


def test_power_law_with_offset_recovers_all_three():
    x = np.geomspace(1e5, 1e9, 15)
    y = noisy((1e6 / x) ** 0.35 + 1.8, rel=0.002)
    fit = fit_power_law(x, y, offset=True)
    assert fit.ok, fit.flags
    assert fit.params["alpha"] == pytest.approx(0.35, rel=0.05)
    assert fit.params["y_inf"] == pytest.approx(1.8, rel=0.02)
    assert fit.params["x_c"] == pytest.approx(1e6, rel=0.2)
    # started from its own answer it stays there
    again = fit_power_law(x, y, offset=True, init=fit.params)
    assert again.params["alpha"] == pytest.approx(fit.params["alpha"], rel=1e-4)


def test_power_law_flags_degenerate_fits():
    x = np.geomspace(1e5, 1e9, 10)
    no_offset_needed = fit_power_law(x, noisy((1e12 / x) ** 0.1, rel=0.001), offset=True)
    assert any("lower bound 0" in f for f in no_offset_needed.flags)
    rising = fit_power_law(x, x ** 0.1)
    assert any("does not fall" in f for f in rising.flags)
    with pytest.raises(InputError, match=r"x\[1\]"):
        fit_power_law([1.0, -2.0, 3.0], [1.0, 2.0, 3.0])
    with pytest.raises(InputError, match="distinct x values"):
        fit_power_law([1.0, 1.0, 1.0], [3.0, 2.0, 1.0])


def test_loglinear_exact():
    C = np.geomspace(1e18, 1e22, 5)
    fit = fit_loglinear(C, 0.3 * C ** 0.49)
    assert fit.params["p"] == pytest.approx(0.49, rel=1e-10)
    assert fit.params["k"] == pytest.approx(0.3, rel=1e-8)


def test_eq_1_5_recovers_table_2_parameters():
    # Kaplan Table 2: alpha_N 0.076, alpha_D 0.103, N_c 6.4e13, D_c 1.8e13; 6 x 6 grid of N, D, 0.2% noise
    N, D = (g.ravel() for g in np.meshgrid(np.geomspace(1e6, 1e9, 6), np.geomspace(1e8, 1e11, 6)))
    L = noisy(((6.4e13 / N) ** (0.076 / 0.103) + 1.8e13 / D) ** 0.103, rel=0.002)
    fit = fit_L_ND(N, D, L)
    assert fit.ok, fit.flags
    assert fit.params["alpha_N"] == pytest.approx(0.076, rel=0.03)
    assert fit.params["alpha_D"] == pytest.approx(0.103, rel=0.03)
    assert np.log(fit.params["N_c"]) == pytest.approx(np.log(6.4e13), rel=0.01)
    assert np.log(fit.params["D_c"]) == pytest.approx(np.log(1.8e13), rel=0.01)


def test_eq_1_6_recovers_parameters_and_uses_s_min():
    N, S = (g.ravel() for g in np.meshgrid(np.geomspace(1e6, 1e9, 6), np.geomspace(1e3, 1e6, 6)))
    L = noisy((6.4e13 / N) ** 0.076 + (2.1e3 / S) ** 0.76, rel=0.002)
    fit = fit_L_NS(N, S, L)
    assert fit.params["alpha_N"] == pytest.approx(0.076, rel=0.03)
    assert fit.params["alpha_S"] == pytest.approx(0.76, rel=0.03)
    assert fit.params["S_c"] == pytest.approx(2.1e3, rel=0.1)
    # with batch B = B_crit, S_min = S / 2 (Kaplan eq 5.4)
    halved = fit_L_NS(N, S * 2, L, B=1e6, B_crit=1e6)
    np.testing.assert_allclose(halved.data["S_min"], S)
    assert halved.params["S_c"] == pytest.approx(fit.params["S_c"], rel=1e-3)


def test_b_crit_formula():
    assert b_crit(1.0) == pytest.approx(2e8)
    assert b_crit(3.0) == pytest.approx(2e8 / 3.0 ** (1 / 0.21))
    assert b_crit(2.0, B_star=1e6, alpha_B=0.5) == pytest.approx(2.5e5)


# ---- eq 1.6 on learning curves and Kaplan's compute-efficient frontier (sec 6.1)

SIZES = [3e4, 1e5, 3e5, 1e6, 3e6]
TRUE_A = 1 / (KAPLAN_TRUE["alpha_N"] * (1 / KAPLAN_TRUE["alpha_N"] + 1 / KAPLAN_TRUE["alpha_S"]
                                        + 1 / KAPLAN_TRUE["alpha_B"]))


def _true_B_crit():
    L = np.geomspace(3.0, 8.0, 5)
    return fit_B_crit(L, KAPLAN_TRUE["B_star"] / L ** (1 / KAPLAN_TRUE["alpha_B"]))


def test_eq_1_6_on_learning_curves_recovers_known_parameters():
    runs, curves = kaplan_curves(SIZES, [16, 64], noise=0.002)
    fit = fit_L_NS_curves(curves, runs, B_crit=_true_B_crit(), n_boot=20)
    assert fit.ok, fit.flags
    for k in ("alpha_N", "alpha_S"):
        assert fit.params[k] == pytest.approx(KAPLAN_TRUE[k], rel=0.03)
        lo, hi = fit.intervals[k]
        assert lo < fit.params[k] < hi
    assert fit.params["S_c"] == pytest.approx(KAPLAN_TRUE["S_c"], rel=0.1)
    assert np.log(fit.params["N_c"]) == pytest.approx(np.log(KAPLAN_TRUE["N_c"]), rel=0.02)
    assert fit.extra["B_crit_source"] == "fitted"
    # S_min = S / (1 + B_crit(L)/B) (eq 5.4) for every observation
    d = fit.data
    B_crit = KAPLAN_TRUE["B_star"] / d["loss"] ** (1 / KAPLAN_TRUE["alpha_B"])
    np.testing.assert_allclose(d["S_min"], d["S"] / (1 + B_crit / d["B"]), rtol=1e-6)


def test_without_a_sweep_the_published_B_crit_is_used_and_said():
    runs, curves = kaplan_curves(SIZES[:3], [32], points=15)
    fit = fit_L_NS_curves(curves, runs)
    assert fit.extra["B_crit_source"] == "published"
    assert (fit.extra["B_star"], fit.extra["alpha_B"]) == (2e8, 0.21)
    d = fit.data
    np.testing.assert_allclose(d["S_min"], d["S"] / (1 + 2e8 / d["loss"] ** (1 / 0.21) / d["B"]))
    with pytest.raises(InputError, match="1 model size"):
        fit_L_NS_curves(curves[curves["run_id"] == runs["run_id"][0]], runs)


def test_frontier_closed_form_matches_a_brute_force_minimum():
    p = KAPLAN_TRUE
    for C_min in (1e14, 1e17):
        best = None
        for N in np.geomspace(1e3, 1e10, 1401):
            x = (p["N_c"] / N) ** p["alpha_N"]

            def excess(logL):  # log C_min(N, L) - log C_min: falls as L rises
                L = np.exp(logL)
                S_min = p["S_c"] / (L - x) ** (1 / p["alpha_S"])
                return np.log(6 * N * p["B_star"] / L ** (1 / p["alpha_B"]) * S_min) - np.log(C_min)

            L = np.exp(brentq(excess, np.log(x) + 1e-12, np.log(x) + 10))
            if best is None or L < best[1]:
                best = (N, L)
        point = frontier_point(p, C_min)
        assert point["N"] == pytest.approx(best[0], rel=0.02)
        assert point["L"] == pytest.approx(best[1], rel=1e-4)
        assert 6 * point["N"] * point["B_crit"] * point["S_min"] == pytest.approx(C_min, rel=1e-9)
    # the exponent alpha_C_min / alpha_N; with Kaplan's published exponents (0.076, 0.76, 0.21) it is 0.68
    assert point["a"] == pytest.approx(TRUE_A, rel=1e-12)
    assert frontier_point({**p, "alpha_N": 0.076, "alpha_S": 0.76, "alpha_B": 0.21}, 1e20)["a"] == pytest.approx(
        0.684, abs=1e-3)


def test_end_to_end_frontier_exponent_from_curves():
    runs, curves = kaplan_curves(SIZES[1:4], [8, 32, 128], noise=0.002)
    bcrit = fit_critical_batch(curves, runs, n_boot=30)
    frontier = {}
    for n_col in ("n_params_nonembed", "n_params"):
        fit = fit_L_NS_curves(curves, runs, n_col=n_col, B_crit=bcrit, n_boot=30)
        frontier[n_col] = kaplan_frontier(fit)
    kaplan_n = frontier["n_params_nonembed"]
    assert kaplan_n.params["a"] == pytest.approx(TRUE_A, abs=0.02)
    lo, hi = kaplan_n.intervals["a"]
    assert lo < TRUE_A < hi
    N_opt = kaplan_n.predict(1e16)
    assert N_opt == pytest.approx(frontier_point({**KAPLAN_TRUE}, 1e16)["N"], rel=0.3)
    # total N adds a fixed embedding to every size: the fitted law (and so the exponent) differs
    assert abs(frontier["n_params"].params["a"] - kaplan_n.params["a"]) > 0.01
