"""`sweep status` and `scalinglaws report` list every damaged run in one pass, and a damaged run never stops the
others: status still reports the healthy runs, the report still fits them (and names the damaged ones)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scalinglab.sweep import sweep_status

REPO = Path(__file__).resolve().parents[1]
SWEEP_TABLE = REPO / "tests" / "fixtures" / "analysis" / "sweep.csv"


def env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline")


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage\xff" * 50)


# run index -> (file, damage); each a different file of a run directory.
DAMAGE = {
    1: ("summary.parquet", cut_short),
    4: ("metrics.parquet", garbage),
    7: ("config.yaml", lambda p: p.write_text("model: [unclosed")),
    9: ("checkpoints/last.ckpt", garbage),
    12: (".lock", lambda p: p.mkdir()),
    15: ("metrics.parquet", lambda p: p.unlink()),
}


@pytest.fixture
def runs(tmp_path) -> tuple[Path, list[str]]:
    """A sweep folder of the fixture table's runs (complete ones with summary, metrics and config), then one
    damaged file in each of the DAMAGE runs; returns (runs root, damaged run ids)."""
    rows = pd.read_csv(SWEEP_TABLE)
    rows = rows[rows["status"] == "complete"].to_dict("records")
    sweep = tmp_path / "runs" / "sw"
    for row in rows:
        rdir = sweep / row["run_id"]
        rdir.mkdir(parents=True)
        pd.DataFrame([{**row, "schema_version": 1}]).to_parquet(rdir / "summary.parquet")
        pd.DataFrame({"step": [1, 2], "tokens": [row["tokens"] // 2, row["tokens"]],
                      "val_loss": [row["loss"] + 1, row["loss"]]}).to_parquet(rdir / "metrics.parquet")
        (rdir / "config.yaml").write_text(f"sweep: sw\nrun: {row['run_id']}\n")
    damaged = []
    for i, (name, damage) in DAMAGE.items():
        rdir = sweep / rows[i]["run_id"]
        if name.startswith("checkpoints/"):
            (rdir / "checkpoints").mkdir()
            (rdir / name).write_bytes(b"")
        if name == ".lock":
            pass
        damage(rdir / name)
        damaged.append(rows[i]["run_id"])
    return tmp_path / "runs", damaged


def test_status_lists_every_damaged_run_in_one_pass(runs):
    root, damaged = runs
    table = sweep_status(root / "sw").set_index("run_id")
    assert sorted(table.index[table["state"] == "damaged"]) == sorted(damaged)
    assert (table.drop(index=damaged)["state"] == "complete").all()
    for i, rid in zip(DAMAGE, damaged):
        assert DAMAGE[i][0] in table.loc[rid, "problem"]
    out = subprocess.run([sys.executable, "-m", "scalinglab.sweep", "status", str(root / "sw")], capture_output=True,
                         text=True, timeout=120, env=env(), cwd=REPO)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert f"{len(damaged)} damaged runs:" in out.stdout and "Fix: relaunch the sweep" in out.stdout
    for i, rid in zip(DAMAGE, damaged):
        assert f"{root / 'sw' / rid}: {DAMAGE[i][0]}" in out.stdout
    as_json = subprocess.run([sys.executable, "-m", "scalinglab.sweep", "status", str(root / "sw"), "--json"],
                             capture_output=True, text=True, timeout=120, env=env(), cwd=REPO)
    states = {r["run_id"]: r["state"] for r in json.loads(as_json.stdout)}
    assert sorted(k for k, v in states.items() if v == "damaged") == sorted(damaged)


def test_report_source_leaves_out_and_lists_every_damaged_run(runs, caplog):
    from scalinglaws.source import load_source

    root, damaged = runs
    with caplog.at_level("WARNING", logger="scalinglaws"):
        source = load_source(root, skip_damaged=True)
    unreadable = {rid for i, rid in zip(DAMAGE, damaged) if DAMAGE[i][0] == "summary.parquet"
                  or (DAMAGE[i][0] == "metrics.parquet" and DAMAGE[i][1] is garbage)}
    assert set(source.damaged["run_id"]) == unreadable
    assert not unreadable & set(source.table["run_id"]) and not unreadable & set(source.curves["run_id"])
    assert all(rid in caplog.text for rid in unreadable) and "Fix:" in caplog.text


@pytest.mark.slow  # about 20 s: a whole report
def test_report_fits_the_healthy_runs_and_lists_every_damaged_one(runs, tmp_path):
    root, damaged = runs
    unreadable = [rid for i, rid in zip(DAMAGE, damaged) if DAMAGE[i][0] == "summary.parquet"
                  or (DAMAGE[i][0] == "metrics.parquet" and DAMAGE[i][1] is garbage)]  # what a report reads
    out = subprocess.run([sys.executable, "-m", "scalinglaws", "report", str(root), "--out", str(tmp_path / "out"),
                          "--bootstrap", "0", "--grid", "small", "--quiet"], capture_output=True, text=True, timeout=300, env=env(),
                         cwd=REPO)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert f"{len(unreadable)} damaged runs left out" in out.stderr and "Fix: relaunch the sweep" in out.stderr
    report = (tmp_path / "out" / "report.md").read_text()
    assert "DAMAGED" in report
    for rid in unreadable:
        assert rid in out.stderr and rid in report
    n_complete = int((pd.read_csv(SWEEP_TABLE)["status"] == "complete").sum())
    assert f"{n_complete - len(unreadable)} complete runs are fitted" in report


def test_fit_names_every_damaged_file_in_one_error(runs):
    root, damaged = runs
    out = subprocess.run([sys.executable, "-m", "scalinglaws", "fit", str(root), "--approach", "2"],
                         capture_output=True, text=True, timeout=300, env=env(), cwd=REPO)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    for i, rid in zip(DAMAGE, damaged):
        if DAMAGE[i][0] == "summary.parquet" or (DAMAGE[i][0] == "metrics.parquet" and DAMAGE[i][1] is garbage):
            assert f"{rid}/{DAMAGE[i][0]}" in out.stderr, out.stderr
    assert "2 run files" in out.stderr and "Fix:" in out.stderr


def test_status_with_a_damaged_plan_still_lists_every_run_and_says_so(runs):
    from scalinglab.sweep import format_status, progress_line

    root, damaged = runs
    (root / "sw" / "plan.parquet").write_bytes(b"PAR1 not really")
    table = sweep_status(root / "sw")
    assert len(table) == len(list((root / "sw").iterdir())) - 1 and "plan.parquet" in table.attrs["plan_problem"]
    text = format_status(table, root / "sw")
    assert "plan.parquet cannot be read" in text and "Fix: relaunch the sweep (it writes the plan again)" in text
    assert progress_line(root / "sw") is None
