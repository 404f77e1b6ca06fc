"""The law registry: every law recovers its own truth; unidentified fits say why; Epoch's Chinchilla refit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import _synthetic_runs as S
from scalinglaws.datasets import chinchilla_epoch
from scalinglaws.errors import InputError
from scalinglaws.noise import estimate_noise, seed_groups
from scalinglaws.registry import LAWS, describe_laws, fit_law
from scalinglaws.table import read_table

BUDGETS = [1e15 * 4 ** k for k in range(5)]


def test_every_law_is_listed_with_formula_and_source():
    laws = describe_laws()
    assert list(laws["law"]) == ["chinchilla", "kaplan", "overtrain", "data_constrained", "pinned_e"]
    assert laws["formula"].str.startswith("L = ").all()
    assert laws["source"].str.contains("20").all()  # a year: each cites its paper


@pytest.mark.parametrize("law, truth", [
    ("chinchilla", S.chinchilla()),
    ("overtrain", S.overtrain()),
], ids=["chinchilla", "overtrain"])
def test_chinchilla_and_overtraining_laws_recover_their_truth(law, truth):
    df = S.isoflop(truth, BUDGETS, noise=0.002)
    fit = fit_law(law, df, grid="small")
    assert not fit.flags
    assert fit.params["E"] == pytest.approx(1.8, abs=0.05)
    expected = {"alpha": 0.34, "beta": 0.34} if law == "chinchilla" else {"eta": 0.17}
    for name, value in expected.items():
        assert fit.params[name] == pytest.approx(value, abs=0.03 if law == "chinchilla" else 0.01), name


def test_kaplan_recovers_eq_1_5():
    truth = dict(N_c=8.8e13, D_c=5.4e13, alpha_N=0.076, alpha_D=0.095)
    law = lambda N, D: ((truth["N_c"] / N) ** (truth["alpha_N"] / truth["alpha_D"]) + truth["D_c"] / D) ** truth["alpha_D"]
    df = S.isoflop(law, BUDGETS, noise=0.001, span=1.0)
    fit = fit_law("kaplan", df, grid="small")
    assert fit.params["alpha_N"] == pytest.approx(0.076, abs=0.01)
    assert fit.params["alpha_D"] == pytest.approx(0.095, abs=0.01)


def test_data_constrained_law_recovers_R_star_from_repeated_runs():
    truth = dict(E=1.8, A=400.0, B=400.0, alpha=0.34, beta=0.34, R=5.0)
    df = S.isoflop(S.chinchilla(), BUDGETS, noise=0.0)
    rng = np.random.default_rng(0)
    df["epochs"] = np.where(np.arange(len(df)) % 2 == 0, 1.0, rng.uniform(2, 40, len(df)))
    U = df["D"] / df["epochs"]
    R_D = df["D"] / U - 1
    D_eff = U + U * truth["R"] * (1 - np.exp(-R_D / truth["R"]))
    df["loss"] = (truth["E"] + truth["A"] / df["N"] ** truth["alpha"] + truth["B"] / D_eff ** truth["beta"]) \
        * np.exp(rng.normal(0, 0.001, len(df)))
    fit = fit_law("data_constrained", df, grid="small")
    assert not fit.flags
    assert fit.params["R_D_star"] == pytest.approx(5.0, rel=0.15)
    assert fit.params["beta"] == pytest.approx(0.34, abs=0.03)
    # Without the epochs column nothing repeats: R_D* is not identified, and the fit says so.
    plain = fit_law("data_constrained", df.drop(columns="epochs"), grid="small")
    assert any("R_D* carries no information" in p for p, _ in plain.extra["not_identified"])


def test_pinned_E_fixes_the_irreducible_loss():
    df = S.isoflop(S.chinchilla(), BUDGETS, noise=0.002)
    fit = fit_law("pinned_e", df, grid="small", E=1.8)
    assert fit.params["E"] == 1.8
    assert fit.params["alpha"] == pytest.approx(0.34, abs=0.03)
    with pytest.raises(InputError, match="E"):
        fit_law("pinned_e", df, E=-1.0)


def test_unidentified_fits_say_why_and_how_to_fix():
    df = S.isoflop(S.chinchilla(), BUDGETS[:1], n_sizes=4, noise=0.01)  # one budget: N and D move together
    fit = fit_law("chinchilla", df, grid="small")
    problems = fit.extra["not_identified"]
    assert any("distinct (N, D) for 5 parameters" in p for p, _ in problems)
    assert all(fix for _, fix in problems)
    assert fit.flags and all(f.startswith("not identified: ") for f in fit.flags)


def test_unknown_law_and_missing_column_are_input_errors():
    df = S.isoflop(S.chinchilla(), BUDGETS, noise=0.002)
    with pytest.raises(InputError, match="unknown law"):
        fit_law("nope", df)
    with pytest.raises(InputError, match="loss"):
        fit_law("chinchilla", df.drop(columns="loss"))
    negative = df.assign(loss=df["loss"].where(df.index != 3, -1.0))  # a table not read through read_table
    with pytest.raises(InputError, match=r"column 'loss', row\[3\].*must be finite and > 0"):
        fit_law("chinchilla", negative)
    with pytest.raises(InputError, match="must be numbers"):
        fit_law("chinchilla", df.astype({"N": object}).assign(N=["many"] + list(df["N"].iloc[1:])))


def test_bootstrap_resamples_whole_seed_groups_and_intervals_contain_the_truth():
    df = S.isoflop(S.overtrain(), BUDGETS, noise=0.004, seeds=3)
    fit = fit_law("overtrain", df, grid="small", n_boot=60, seed=1)
    lo, hi = fit.intervals["eta"]
    assert lo < fit.params["eta"] < hi and lo < 0.17 < hi
    assert fit.extra["noise"].source == "seeds"
    assert fit.extra["noise"].sigma == pytest.approx(0.004, rel=0.25)
    assert fit.extra["n_failed"] <= 6


def test_chinchilla_epoch_ships_245_points():
    full = chinchilla_epoch()
    assert len(full) == 245
    assert set(full.columns) >= {"N", "D", "C", "loss"}
    np.testing.assert_allclose(full["C"], 6 * full["N"] * full["D"], rtol=1e-12)
    assert len(chinchilla_epoch(drop_highest_loss=5)) == 240
    assert chinchilla_epoch(drop_highest_loss=5)["loss"].max() < full["loss"].nlargest(5).min()


def test_epoch_refit_reproduces_besiroglu_2024():
    """240 points (five of highest loss dropped), Chinchilla grid of starts, Huber delta 1e-3, L-BFGS."""
    fit = fit_law("chinchilla", chinchilla_epoch(drop_highest_loss=5), grid="chinchilla", n_boot=60, seed=0)
    assert fit.params["E"] == pytest.approx(1.8172, abs=0.005)
    assert fit.params["alpha"] == pytest.approx(0.3473, abs=0.005)
    assert fit.params["beta"] == pytest.approx(0.3672, abs=0.005)
    for name in ("E", "alpha", "beta", "A", "B"):
        lo, hi = fit.intervals[name]
        assert lo <= fit.params[name] <= hi, name
    assert not fit.flags


def test_prediction_for_a_new_run_includes_noise_and_the_optimum_matches_eq_4():
    from scalinglaws.chinchilla import compute_optimal
    from scalinglaws.registry import optimal_N, predict_run

    df = S.isoflop(S.chinchilla(), BUDGETS, noise=0.005, seeds=2, seed=5)
    fit = fit_law("chinchilla", df, grid="small", n_boot=40)
    C = 4 * BUDGETS[-1]
    N_opt = optimal_N(fit, C)
    p = {k: fit.params[k] for k in ("E", "A", "B", "alpha", "beta")}
    assert N_opt == pytest.approx(float(compute_optimal(C, **p)[0]), rel=0.01)
    low, loss, high = predict_run(fit, N_opt, C / (6 * N_opt))
    truth = float(S.chinchilla()(N_opt, C / (6 * N_opt)))
    assert low < truth < high and low < loss < high
    # the interval is at least as wide as the seeds' noise alone (+-1.96 sigma in log loss)
    assert np.log(high / low) >= 2 * 1.9 * fit.extra["noise"].sigma
    assert fit.extra["noise"].source == "seeds"


def test_runs_that_differ_only_in_repetition_are_configs_not_seeds(tmp_path):
    """Muennighoff-style runs: one (N, D) trained for 1, 4 and 16 epochs of fewer unique tokens, 2 seeds each."""
    base = S.isoflop(S.chinchilla(), BUDGETS[:3], n_sizes=4, noise=0.0)
    rng = np.random.default_rng(0)
    rows = []
    for epochs in (1.0, 4.0, 16.0):
        for seed in (0, 1):
            rows.append(base.assign(epochs=epochs, seed=seed, run_id=[f"e{epochs:g}-s{seed}-{i}" for i in base.index],
                                    loss=base["loss"] * (1 + 0.05 * np.log(epochs)) *
                                    np.exp(rng.normal(0, 0.003, len(base)))))
    df = pd.concat(rows, ignore_index=True)
    path = tmp_path / "repeats.csv"
    df.drop(columns="run_id").to_csv(path, index=False)
    assert len(read_table(path)) == len(df)  # not rejected as duplicates: epochs tell them apart
    groups = seed_groups(df)
    assert len(np.unique(groups)) == len(base) * 3  # one group per (N, D, epochs), its 2 seeds together
    noise = estimate_noise(df)
    assert noise.source == "seeds" and noise.sigma == pytest.approx(0.003, rel=0.35)
    fit = fit_law("data_constrained", df, grid="small")
    assert not any("distinct" in p for p, _ in fit.extra["not_identified"])


def test_unidentified_parameters_are_named_as_the_user_reads_them():
    df = S.isoflop(S.chinchilla(E=0.05, A=400.0, B=400.0), BUDGETS[:2], n_sizes=4, noise=0.02, seed=3)
    problems = [p for p, _ in fit_law("chinchilla", df, grid="small").extra["not_identified"]]
    outside = [p for p in problems if "ends outside" in p]
    assert outside and all(p.split(" = ")[0] in ("E", "A", "B", "alpha", "beta") for p in outside), problems
