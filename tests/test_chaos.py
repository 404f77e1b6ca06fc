"""Kill anywhere: the store's fault hook at the atomic-write point (fast) and the chaos harness (slow)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scalinglab.store import FAULT_ENV, read_summary, read_sweep, remove_temporaries, write_parquet

REPO = Path(__file__).resolve().parents[1]


def test_writer_killed_between_temporary_file_and_replace_leaves_the_previous_file(tmp_path):
    run = tmp_path / "sweep" / "abc"
    write_parquet(run / "summary.parquet", [{"run_id": "abc", "status": "failed", "loss": 3.0}])
    before = (run / "summary.parquet").read_bytes()
    code = ("import sys; from scalinglab.store import write_parquet; "
            "write_parquet(sys.argv[1], [{'run_id': 'abc', 'status': 'complete', 'loss': 2.0}]); print('replaced')")
    out = subprocess.run([sys.executable, "-c", code, str(run / "summary.parquet")], capture_output=True, text=True,
                         env=dict(os.environ, **{FAULT_ENV: "write:summary.parquet"}), start_new_session=True,
                         timeout=60)
    assert out.returncode == -signal.SIGKILL and "replaced" not in out.stdout
    assert (run / "summary.parquet").read_bytes() == before  # the previous file, untouched
    leftovers = [p.name for p in run.iterdir() if p.name != "summary.parquet"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-summary.parquet.")
    assert pd.read_parquet(run / leftovers[0])["loss"].item() == 2.0  # complete, but only under its temporary name
    # Readers never pick up the temporary file.
    assert read_summary(run)["loss"] == 3.0
    assert read_sweep(tmp_path)["loss"].tolist() == [3.0]
    assert remove_temporaries(run) == [run / leftovers[0]] and os.listdir(run) == ["summary.parquet"]


def test_fault_hook_fires_only_for_its_file(tmp_path):
    code = "import sys; from scalinglab.store import write_text; write_text(sys.argv[1], 'x: 1')"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "config.yaml")], capture_output=True,
                         env=dict(os.environ, **{FAULT_ENV: "write:summary.parquet"}), start_new_session=True,
                         timeout=60)
    assert out.returncode == 0 and (tmp_path / "config.yaml").read_text() == "x: 1"


@pytest.mark.slow  # several minutes: a reference sweep of 12 runs, then 8 kills and relaunches of the same sweep
def test_chaos_sweep_survives_every_kill(tmp_path):
    report = tmp_path / "chaos.json"
    out = subprocess.run([sys.executable, str(REPO / "scripts" / "chaos.py"), "--kills", "8", "--seed", "1",
                          "--work", str(tmp_path / "work"), "--json", str(report)],
                         capture_output=True, text=True, timeout=3600)
    assert report.exists(), out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads(report.read_text())
    phases = {k["phase"] for k in result["kills"]}
    assert {"data_prep", "mid_step", "write:last.ckpt", "write:summary.parquet", "report"} <= phases, phases
    assert result["kills_tried"] == 8 and result["kills_survived"] == 8, result["kills"]
    assert result["runs_lost"] == 0 and result["runs_complete"] == result["runs_planned"] == 12
    assert result["summaries"] == 12 and not result["extra_run_dirs"] and not result["completed_runs_rewritten"]
    assert result["files_corrupt"] == 0, result["corrupt"]
    assert result["temporaries_in_run_dirs"] == []
    assert result["runs_differing_from_reference"] == [], result["final_losses"]
    assert all(ref == got for ref, got in result["final_losses"].values())
    assert out.returncode == 0 and "kills survived / tried: 8 / 8" in out.stdout
