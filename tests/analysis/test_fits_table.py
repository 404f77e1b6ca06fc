"""read_table / load_runs_dir / load_curves: canonical columns, sweep defaults, and clear errors on bad input."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scalinglaws.errors import InputError
from scalinglaws.table import check_enough, fit_table, load_curves, load_runs_dir, read_table


def sweep_table():
    return pd.DataFrame({
        "run_id": ["r1", "r2", "r3", "r4"], "sweep": "iso",
        "n_params": [1e6, 2e6, 4e6, 8e6], "n_params_nonembed": [5e5, 1.5e6, 3.5e6, 7.5e6],
        "tokens": [1e8, 5e7, 2.5e7, 1e7], "flops_6nd": [6e14, 6e14, 6e14, 4.8e14],
        "flops_kaplan": [3e14, 5e14, 5e14, 4e14], "loss": [3.1, 3.0, 3.05, np.nan],
        "status": ["complete", "complete", "complete", "diverged"],
    })


def test_sweep_columns_are_mapped_and_incomplete_runs_excluded():
    df = read_table(sweep_table())
    assert list(df["N"]) == [1e6, 2e6, 4e6] and list(df["D"]) == [1e8, 5e7, 2.5e7]
    assert list(df["C"]) == [6e14] * 3 and list(df["loss"]) == [3.1, 3.0, 3.05]
    assert df.attrs["excluded"] == {"diverged": 1}
    for kept in ("n_params_nonembed", "flops_kaplan", "run_id", "sweep", "status"):
        assert kept in df.columns


def test_user_mapping_csv_and_C_computed(tmp_path):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"params": [1e6, 2e6], "toks": [1e8, 1e8], "val_loss": [3.0, 2.9]}).to_csv(path, index=False)
    df = read_table(path, columns={"N": "params", "D": "toks", "loss": "val_loss"})
    np.testing.assert_allclose(df["C"], 6 * df["N"] * df["D"])
    assert any("6 N D" in note for note in df.attrs["notes"])
    parquet = tmp_path / "runs.parquet"
    df.to_parquet(parquet)
    assert len(read_table(parquet)) == 2


@pytest.mark.parametrize("change, match", [
    (lambda t: t.drop(columns=["tokens"]), r"column 'D'.*columns are"),
    (lambda t: t.assign(loss=[3.1, np.inf, 3.0, 3.0]), r"column 'loss', row 1.*not finite"),
    (lambda t: t.assign(n_params=[1e6, 2e6, -4e6, 8e6]), r"column 'N', row 2.*must be > 0"),
    (lambda t: t.assign(tokens=[1e8, "lots", 1e8, 1e8]), r"column 'D', row 1.*non-numeric"),
    (lambda t: t.drop(columns=["flops_6nd", "flops_kaplan"]).assign(n_params=["abc", 2e6, 4e6, 8e6]),
     r"column 'N', row 0.*non-numeric"),  # named before C = 6ND is computed from it
    (lambda t: t.assign(run_id=["r1", "r2", "r1", "r4"]), r"run_id', row 2.*appears twice"),
    (lambda t: t.drop(columns=["run_id"]).assign(n_params=[1e6, 1e6, 4e6, 8e6], tokens=[1e8, 1e8, 1e7, 1e7]),
     r"row 1.*duplicate run"),
])
def test_bad_tables_raise_input_error_naming_column_and_row(change, match):
    with pytest.raises(InputError, match=match):
        read_table(change(sweep_table()))


def test_bad_mapping_and_files(tmp_path):
    with pytest.raises(InputError, match=r"'params'.*mapped to N"):
        read_table(sweep_table(), columns={"N": "params"})
    with pytest.raises(InputError, match="file not found"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="no usable rows"):
        read_table(sweep_table().assign(status="failed"))
    with pytest.raises(InputError, match=r"points for L\(N\): need at least 3, got 2"):
        check_enough(pd.DataFrame({"N": [1, 2]}), 3, "points for L(N)")


def write_run(root, sweep, run_id, summary: dict, metrics: pd.DataFrame | None = None):
    run = root / sweep / run_id
    run.mkdir(parents=True)
    pd.DataFrame([summary]).to_parquet(run / "summary.parquet")
    if metrics is not None:
        metrics.to_parquet(run / "metrics.parquet")
    return run


def test_load_runs_dir_keeps_columns_only_some_runs_have(tmp_path):
    write_run(tmp_path, "s", "a1", {"run_id": "a1", "n_params": 1e6, "tokens": 1e8, "loss": 3.0})
    write_run(tmp_path, "s", "b2", {"run_id": "b2", "n_params": 2e6, "tokens": 1e8, "loss": 2.9, "bpb": 1.2})
    table = load_runs_dir(tmp_path)
    assert sorted(table["run_id"]) == ["a1", "b2"]
    assert "bpb" in table.columns
    assert table.set_index("run_id").loc["b2", "bpb"] == 1.2 and np.isnan(table.set_index("run_id").loc["a1", "bpb"])
    assert list(read_table(table)["C"]) == pytest.approx([6e14, 1.2e15])


def test_load_curves_adds_run_id_and_corrupt_parquet_names_file(tmp_path):
    m = pd.DataFrame({"step": [1, 2], "tokens": [1e6, 2e6], "val_loss": [4.0, 3.5]})
    write_run(tmp_path, "s", "a1", {"run_id": "a1"}, m)
    write_run(tmp_path, "s", "b2", {"run_id": "b2"}, m.assign(lr=1e-3))
    curves = load_curves(tmp_path)
    assert len(curves) == 4 and set(curves["run_id"]) == {"a1", "b2"} and "lr" in curves.columns
    bad = tmp_path / "s" / "b2" / "summary.parquet"
    bad.write_bytes(bad.read_bytes()[:-20])  # truncated: no footer
    with pytest.raises(InputError, match=r"b2/summary\.parquet.*cannot be read"):
        load_runs_dir(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no summary.parquet"):
        load_runs_dir(tmp_path / "empty")
    with pytest.raises(InputError, match="not a directory"):
        load_runs_dir(tmp_path / "missing")


def test_fit_table_passes_columns_by_argument_name():
    def fit(N, D, L, budgets=None, name="x"):
        return N.sum(), D.sum(), L.sum(), budgets, name

    df = pd.DataFrame({"N": [1.0, 2.0], "D": [3.0, 4.0], "loss": [5.0, 6.0], "name": ["p", "q"]})
    assert fit_table(fit, df) == (3.0, 7.0, 11.0, None, "x")
    assert fit_table(fit, df.assign(budget=[1, 1]))[3].tolist() == [1, 1]
    with pytest.raises(InputError, match="column 'D'"):
        fit_table(fit, df.drop(columns=["D"]))
