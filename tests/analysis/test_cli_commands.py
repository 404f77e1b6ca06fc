"""The command line: numbers, JSON output, and exit status 2 with a one-line message for user mistakes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglaws import chinchilla, frontier, kaplan
from scalinglaws.cli import main
from scalinglaws.table import fit_table, read_table

TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "analysis" / "sweep.csv"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_json_matches_formula(capsys):
    code, out, _ = run(capsys, "predict", "--law", "chinchilla", "--N", "70e9", "--D", "1.4e12", "--json")
    assert code == 0
    assert json.loads(out)["loss"] == pytest.approx(1.69 + 406.4 / 70e9**0.34 + 410.7 / 1.4e12**0.28, rel=1e-12)
    code, out, _ = run(capsys, "predict", "--law", "kaplan", "--N", "1e9", "--D", "2e10")
    assert code == 0 and f"{((6.4e13 / 1e9) ** (0.076 / 0.103) + 1.8e13 / 2e10) ** 0.103:.4f}" in out


def test_allocate_bcrit_compare_inference(capsys):
    code, out, _ = run(capsys, "allocate", "--law", "epoch", "--C", "5.76e23", "--json")
    a = json.loads(out)
    assert code == 0 and 6 * a["N_opt"] * a["D_opt"] == pytest.approx(5.76e23) and 15 < a["tokens_per_param"] < 25
    code, out, _ = run(capsys, "bcrit", "--loss", "3.0", "--json")
    assert json.loads(out)["B_crit_tokens"] == pytest.approx(2e8 / 3.0 ** (1 / 0.21))
    code, out, _ = run(capsys, "compare", "--law", "chinchilla")
    assert code == 0 and all(p in out for p in ("GPT-3", "Gopher", "Chinchilla", "LLaMA-1 65B", "LLaMA-2 70B"))
    code, out, _ = run(capsys, "compare", "--plan", "mine:1e9:2e10", "--json")
    assert [r["plan"] for r in json.loads(out)] == ["mine"]
    code, out, _ = run(capsys, "inference", "--law", "chinchilla", "--loss", "2.0", "--inference-tokens", "1e14",
                       "--json")
    r = json.loads(out)
    assert code == 0 and r["N"] < r["chinchilla_N"] and r["D"] > r["chinchilla_D"] and 0 < r["saving"] < 1


@pytest.mark.parametrize("approach, fn, kw", [("2-classic", frontier.fit_approach2, {}),
                                               ("3", chinchilla.fit_approach3, {"grid": "small"}),
                                               ("kaplan", kaplan.fit_L_ND, {})])
def test_fit_json_matches_fit_function(capsys, approach, fn, kw):
    argv = ["fit", TABLE, "--approach", approach, "--json"] + (["--grid", "small"] if approach == "3" else [])
    code, out, _ = run(capsys, *argv)
    assert code == 0
    got = json.loads(out)
    expected = fit_table(fn, read_table(TABLE), **kw)
    assert got["params"] == pytest.approx({k: float(v) for k, v in expected.params.items()}, rel=1e-9)
    assert got["excluded"] == {"diverged": 2, "failed": 1}
    if approach == "2-classic":
        assert list(got["refused"].values())[0].startswith("minimum outside the sampled range")


def test_fit_with_column_mapping_save_and_predict(capsys, tmp_path):
    df = pd.read_csv(TABLE).rename(columns={"n_params": "params", "tokens": "toks", "loss": "val_loss"})
    df = df.drop(columns=["flops_6nd"])
    path = tmp_path / "mine.parquet"
    df.to_parquet(path)
    fit_json = tmp_path / "fit.json"
    code, out, _ = run(capsys, "fit", path, "--approach", "3", "--grid", "small", "--col", "N=params",
                       "--col", "D=toks", "--col", "loss=val_loss", "--save", fit_json)
    assert code == 0 and "alpha" in out and fit_json.is_file()
    saved = json.loads(fit_json.read_text())
    code, out, _ = run(capsys, "predict", "--law", fit_json, "--N", "1e6", "--D", "1e8", "--json")
    p = saved["params"]
    expected = p["E"] + p["A"] / 1e6 ** p["alpha"] + p["B"] / 1e8 ** p["beta"]
    assert code == 0 and json.loads(out)["loss"] == pytest.approx(expected)


def _bad(capsys, *argv):
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_user_mistakes_exit_2_with_one_line(capsys, tmp_path):
    msg = _bad(capsys, "fit", tmp_path / "nope.csv", "--approach", "3")
    assert "nope.csv" in msg and "not found" in msg

    msg = _bad(capsys, "fit", TABLE, "--approach", "3", "--col", "loss=val_loss")
    assert "'val_loss'" in msg and "Fix" in msg

    df = pd.read_csv(TABLE).drop(columns=["loss"])
    df.to_csv(tmp_path / "noloss.csv", index=False)
    msg = _bad(capsys, "fit", tmp_path / "noloss.csv", "--approach", "2")
    assert "'loss'" in msg and "missing" in msg

    df = pd.read_csv(TABLE)
    df.loc[5, "loss"] = np.nan
    df.to_csv(tmp_path / "nan.csv", index=False)
    msg = _bad(capsys, "fit", tmp_path / "nan.csv", "--approach", "3")
    assert "'loss'" in msg and "row 5" in msg and "not finite" in msg

    df = pd.read_csv(TABLE)
    df[df["budget"] == df["budget"].max()].to_csv(tmp_path / "one.csv", index=False)
    msg = _bad(capsys, "fit", tmp_path / "one.csv", "--approach", "2")
    assert "budget" in msg and "at least 2 budgets" in msg

    msg = _bad(capsys, "fit", TABLE, "--approach", "2", "--save", tmp_path / "f.json")
    assert "--save" in msg and not (tmp_path / "f.json").exists()
    assert "gpt5" in _bad(capsys, "predict", "--law", "gpt5", "--N", "1e9", "--D", "1e9")
    assert "chinchilla-form" in _bad(capsys, "allocate", "--law", "kaplan", "--C", "1e21")
    assert "irreducible" in _bad(capsys, "inference", "--loss", "1.0", "--inference-tokens", "0")
    assert "name:N:D" in _bad(capsys, "compare", "--plan", "oops")


def test_report_command(capsys, tmp_path):
    out = tmp_path / "rep"
    code, stdout, err = run(capsys, "report", TABLE, "--out", out, "--bootstrap", "0", "--grid", "small", "--quiet")
    assert code == 0, err
    assert (out / "report.md").is_file() and (out / "report.html").is_file() and "report.md" in stdout
    assert "bootstrap" in _bad(capsys, "report", TABLE, "--out", out, "--bootstrap", "-1")


def test_module_entry_point(tmp_path):
    out = tmp_path / "rep"
    proc = subprocess.run([sys.executable, "-m", "scalinglaws", "report", str(tmp_path / "missing.parquet"),
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "missing.parquet" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "scalinglaws", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and all(c in proc.stdout for c in ("report", "fit", "predict", "inference"))


def test_bootstrapped_fit_carries_intervals_into_allocate(capsys, tmp_path):
    fit_json = tmp_path / "fit.json"
    code, _, err = run(capsys, "fit", TABLE, "--approach", "3", "--grid", "small", "--bootstrap", "12",
                       "--save", fit_json)
    assert code == 0, err
    assert len(json.loads(fit_json.read_text())["samples"]) == 12
    code, out, _ = run(capsys, "allocate", "--law", fit_json, "--C", "1e17", "--json")
    a = json.loads(out)
    for key, value in (("N", a["N_opt"]), ("D", a["D_opt"]), ("loss", a["loss"])):
        lo, hi = a["intervals"][key]
        assert lo <= value * (1 + 1e-9) and value <= hi * (1 + 1e-9) and lo < hi


def test_version_prints_the_package_version(capsys):
    import scalinglaws

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"scalinglaws {scalinglaws.__version__}"


def test_sweep_picks_one_sweep_of_a_runs_root(capsys):
    root = Path(__file__).resolve().parents[2] / "results" / "v1" / "runs"  # the first reproduction
    code, by_name, _ = run(capsys, "fit", root, "--sweep", "repro_isoflop", "--approach", "2", "--json")
    assert code == 0
    code, by_path, _ = run(capsys, "fit", root / "repro_isoflop", "--approach", "2", "--json")
    assert code == 0 and json.loads(by_name) == json.loads(by_path)
    code, _, err = run(capsys, "report", root, "--sweep", "nope", "--out", "unused")
    assert code == 2 and "repro_isoflop" in err and "Fix:" in err
