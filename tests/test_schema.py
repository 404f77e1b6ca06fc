"""summary.parquet and metrics.parquet have one explicit schema, documented column by column in docs/SCHEMA.md,
so a whole runs tree (the committed results/runs included) reads as one table with pyarrow.dataset."""
from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from scalinglab import schema
from scalinglab.store import read_metrics, read_sweep, write_parquet

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "runs"


def documented(section: str) -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "SCHEMA.md").read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_0-9]+)` \| (\w+) \|", text, flags=re.M)


@pytest.mark.parametrize("section, arrow", [("summary.parquet", schema.SUMMARY), ("metrics.parquet", schema.METRICS)])
def test_schema_md_documents_every_column_with_its_type(section, arrow):
    names = {pa.string(): "string", pa.int64(): "int64", pa.float64(): "double"}
    assert documented(section) == [(f.name, names[f.type]) for f in arrow]


def test_a_column_null_in_one_run_has_the_type_it_has_where_set(tmp_path):
    write_parquet(tmp_path / "s" / "a" / "summary.parquet", [{"run_id": "a", "status": "complete", "error": None,
                                                               "branch_from": None, "branch_step": None}])
    write_parquet(tmp_path / "s" / "b" / "summary.parquet", [{"run_id": "b", "status": "failed", "error": "boom",
                                                               "branch_from": "a", "branch_step": 7}])
    files = sorted(tmp_path.rglob("summary.parquet"))
    assert {pq.read_schema(f).remove_metadata() for f in files} == {schema.SUMMARY}
    table = ds.dataset(files).to_table().sort_by("run_id")
    assert table["error"].to_pylist() == [None, "boom"] and table["branch_step"].to_pylist() == [None, 7]


@pytest.mark.parametrize("name, arrow", [("summary.parquet", schema.SUMMARY), ("metrics.parquet", schema.METRICS)])
def test_the_committed_runs_tree_reads_as_one_dataset(name, arrow):
    files = sorted(COMMITTED.rglob(name))
    assert len(files) >= 40
    extras = set()
    for f in files:  # the documented columns in order, then only documented extras (val_loss/<source>), typed
        read = pq.read_schema(f).remove_metadata()
        expected = arrow
        if name == "summary.parquet" and not set(schema.ADDED_LATER) & set(read.names):  # written before them
            expected = pa.schema([field for field in arrow if field.name not in schema.ADDED_LATER])
        assert pa.schema(list(read)[:len(expected)]) == expected, f
        for field in list(read)[len(expected):]:
            assert schema.extra_type(field.name) == field.type, (f, field.name)
            extras.add(field.name)
    if name == "summary.parquet":  # the reproduction records the loss on each source of the builtin corpus
        assert {"val_loss/wikipedia", "val_loss/bible"} <= extras
    table = ds.dataset(files, schema=pa.unify_schemas([pq.read_schema(f) for f in files])).to_table()
    run_ids = {f.parent.name for f in files}
    assert set(table["run_id"].to_pylist()) == run_ids
    if name == "metrics.parquet":  # every row names its own run
        assert all(len(set(pq.read_table(f)["run_id"].to_pylist())) == 1 for f in files[:5])
        assert len(read_metrics(COMMITTED)) == table.num_rows
    else:
        assert len(read_sweep(COMMITTED)) == table.num_rows == len(files)


def test_old_files_read_in_the_schema(tmp_path):
    """A summary with a null-typed column and metrics without run_id (as older versions wrote them)."""
    (tmp_path / "r1").mkdir()
    pq.write_table(pa.table({"run_id": ["r1"], "status": ["complete"], "error": pa.nulls(1)}),
                   tmp_path / "r1" / "summary.parquet")
    pq.write_table(pa.table({"step": [1, 2], "val_loss": [5.0, 4.0]}), tmp_path / "r1" / "metrics.parquet")
    assert read_metrics(tmp_path)["run_id"].tolist() == ["r1", "r1"]
    assert list(read_sweep(tmp_path).columns)[:4] == ["run_id", "sweep", "status", "error"]
