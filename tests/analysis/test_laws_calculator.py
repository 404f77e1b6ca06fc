"""Published laws, the calculator, and fit.json round trips."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scalinglaws import calculator
from scalinglaws.errors import InputError
from scalinglaws.laws import CHINCHILLA, EPOCH, KAPLAN, Law, kaplan_compute_loss, law_from_fit, load_law, save_law
from scalinglaws.result import FitResult


def test_chinchilla_prediction_matches_the_formula():
    # Hoffmann et al. 2022 published Approach 3: E 1.69, A 406.4, B 410.7, alpha 0.34, beta 0.28.
    N, D = 70e9, 1.4e12
    expected = 1.69 + 406.4 / N**0.34 + 410.7 / D**0.28
    assert calculator.predict("chinchilla", N, D) == pytest.approx(expected, rel=1e-12)
    assert calculator.predict("epoch", N, D) == pytest.approx(1.82 + 482 / N**0.348 + 2085 / D**0.366, rel=1e-12)


def test_kaplan_eq_1_5_matches_the_formula():
    # Kaplan 2020 eq 1.5, Table 2: a_N 0.076, a_D 0.103, N_c 6.4e13, D_c 1.8e13.
    N, D = 1e9, 2e10
    expected = ((6.4e13 / N) ** (0.076 / 0.103) + 1.8e13 / D) ** 0.103
    assert calculator.predict("kaplan", N, D) == pytest.approx(expected, rel=1e-12)
    # with infinite data eq 1.5 reduces to L(N) = (N_c/N)^a_N
    assert KAPLAN.loss(N, 1e40) == pytest.approx((6.4e13 / N) ** 0.076, rel=1e-9)


def test_kaplan_compute_law():
    # L(C_min) = (C_c / C_min)^0.050, C_c = 3.1e8 PF-days; at C_min = C_c the loss is 1.
    assert kaplan_compute_loss(3.1e8 * 8.64e19) == pytest.approx(1.0)
    assert kaplan_compute_loss(1.0 * 8.64e19) == pytest.approx(3.1e8**0.05)


def test_allocation_spends_the_budget_and_epoch_gives_about_20_tokens_per_param():
    C = 5.76e23  # Chinchilla's training compute
    for law in ("chinchilla", "epoch"):
        a = calculator.allocate(law, C)
        assert 6 * a.N * a.D == pytest.approx(C, rel=1e-10)
        # the allocation is the minimum of L along 6ND = C
        for f in (0.8, 1.25):
            N = a.N * f
            assert calculator.predict(law, N, C / (6 * N)) > a.loss
    # Epoch's refit reproduces the D ~ 20 N rule of thumb at Chinchilla's compute ...
    assert 15 < calculator.allocate("epoch", C).tokens_per_param < 25
    # ... the published Approach 3 parameters do not (Besiroglu et al. 2024's point): far more tokens per parameter.
    assert calculator.allocate("chinchilla", C).tokens_per_param > 60


def test_frontier_exponent_of_published_law():
    a = CHINCHILLA.frontier_exponent
    assert a == pytest.approx(0.28 / (0.34 + 0.28)) and round(a, 4) == 0.4516
    C = np.array([1e20, 1e24])
    N_opt, D_opt = CHINCHILLA.allocate(C)
    slope = np.diff(np.log(N_opt)) / np.diff(np.log(C))
    assert slope[0] == pytest.approx(0.4516, abs=1e-4)
    assert EPOCH.frontier_exponent == pytest.approx(0.513, abs=1e-3)


def test_kaplan_law_has_no_allocation():
    with pytest.raises(InputError, match="chinchilla-form"):
        calculator.allocate("kaplan", 1e21)
    table = calculator.compare("kaplan")
    assert table["loss_opt"].isna().all() and table["loss"].notna().all()


def test_bcrit_formula():
    # B_crit(L) = B* / L^(1/a_B), B* = 2e8 tokens, a_B = 0.21 (Kaplan 2020)
    assert calculator.bcrit(3.0) == pytest.approx(2e8 / 3.0 ** (1 / 0.21))
    assert calculator.bcrit(1.0) == pytest.approx(2e8)
    assert calculator.bcrit(2.0) > calculator.bcrit(3.0)
    with pytest.raises(InputError, match="loss"):
        calculator.bcrit(-1.0)


def test_compare_famous_plans():
    table = calculator.compare("chinchilla")
    assert list(table["plan"]) == ["GPT-3", "Gopher", "Chinchilla", "LLaMA-1 65B", "LLaMA-2 70B"]
    gpt3 = table.set_index("plan").loc["GPT-3"]
    assert gpt3["C"] == pytest.approx(6 * 175e9 * 300e9)
    assert gpt3["tokens_per_param"] == pytest.approx(300 / 175)
    assert gpt3["loss"] == pytest.approx(calculator.predict("chinchilla", 175e9, 300e9))
    # the compute-optimal model at the same compute is never worse than the plan
    assert (table["excess_loss"] >= -1e-12).all()
    # under-trained GPT-3 / Gopher waste more than Chinchilla itself
    assert gpt3["excess_loss"] > table.set_index("plan").loc["Chinchilla", "excess_loss"]
    custom = calculator.compare("epoch", dict([calculator.parse_plan("mine:1e9:2e10")]))
    assert custom.loc[0, "plan"] == "mine" and custom.loc[0, "D"] == 2e10
    with pytest.raises(InputError, match="name:N:D"):
        calculator.parse_plan("mine:1e9")


def test_inference_aware_allocation():
    T = 1e14  # inference tokens: far beyond the training set
    r = calculator.allocate_inference("chinchilla", T, loss=2.0)
    assert calculator.predict("chinchilla", r.N, r.D) == pytest.approx(2.0, rel=1e-9)
    assert r.N < r.chinchilla_N and r.D > r.chinchilla_D
    assert 0 < r.saving < 1 and r.total_flops == pytest.approx(6 * r.N * r.D + 2 * r.N * T)
    # more inference -> smaller models trained longer
    r2 = calculator.allocate_inference("chinchilla", 1e15, loss=2.0)
    assert r2.N < r.N and r2.tokens_per_param > r.tokens_per_param


def test_inference_aware_with_no_inference_is_chinchilla_optimal():
    C = 1e22
    a = calculator.allocate("epoch", C)
    r = calculator.allocate_inference("epoch", 0.0, C=C)
    assert r.loss == pytest.approx(a.loss)
    assert r.N == pytest.approx(a.N, rel=1e-4) and r.D == pytest.approx(a.D, rel=1e-4)
    assert r.saving == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(InputError, match="irreducible"):
        calculator.allocate_inference("epoch", 0.0, loss=1.5)


def _approach3_fit() -> FitResult:
    params = {"E": 1.8, "A": 400.0, "B": 900.0, "alpha": 0.33, "beta": 0.31}
    G = (params["alpha"] * params["A"] / (params["beta"] * params["B"])) ** (1 / 0.64)
    params.update(a=0.31 / 0.64, b=0.33 / 0.64, G=G)
    return FitResult(
        name="approach3", params=params, predict=lambda N, D: 0.0,
        data=pd.DataFrame({"N": [1.0, 2.0]}),
        intervals={"alpha": (0.3, 0.36), "beta": (0.29, 0.33), "E": (1.7, 1.9)}, level=0.8,
    )


def test_fit_json_round_trip_approach3(tmp_path):
    fit = _approach3_fit()
    path = tmp_path / "fit.json"
    (tmp_path / "raw.json").write_text(json.dumps(fit.to_dict()))
    save_law(fit, path)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    for p in (path, tmp_path / "raw.json"):  # save_law output and a bare FitResult.to_dict() both load
        law = load_law(str(p))
        assert law.form == "chinchilla"
        assert law.params == pytest.approx(fit.params)
        assert law.intervals["alpha"] == pytest.approx((0.3, 0.36)) and law.level == 0.8
        N, D = 3e8, 6e9
        p_ = fit.params
        assert law.loss(N, D) == pytest.approx(p_["E"] + p_["A"] / N**p_["alpha"] + p_["B"] / D**p_["beta"])
    again = load_law(str(save_law(load_law(str(path)), tmp_path / "again.json")))
    assert again.to_dict() == load_law(str(path)).to_dict()


def test_fit_json_round_trip_kaplan_nd(tmp_path):
    fit = FitResult(name="L_ND", params={"N_c": 5e13, "D_c": 2e13, "a_N": 0.08, "a_D": 0.1}, predict=lambda N, D: 0)
    law = load_law(str(save_law(fit, tmp_path / "k.json")))
    assert law.form == "kaplan_nd" and law.params == pytest.approx(fit.params)
    assert law.loss(1e9, 1e10) == pytest.approx(((5e13 / 1e9) ** 0.8 + 2e13 / 1e10) ** 0.1)


def test_intervals_propagate_to_allocation():
    law = law_from_fit(_approach3_fit())
    a = calculator.allocate(law, 1e21)
    lo, hi = a.intervals["loss"]
    assert lo <= a.loss <= hi and hi > lo
    samples = tuple({**law.params, "alpha": x} for x in np.linspace(0.31, 0.35, 21))
    law_s = Law(name="s", form="chinchilla", params=law.params, samples=samples, level=0.9)
    lo, hi = calculator.allocate(law_s, 1e21).intervals["N"]
    N_values = [law_s.allocate(1e21, s)[0] for s in samples]
    assert lo == pytest.approx(np.percentile(N_values, 5)) and hi == pytest.approx(np.percentile(N_values, 95))
    assert calculator.predict_interval("chinchilla", 1e9, 1e10) is None


def test_load_law_errors(tmp_path):
    with pytest.raises(InputError, match="neither a published law"):
        load_law("gpt5")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_law(str(bad))
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps({"params": {"x": 1.0}}))
    with pytest.raises(InputError, match="form"):
        load_law(str(odd))
    with pytest.raises(InputError, match="N"):
        calculator.predict("chinchilla", math.nan, 1e9)
