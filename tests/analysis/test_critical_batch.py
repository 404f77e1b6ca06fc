"""The critical batch size (Kaplan et al. 2020, sec 5.1): eq 5.1 per loss, eq 5.3 across losses, and both from
learning curves made by the laws they assume."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from _synthetic_runs import KAPLAN_TRUE, kaplan_curves

from scalinglaws.critical_batch import (batch_size_sweeps, fit_B_crit, fit_critical_batch, fit_S_E,
                                        measure_critical_batch, steps_to_loss)
from scalinglaws.errors import InputError
from scalinglaws.laws import load_B_crit, save_B_crit


def true_B_crit(L):
    return KAPLAN_TRUE["B_star"] / np.asarray(L) ** (1 / KAPLAN_TRUE["alpha_B"])


@pytest.mark.parametrize("B_crit", [3e3, 5e4])
def test_eq_5_1_recovers_B_crit_from_pairs_it_generated(B_crit):
    B = np.geomspace(1e3, 1e5, 5)  # 2 decades around both B_crit values
    S_min = 2500.0
    S = S_min * (1 + B_crit / B) * np.exp(np.random.default_rng(0).normal(0, 0.01, 5))
    E = S * B  # = E_min (1 + B / B_crit) up to the noise, E_min = B_crit S_min
    fit = fit_S_E(S, E)
    assert fit.ok, fit.flags
    assert fit.params["B_crit"] == pytest.approx(B_crit, rel=0.08)
    assert fit.params["S_min"] == pytest.approx(S_min, rel=0.05)
    assert fit.params["E_min"] == pytest.approx(B_crit * S_min, rel=0.08)
    # the fitted hyperbola satisfies eq 5.1 exactly
    s, e = fit.predict(B), fit.predict(B) * B
    np.testing.assert_allclose((s / fit.params["S_min"] - 1) * (e / fit.params["E_min"] - 1), 1.0, rtol=1e-9)


def test_eq_5_1_solver_reaches_scipys_least_squares_minimum():
    from scipy.optimize import least_squares

    rng = np.random.default_rng(3)
    for _ in range(60):  # B_crit anywhere from far below to far above the batch sizes, 0.3%-5% noise
        B = np.sort(np.exp(rng.uniform(np.log(1e2), np.log(1e6), rng.integers(3, 7))))
        S = 1e3 * (1 + np.exp(rng.uniform(np.log(10), np.log(1e7))) / B) * np.exp(rng.normal(0, rng.choice([0.003, 0.05]),
                                                                                             len(B)))
        fit = fit_S_E(S, S * B)
        hi = np.log([S.min(), (S * B).min()])

        def residual(t):
            return np.logaddexp(t[0], t[1] - np.log(B)) - np.log(S)

        best = min(2 * least_squares(residual, x0, bounds=(hi - 23, hi + 1e-9)).cost for x0 in (hi - 1, hi - 12))
        assert fit.objective <= best * (1 + 1e-4) + 1e-12


def test_eq_5_1_flags_batch_sizes_that_do_not_bracket_B_crit():
    B = np.geomspace(1e3, 4e3, 4)  # all far below B_crit = 1e6: S ~ E_min / B, S_min unmeasurable
    S = 100.0 * (1 + 1e6 / B)
    fit = fit_S_E(S, S * B)
    assert fit.flags and ("S_min" in fit.flags[0] or "outside the batch sizes" in fit.flags[0])
    with pytest.raises(InputError, match="2 distinct batch sizes"):
        fit_S_E([10.0, 10.0], [1e4, 1e4])


def test_eq_5_3_recovers_B_star_and_alpha_B():
    L = np.geomspace(3.0, 6.0, 8)
    B = 2e8 / L ** (1 / 0.21) * np.exp(np.random.default_rng(1).normal(0, 0.02, 8))
    fit = fit_B_crit(L, B)
    assert fit.ok, fit.flags
    assert fit.params["alpha_B"] == pytest.approx(0.21, rel=0.05)
    assert np.log(fit.params["B_star"]) == pytest.approx(np.log(2e8), rel=0.02)
    rising = fit_B_crit(L, L ** 2)
    assert any("does not rise" in f for f in rising.flags)


def test_steps_to_loss_interpolates_the_running_minimum():
    step = np.array([10, 20, 40, 80])
    loss = np.array([6.0, 5.0, 5.5, 4.0])  # the bump at step 40 does not undo step 20's progress
    S = steps_to_loss(step, loss, [5.0, 4.5, 7.0, 3.0, 6.0])
    assert S[0] == pytest.approx(20.0)
    # 4.5 lies between the envelope's 5.0 (step 40) and 4.0 (step 80): log-log interpolation
    t = np.log(4.5 / 5.0) / np.log(4.0 / 5.0)
    assert S[1] == pytest.approx(np.exp(np.log(40) + t * np.log(2)))
    assert np.isnan(S[2]) and np.isnan(S[3]) and np.isnan(S[4])  # above the start / never reached / at step 10


def test_sweeps_are_runs_of_one_shape_at_three_or_more_batch_sizes():
    runs, _ = kaplan_curves([1e5, 4e5], [8, 32, 128], points=5)
    runs = pd.concat([runs, runs.iloc[:2].assign(run_id=["x1", "x2"], n_params=1.0, batch_size=[8, 16])])
    runs["family"] = [None if n == 1e5 else "gpt2" for n in runs["n_params_nonembed"]]  # null in older runs
    labels = batch_size_sweeps(runs)
    assert labels.iloc[:6].nunique() == 2 and labels.iloc[6:].isna().all()


def test_end_to_end_from_learning_curves():
    runs, curves = kaplan_curves([5e4, 2e5], [8, 16, 32, 64, 128, 256], noise=0.002)
    points, steps = measure_critical_batch(curves, runs)
    assert len(points) == 16 and (points["flags"] == "").all()
    np.testing.assert_allclose(points["B_crit"], true_B_crit(points["L"]), rtol=0.08)
    assert set(steps.columns) == {"sweep", "run_id", "B", "L", "S", "E"} and len(steps) == 12 * 8
    fit = fit_critical_batch(curves, runs, n_boot=60, seed=0)
    assert fit.ok, fit.flags
    assert fit.params["alpha_B"] == pytest.approx(KAPLAN_TRUE["alpha_B"], rel=0.06)
    assert np.log(fit.params["B_star"]) == pytest.approx(np.log(KAPLAN_TRUE["B_star"]), rel=0.02)
    lo, hi = fit.intervals["alpha_B"]
    assert lo < KAPLAN_TRUE["alpha_B"] < hi and hi - lo < 0.1
    iv = fit.extra["point_intervals"]
    assert (iv["low"] <= points["B_crit"]).all() and (points["B_crit"] <= iv["high"]).all()


def test_no_sweep_is_an_input_error():
    runs, curves = kaplan_curves([5e4, 2e5], [32], points=10)
    with pytest.raises(InputError, match="no batch-size sweep.*Fix: train one size at several batch sizes"):
        fit_critical_batch(curves, runs)
    with pytest.raises(InputError, match="batch_size"):
        fit_critical_batch(curves, runs.drop(columns="batch_size"))


def test_saved_fit_reads_back(tmp_path):
    runs, curves = kaplan_curves([2e5], [8, 32, 128, 256], noise=0.002)
    fit = fit_critical_batch(curves, runs, n_boot=20)
    path = save_B_crit(fit, tmp_path / "bcrit.json")
    law = load_B_crit(path)
    assert law.params == pytest.approx(dict(fit.params))
    assert law.predict(5.0) == pytest.approx(float(fit.predict(5.0)), rel=1e-9)
    assert len(law.extra["samples"]) == 20 - fit.extra["n_failed"]
    (tmp_path / "other.json").write_text(json.dumps({"params": {"E": 1.0}}))
    with pytest.raises(InputError, match="holds no B_crit"):
        load_B_crit(tmp_path / "other.json")


def test_cli_fits_saves_and_uses_a_fitted_B_crit(tmp_path, capsys):
    from _synthetic_runs import write_kaplan_runs

    from scalinglaws.cli import main

    root, _, _ = write_kaplan_runs(tmp_path / "runs", sizes=(1e5, 3e5))
    saved = tmp_path / "bcrit.json"
    assert main(["fit", str(root), "--approach", "bcrit", "--bootstrap", "20", "--save", str(saved), "--json"]) == 0
    fitted = json.loads(capsys.readouterr().out)
    assert fitted["params"]["alpha_B"] == pytest.approx(KAPLAN_TRUE["alpha_B"], abs=0.02)
    assert len(fitted["points"]) == 16 and set(fitted["intervals"]) == {"B_star", "alpha_B"}
    assert main(["bcrit", "--loss", "5.0", "--law", str(saved), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    p = fitted["params"]
    assert out["B_crit_tokens"] == pytest.approx(p["B_star"] / 5.0 ** (1 / p["alpha_B"]), rel=1e-9)
    lo, hi = out["interval"]
    assert lo < out["B_crit_tokens"] < hi
    assert out["B_crit_tokens"] == pytest.approx(true_B_crit(5.0), rel=0.15)
    # without --law: Kaplan's published formula, as before
    assert main(["bcrit", "--loss", "5.0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["B_crit_tokens"] == pytest.approx(2e8 / 5.0 ** (1 / 0.21))


def test_cli_bcrit_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    from scalinglaws.cli import main

    assert main(["bcrit", "--loss", "5.0", "--law", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.json: file not found" in err and "Fix:" in err
    table = tmp_path / "runs.csv"
    pd.DataFrame({"N": [1e5, 2e5], "D": [1e8, 1e8], "loss": [4.0, 3.9]}).to_csv(table, index=False)
    assert main(["fit", str(table), "--approach", "bcrit"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs learning curves" in err
