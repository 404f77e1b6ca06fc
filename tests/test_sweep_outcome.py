"""A launch says what it did and left: runs another launch holds are counted (not waited for, not failures), and
the exit status is 1 only when a run this launch trained failed (docs/SWEEPS.md, "Exit status")."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalinglab.store import run_lock
from scalinglab.sweep import launch_outcome

REPO = Path(__file__).resolve().parents[1]


def rows(*pairs, finished_at=None):
    return [{"run_id": rid, "status": status, "loss": 1.0, "finished_at": finished_at, "error": None}
            for rid, status in pairs]


def test_launch_outcome_counts_what_the_launch_did_and_left(tmp_path):
    started = time.time()
    now, before = started + 5, started - 100
    held, released = tmp_path / "held", tmp_path / "released"
    for folder in (held, released):
        folder.mkdir()
        (folder / ".lock").touch()
    jobs = [rows(("a", "complete"), finished_at=now), rows(("b", "complete"), finished_at=before),
            rows(("c", "diverged"), finished_at=now), rows(("d", "failed"), finished_at=before),
            rows(("held", "running")), rows(("released", "running"))]
    with run_lock(held) as mine:
        assert mine
        line, status = launch_outcome("sw", jobs, tmp_path, started, waiting=2)
    assert status == 0  # a diverged run is a result; d failed before this launch; others' runs are not ours
    assert "2 trained here (1 complete, 0 failed, 1 diverged)" in line and "1 already complete" in line
    assert "1 failed or diverged before" in line and "2 cooldowns not started" in line
    assert "1 still running in another launch, 1 finished there" in line
    assert launch_outcome("sw", [*jobs, rows(("e", "failed"), finished_at=now)], tmp_path, started)[1] == 1
    assert launch_outcome("sw", [*jobs, None], tmp_path, started)[1] == 1  # a job that raised


SWEEP = """
defaults:
  - config
  - override data: text_files
  - override model: nano
  - override hydra/sweeper: scalinglab
  - _self_
sweep: outcome
model: {n_ctx: 64}
train: {batch_size: 8, tokens: 5120, eval_points: 2, threads: 1}
trainer: {accelerator: cpu, progress_bar: false}
plan:
  kind: grid
  grid:
    train.seed: [0, 1, 2]
  sizes: [nano]
"""

# A launch in which the run FAIL fails mid-training (its training_step raises): what a real failure leaves.
LAUNCH_WITH_A_FAILURE = """
import sys
import scalinglab.train as train
from scalinglab.runs import run_id, run_identity

FAIL, real = sys.argv[1], train.build_module
def build(cfg, *args, **kwargs):
    module = real(cfg, *args, **kwargs)
    if run_id(run_identity(cfg)) == FAIL:
        def boom(*a, **k):
            raise RuntimeError("injected failure")
        module.training_step = boom
    return module
train.build_module = build
sys.argv = ["scalinglab.train", "-m", *sys.argv[2:]]
train.entry()
"""


def env() -> dict:
    out = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline")
    out["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "analysis"),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    return out


@pytest.mark.slow  # 1-2 min: a plan and three launches of a 3-run sweep
def test_a_launch_counts_runs_held_elsewhere_and_fails_only_for_its_own_failures(tmp_path):
    file = tmp_path / "outcome.yaml"
    file.write_text(SWEEP)
    common = ["--config-dir", str(tmp_path), "--config-name", "outcome", f"paths.runs={tmp_path / 'runs'}",
              f"paths.cache={tmp_path / 'cache'}"]

    def sweep(command, *extra):
        return subprocess.run([sys.executable, "-m", "scalinglab.sweep", command, str(file), *common[4:], *extra],
                              capture_output=True, text=True, timeout=300, cwd=REPO, env=env())

    planned = sweep("plan")
    assert planned.returncode == 0, planned.stderr[-2000:]
    ids = re.findall(r"\b([0-9a-f]{12})$", planned.stdout, flags=re.M)
    assert len(set(ids)) == 3, planned.stdout
    held, failing, healthy = ids
    with run_lock(tmp_path / "runs" / "outcome" / held) as mine:  # "another launch" trains this one
        assert mine
        first = subprocess.run([sys.executable, "-c", LAUNCH_WITH_A_FAILURE, failing, *common], capture_output=True,
                               text=True, timeout=300, cwd=REPO, env=env())
        out = first.stdout + first.stderr
        assert "Traceback" not in first.stderr, out[-3000:]
        assert first.returncode == 1, out[-3000:]
        assert "2 trained here (1 complete, 1 failed, 0 diverged)" in first.stdout, out[-3000:]
        assert "1 still running in another launch" in first.stdout and "(exit status 1)" in first.stdout
        again = sweep("run")  # the failure is not this launch's: exit 0
        assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
        assert ("0 trained here" in again.stdout and "1 already complete" in again.stdout
                and "1 failed or diverged before" in again.stdout
                and "1 still running in another launch" in again.stdout), again.stdout[-3000:]
    last = sweep("run")  # the other launch let go: this one trains it
    assert last.returncode == 0 and "1 trained here (1 complete" in last.stdout, last.stdout[-3000:]


def test_a_mistake_one_job_meets_fails_that_job_and_a_refused_write_ends_the_launch(monkeypatch, capsys):
    from scalinglab import train
    from scalinglab.errors import ConfigError
    from scalinglab.store import StoreError

    def raises(error):
        def job(cfg):
            raise error
        return job

    monkeypatch.setattr(train, "train_job", raises(ConfigError("train.branch_from", "no checkpoint x", "train it")))
    rows = train.sweep_job(None)
    assert [r["status"] for r in rows] == ["failed"] and "train.branch_from" in rows[0]["error"]
    assert capsys.readouterr().err.startswith("error: train.branch_from: no checkpoint x. Fix: train it")
    monkeypatch.setattr(train, "train_job", raises(StoreError("runs", "cannot write results here", "free space")))
    with pytest.raises(SystemExit) as ended:
        train.sweep_job(None)
    assert ended.value.code == 2
