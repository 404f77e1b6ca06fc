"""Results store: atomic writes, unified sweep schema, safe names, stable run ids."""
from __future__ import annotations

import os

import pandas as pd
import pytest

from scalinglab.errors import ConfigError
from scalinglab.runs import run_id
from scalinglab.store import atomic_write, read_metrics, read_summary, read_sweep, run_dir, run_status, write_parquet


def test_atomic_write_leaves_old_file_when_writer_dies(tmp_path):
    target = tmp_path / "summary.parquet"
    write_parquet(target, [{"status": "complete", "loss": 3.0}])

    def dies(tmp):
        with open(tmp, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, dies)
    assert pd.read_parquet(target)["loss"].item() == 3.0
    assert os.listdir(tmp_path) == ["summary.parquet"]  # no temporary file left behind


def test_read_sweep_keeps_columns_only_later_runs_have(tmp_path):
    write_parquet(tmp_path / "s" / "a" / "summary.parquet", [{"run_id": "a", "status": "complete", "loss": 3.0}])
    write_parquet(tmp_path / "s" / "b" / "summary.parquet",
                  [{"run_id": "b", "status": "diverged", "loss": float("nan"), "new_column": 7}])
    (tmp_path / "s" / "c").mkdir()  # a pending run: no summary yet
    (tmp_path / "s" / "a" / ".tmp-summary.parquet.x").write_bytes(b"garbage from a killed writer")
    table = read_sweep(tmp_path / "s").sort_values("run_id")
    assert list(table["run_id"]) == ["a", "b"]
    assert "new_column" in table and table["new_column"].isna().tolist() == [True, False]
    assert list(read_sweep(tmp_path, complete_only=True)["run_id"]) == ["a"]
    assert run_status(tmp_path / "s" / "b") == "diverged" and run_status(tmp_path / "s" / "c") == "pending"


def test_read_metrics_adds_run_id(tmp_path):
    write_parquet(tmp_path / "r1" / "metrics.parquet", [{"step": 1, "val_loss": 5.0}, {"step": 2, "val_loss": 4.0}])
    metrics = read_metrics(tmp_path)
    assert metrics["run_id"].tolist() == ["r1", "r1"] and metrics["val_loss"].tolist() == [5.0, 4.0]


def test_summary_from_a_newer_schema_is_refused(tmp_path):
    write_parquet(tmp_path / "summary.parquet", [{"status": "complete", "schema_version": 99}])
    with pytest.raises(ConfigError, match="newer"):
        read_summary(tmp_path)


@pytest.mark.parametrize("sweep", ["../escape", "a/b", ".hidden", "", "x/../../y"])
def test_sweep_names_cannot_escape_the_runs_directory(tmp_path, sweep):
    with pytest.raises(ConfigError, match="sweep"):
        run_dir(tmp_path, sweep, "abc")


def test_run_id_is_stable_and_sensitive():
    a = {"model": {"n_layer": 2}, "train": {"seed": 0}}
    assert run_id(a) == run_id({"train": {"seed": 0}, "model": {"n_layer": 2}})
    assert run_id(a) != run_id({"model": {"n_layer": 2}, "train": {"seed": 1}})
    assert len(run_id(a)) == 12


@pytest.mark.parametrize("damage", [lambda b: b[:100], lambda b: b"", lambda b: b[:-10]],
                         ids=["cut-short", "empty", "footer-missing"])
def test_damaged_run_files_name_the_file_and_the_run_to_redo(tmp_path, damage):
    """A summary or metrics file that does not parse is a ConfigError naming it, not pyarrow's ArrowInvalid."""
    run = tmp_path / "sw" / "r1"
    for name in ("summary.parquet", "metrics.parquet"):
        file = write_parquet(run / name, [{"run_id": "r1", "status": "complete", "step": 1, "val_loss": 5.0}])
        file.write_bytes(damage(file.read_bytes()))
    readers = {"summary.parquet": [read_summary, read_sweep], "metrics.parquet": [read_metrics]}
    for name, calls in readers.items():
        for call in calls:
            with pytest.raises(ConfigError) as error:
                call(run if call is read_summary else tmp_path)
            assert error.value.field == str(run / name)
            assert "cannot be read" in str(error.value) and f"delete {run}" in error.value.fix
    assert run_status(run) == "damaged"  # a state status lists (tests/test_damaged_runs.py), not an error


def test_summary_with_no_row_is_damaged(tmp_path):
    write_parquet(tmp_path / "summary.parquet", pd.DataFrame({"status": pd.Series([], dtype=str)}))
    with pytest.raises(ConfigError, match="cannot be read"):
        read_summary(tmp_path)


def test_result_files_get_the_umask_mode_not_0600(tmp_path):
    import stat
    old = os.umask(0o022)
    try:
        path = write_parquet(tmp_path / "s" / "r" / "summary.parquet", [{"run_id": "r", "status": "complete"}])
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
