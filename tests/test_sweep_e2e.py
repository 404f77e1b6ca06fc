"""Sweeps end to end through Hydra multirun: plan, joblib, kill + relaunch, submitit_local, status."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalinglab.store import read_sweep
from scalinglab.sweep import sweep_status

REPO = Path(__file__).resolve().parents[1]

# Four tiny isoFLOP runs on the committed test corpus (vocab 512, ~144K training tokens): 21-42 steps each.
SWEEP = """
defaults:
  - config
  - override data: text_files
  - override model: nano
  - override hydra/sweeper: scalinglab
  - _self_
sweep: {name}
model: {{n_ctx: 64}}
train: {{batch_size: 8, eval_points: 3, checkpoint_minutes: 0.001}}
trainer: {{progress_bar: false}}
plan:
  kind: isoflop
  budgets: {budgets}
  sizes: [nano, {{n_layer: 1, d_model: 48, n_head: 2}}]
  min_tokens: 4096
"""


def env() -> dict:
    out = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline")
    # The sweeper plugin lives in src/hydra_plugins; an editable install made before it existed does not map it.
    out["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def sweep_file(tmp_path: Path, name: str, budgets=(2e9, 4e9)) -> Path:
    file = tmp_path / f"{name}.yaml"
    file.write_text(SWEEP.format(name=name, budgets=list(budgets)))
    return file


def sweep_cmd(command: str, file: Path, runs: Path, cache: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scalinglab.sweep", command, str(file), f"paths.runs={runs}",
            f"paths.cache={cache}", *extra]


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=REPO, env=env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_plan_prints_the_table_and_trains_nothing(tmp_path, cache):
    file = sweep_file(tmp_path, "planned", budgets=(2e9, 4e9, 1e7))
    out = run(sweep_cmd("plan", file, tmp_path / "runs", cache))
    assert "4 runs, C total" in out.stdout
    skipped = [line for line in out.stdout.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 2 and "below plan.min_tokens" in out.stdout  # C=1e7 is too small
    assert not (tmp_path / "runs" / "planned").exists() or not read_sweep(tmp_path / "runs" / "planned").shape[0]


def test_joblib_sweep_trains_four_runs_then_relaunch_skips_them(tmp_path, cache):
    file, runs = sweep_file(tmp_path, "par"), tmp_path / "runs"
    out = run(sweep_cmd("run", file, runs, cache, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"), timeout=300)
    table = read_sweep(runs / "par")
    assert len(table) == 4 and set(table["status"]) == {"complete"}
    assert table["run_id"].is_unique
    progress = re.findall(r"sweep par: (\d)/4 done, ETA (\S+)", out.stdout)  # one line per finished run
    assert len(progress) == 4 and ("4", "0s") in progress, out.stdout
    planned = sweep_status(runs / "par")
    assert list(planned["state"]) == ["complete"] * 4 and set(planned["run_id"]) == set(table["run_id"])
    # isoFLOP: the two runs of one budget have the same C (within one batch) and different N
    for _, group in table.assign(c=lambda d: d["flops_6nd"].round(-8)).groupby("tokens_budget"):
        assert group["n_params"].nunique() == len(group)
    first = dict(zip(table["run_id"], table["finished_at"]))
    again = run(sweep_cmd("run", file, runs, cache), timeout=300)  # sequential: the skip check is cheap in-process
    assert again.stdout.count("is already complete: nothing to do") == 4
    assert dict(zip(*read_sweep(runs / "par")[["run_id", "finished_at"]].T.values)) == first
    status = run([sys.executable, "-m", "scalinglab.sweep", "status", str(runs / "par")])
    assert status.stdout.startswith("4 runs: 4 complete, 0 running")


def test_killed_sweep_relaunched_completes_every_run_exactly_once(tmp_path, cache):
    file, runs = sweep_file(tmp_path, "killed", budgets=(2e9, 3e9, 4e9)), tmp_path / "runs"
    file.write_text(file.read_text().replace("sizes: [nano, {n_layer: 1, d_model: 48, n_head: 2}]", "sizes: [nano]"))
    proc = subprocess.Popen(sweep_cmd("run", file, runs, cache), cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((runs / "killed").glob("*/summary.parquet"))) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-sweep: one run done, the next one started or about to
    proc.wait()
    before = read_sweep(runs / "killed")
    assert 1 <= len(before) < 3
    run(sweep_cmd("run", file, runs, cache), timeout=300)
    after = read_sweep(runs / "killed")
    assert len(after) == 3 and after["run_id"].is_unique and set(after["status"]) == {"complete"}
    kept = after.set_index("run_id").loc[before["run_id"], "finished_at"]
    assert list(kept) == list(before["finished_at"])  # the run finished before the kill was not trained again


@pytest.mark.slow  # ~20 s: submitit starts a fresh interpreter per job
def test_submitit_local_launcher_runs_one_job(tmp_path, cache):
    file, runs = sweep_file(tmp_path, "sub", budgets=(2e9,)), tmp_path / "runs"
    file.write_text(file.read_text().replace("sizes: [nano, {n_layer: 1, d_model: 48, n_head: 2}]", "sizes: [nano]"))
    run(sweep_cmd("run", file, runs, cache, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5"),
        timeout=300)
    table = read_sweep(runs / "sub")
    assert len(table) == 1 and table["status"].iloc[0] == "complete"
    logs = list((runs / "sub" / ".hydra").rglob("*_log.out"))
    assert logs, "submitit wrote no job log: the job did not go through submitit"
