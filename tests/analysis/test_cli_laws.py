"""`scalinglaws laws`, `fit --law NAME` and `backtest` (on a table and on a shipped data set)."""
from __future__ import annotations

import json

import pytest

from scalinglaws.datasets import chinchilla_epoch
from scalinglaws.registry import LAWS, fit_law
from scalinglaws.table import read_table
from test_cli_commands import TABLE, run


def test_laws_lists_every_law_with_its_formula(capsys):
    code, out, _ = run(capsys, "laws", "--json")
    laws = json.loads(out)
    assert code == 0 and [r["law"] for r in laws] == list(LAWS)
    assert all(r["formula"].startswith("L = ") for r in laws)
    assert all("et al. 20" in r["source"] for r in laws)  # each names its paper


def test_fit_law_json_equals_fit_law(capsys):
    code, out, _ = run(capsys, "fit", TABLE, "--law", "overtrain", "--grid", "small", "--json")
    assert code == 0
    printed = json.loads(out)
    fit = fit_law("overtrain", read_table(TABLE), grid="small")
    assert printed["params"] == pytest.approx(dict(fit.params), rel=1e-9)
    assert printed["not_identified"] == [] and "residual scatter" in printed["noise"]


def test_backtest_on_the_shipped_chinchilla_data(capsys):
    code, out, _ = run(capsys, "backtest", "--dataset", "chinchilla_epoch", "--laws", "chinchilla,overtrain",
                       "--grid", "small", "--no-cv", "--json")
    assert code == 0
    result = json.loads(out)
    table = chinchilla_epoch(drop_highest_loss=5)
    assert result["n_fit"] + result["n_held"] == len(table) == 240
    assert result["cutoff_C"] == pytest.approx(table["C"].max() / 8)
    assert result["winner"] in ("chinchilla", "overtrain")
    assert all(r["mape"] > 0 for r in result["scores"])
    code, out, _ = run(capsys, "backtest", "--dataset", "chinchilla_epoch", "--laws", "chinchilla", "--grid", "small",
                       "--no-cv")
    assert code == 0 and out.startswith("data set chinchilla_epoch: ") and "240 of its 245 points" in out


def test_backtest_table_shows_no_scores_for_a_law_it_does_not_identify(capsys, tmp_path):
    """data_constrained without repetition is not identified: its row says why and gives no MAPE."""
    df = chinchilla_epoch(drop_highest_loss=5)
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    code, out, _ = run(capsys, "backtest", str(path), "--laws", "chinchilla,data_constrained", "--grid", "small",
                       "--no-cv")
    row = next(line for line in out.splitlines() if "data_constrained" in line)
    assert code == 0 and "no:" in row and "%" not in row.split("no:")[0]


@pytest.mark.parametrize("argv, needle", [
    (["backtest"], "source: missing"),
    (["backtest", TABLE, "--dataset", "chinchilla_epoch"], "--dataset: given together with a source"),
    (["backtest", "--dataset", "nope"], "unknown data set 'nope'"),
    (["backtest", TABLE, "--cutoff", "1"], "nothing to fit on"),
    (["fit", TABLE, "--law", "pinned_e", "--E", "-1"], "E: -1.0 is not a finite value >= 0"),
    (["fit", "--approach", "3"], "--approach needs a table or runs directory"),
])
def test_bad_requests_exit_2_with_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_fit_law_says_not_identified_before_any_estimate(capsys, tmp_path):
    one_budget = read_table(TABLE)
    one_budget = one_budget[one_budget["C"] == one_budget["C"].min()]
    path = tmp_path / "one_budget.csv"
    one_budget.to_csv(path, index=False)
    code, out, _ = run(capsys, "fit", path, "--law", "chinchilla", "--grid", "small")
    assert code == 0
    table = out.index("┃ parameter")
    assert "not identified by these 4 runs" in out[:table] and "not a result" in out[:table]
    assert "distinct (N, D) for 5 parameters" in out[:table]


def test_fit_approach_2_is_the_robust_fit_and_2_classic_the_old_one(capsys):
    from scalinglaws.frontier import fit_approach2
    from scalinglaws.isoflop import fit_approach2_robust
    from scalinglaws.source import load_source
    from scalinglaws.table import fit_table

    df = load_source(str(TABLE)).table
    code, out, _ = run(capsys, "fit", TABLE, "--approach", "2", "--json")
    robust = json.loads(out)
    assert code == 0 and robust["name"] == "Chinchilla Approach 2 (robust)"
    assert robust["params"] == pytest.approx(dict(fit_table(fit_approach2_robust, df).params))
    assert "a" in robust["intervals"]
    minima = fit_table(fit_approach2_robust, df).extra["minima"]
    assert [m["N_opt"] for m in robust["minima"]] == pytest.approx(minima["N_opt"].tolist())
    assert sum(m["weight"] for m in robust["minima"]) == pytest.approx(1.0)
    code, out, _ = run(capsys, "fit", TABLE, "--approach", "2")  # the table shows each budget's minimum
    assert code == 0 and "Minimum of each budget" in out and "sigma_logN" in out
    from scalinglaws._format import fmt
    assert all(fmt(n) in out.split("Minimum of each budget")[1] for n in minima["N_opt"])
    code, out, _ = run(capsys, "fit", TABLE, "--approach", "2-classic", "--json")
    assert json.loads(out)["params"] == pytest.approx(dict(fit_table(fit_approach2, df).params))
