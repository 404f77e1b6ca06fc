"""The report's rules for 'not identified': each one triggers on a fit that breaks it, none on a good fit."""
from __future__ import annotations

import dataclasses

import numpy as np

import _synthetic_runs as S
from scalinglaws.chinchilla import fit_approach3
from scalinglaws.identify import not_identified
from scalinglaws.kaplan import fit_L_N
from scalinglaws.table import fit_table


def test_a_good_fit_is_identified():
    N = np.geomspace(1e5, 1e8, 8)
    fit = fit_L_N(N, (8.8e13 / N) ** 0.076 * np.exp(np.random.default_rng(0).normal(0, 0.002, 8)))
    assert not_identified(fit) == []


def test_an_exponent_that_does_not_fall_is_not_identified():
    N = np.geomspace(1e5, 1e6, 6)
    fit = fit_L_N(N, 3.0 * (N / 1e5) ** 0.01)  # loss rises with N
    (problem, fix), = not_identified(fit)
    assert problem.startswith("alpha_N = ") and "<= 0" in problem and fix


def test_a_parameter_outside_its_grid_and_failed_bootstraps_are_not_identified():
    df = S.isoflop(S.chinchilla(), [1e15], n_sizes=6, noise=0.01)  # one budget: N and D move together
    fit = fit_table(fit_approach3, df, grid="small")
    reasons = [p for p, _ in not_identified(fit)]
    assert any("one compute budget" in p for p in reasons)
    two = S.isoflop(S.chinchilla(), [1e15, 4e15], n_sizes=6, noise=0.01)
    tight = {"alpha": [0.5, 1.0], "beta": [0.5, 1.0], "e": [-1.0, 0.0], "a": [0.0, 5.0], "b": [0.0, 5.0]}
    reasons = [p for p, _ in not_identified(fit_table(fit_approach3, two, grid=tight))]
    assert any("ends outside the range its starts cover" in p for p in reasons)
    assert not any("one compute budget" in p for p in reasons)
    failing = dataclasses.replace(fit_L_N(np.geomspace(1e5, 1e8, 8), np.geomspace(4, 3, 8)),
                                  extra={"n_boot": 100, "n_failed": 11})
    assert any("11 of 100 bootstrap refits failed" in p for p, _ in not_identified(failing))
    fine = dataclasses.replace(failing, extra={"n_boot": 100, "n_failed": 10})
    assert not_identified(fine) == []


def test_fewer_distinct_inputs_than_parameters_is_not_identified():
    fit = fit_L_N([1e5, 1e5, 2e5], [4.0, 4.1, 3.9])
    fit = dataclasses.replace(fit, data=fit.data.iloc[:2])  # both rows at N = 1e5
    assert any("1 distinct input value(s) for 2 parameters" in p for p, _ in not_identified(fit))


def test_an_exponent_whose_interval_reaches_zero_is_not_identified():
    fit = fit_L_N(np.geomspace(1e5, 1e8, 8), np.geomspace(4, 3, 8))
    unsure = dataclasses.replace(fit, intervals={"alpha_N": (-0.01, 0.05)})
    (problem, _), = not_identified(unsure)
    assert "95% interval of alpha_N reaches -0.01 <= 0" in problem
    assert not_identified(dataclasses.replace(fit, intervals={"alpha_N": (0.01, 0.05)})) == []


def test_an_exponent_known_only_within_more_than_a_factor_10_is_not_identified():
    """The quickstart's L(N, S_min) had alpha_N 2.01 [0.70, 19.69]: positive, but pinned down by nothing."""
    fit = fit_L_N(np.geomspace(1e5, 1e8, 8), np.geomspace(4, 3, 8))
    (problem, fix), = not_identified(dataclasses.replace(fit, intervals={"alpha_N": (0.70, 19.69)}))
    assert "interval of alpha_N [0.7, 19.7] spans a factor 28 (> 10)" in problem and fix
    assert not_identified(dataclasses.replace(fit, intervals={"alpha_N": (0.1, 0.9)})) == []  # a factor 9 holds
