"""Determinism and safety: same seed -> same metrics across processes; weights-only checkpoints; config values never
run as code; names cannot escape the runs directory; an unwritable runs directory is a clear error."""
from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from scalinglab.errors import ConfigError
from scalinglab.store import StoreError, run_dir
from scalinglab.train import CONFIG_DIR, run

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=nano", "data=text_files", "model.n_ctx=64", "train.batch_size=8", "trainer.progress_bar=false",
        "trainer.accelerator=cpu", "train.threads=1", "train.tokens=10240", "train.eval_points=4"]
RESULT_COLUMNS = ["step", "tokens", "train_loss", "val_loss", "bpb", "lr", "flops_6nd", "epochs"]


def config(runs: Path, cache: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[*TINY, f"paths.runs={runs}", f"paths.cache={cache}", *overrides])


def cli(runs: Path, cache: Path, *overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scalinglab.train", *TINY, f"paths.runs={runs}",
                           f"paths.cache={cache}", *overrides], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, cache) -> tuple[Path, Path]:
    """The same config and seed trained in two separate processes (one keeps its step-10 checkpoint)."""
    root = tmp_path_factory.mktemp("twice")
    dirs = []
    for name in ("a", "b"):
        out = cli(root / name, cache, "train.seed=3", "train.save_at_steps=[10]")
        assert out.returncode == 0, out.stderr[-3000:]
        dirs.append(next((root / name / "single").glob("*/summary.parquet")).parent)
    return dirs[0], dirs[1]


def test_same_config_and_seed_give_identical_metrics_in_two_processes(two_processes):
    a, b = (pd.read_parquet(d / "metrics.parquet") for d in two_processes)
    assert a.shape[0] >= 4 and a["step"].iloc[-1] == 20
    pd.testing.assert_frame_equal(a[RESULT_COLUMNS], b[RESULT_COLUMNS], check_exact=True)
    assert a["train_loss"].nunique() == len(a)  # real numbers that change, not a constant both sides share


def test_checkpoints_load_with_weights_only(two_processes):
    kept = two_processes[0] / "checkpoints" / "step-10.ckpt"
    state = torch.load(kept, map_location="cpu", weights_only=True)
    assert state["global_step"] == 10 and state["state_dict"]
    assert all(isinstance(v, torch.Tensor) for v in state["state_dict"].values())
    assert state["scalinglab"]["tokens_seen"] == 10 * 8 * 64
    # Every torch.load in the code (and every resume through Lightning) asks for weights only.
    sources = [p for p in (REPO / "src").rglob("*.py")] + list((REPO / "scripts").glob("*.py"))
    for file in sources:
        text = file.read_text()
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, f"{file}: {call}"
        for call in re.findall(r"\.fit\([^)]*ckpt_path[^)]*\)", text):
            assert "weights_only=True" in call, f"{file}: {call}"
    assert "weights_only=True" in (REPO / "src" / "scalinglab" / "train.py").read_text()


CODE = '__import__("os").system("touch {marker}")'


@pytest.mark.parametrize("override", ["sweep='{code}'", "train.lr='{code}'", "train.schedule='{code}'",
                                      "train.branch_from='{code}'", "model._target_=os.system",
                                      "+data.source._target_=builtins.exec", "+model.extra._target_=os.system"])
def test_no_config_value_is_run_as_code(tmp_path, cache, override):
    marker = tmp_path / "X"
    cfg = config(tmp_path / "runs", cache, override.format(code=CODE.format(marker=marker)),
                 *(["train.branch_step=5"] if "branch_from" in override else []))
    with pytest.raises(ConfigError) as refused:
        run(cfg)
    field = override.lstrip("+").split("=")[0]
    assert str(refused.value).startswith(field) and "Fix:" in str(refused.value)
    assert not marker.exists()


def test_code_as_a_sweep_name_on_the_command_line_is_refused(tmp_path, cache):
    marker = tmp_path / "X"
    out = cli(tmp_path / "runs", cache, f"sweep={CODE.format(marker=marker)}", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: sweep:") and "Traceback" not in out.stderr
    assert not marker.exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("sweep", ["../escape", "a/../../escape", "..", "{tmp}/abs", ".hidden"])
def test_sweep_names_that_leave_the_runs_directory_are_refused_before_any_write(tmp_path, cache, sweep):
    sweep = sweep.format(tmp=tmp_path)
    cfg = config(tmp_path / "box" / "runs", cache, f"sweep='{sweep}'")
    with pytest.raises(ConfigError, match="^sweep"):
        run(cfg)
    assert list(tmp_path.rglob("*")) == []  # not even the runs directory was made


def test_path_traversal_on_the_command_line_writes_nothing_outside(tmp_path, cache):
    runs = tmp_path / "box" / "runs"
    runs.mkdir(parents=True)
    out = cli(runs, cache, "sweep=../escape")
    assert out.returncode == 2 and "sweep" in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["box", "box/runs"]
    # The sweep launcher goes through the same check, before Hydra makes its output folder.
    sweep = subprocess.run([sys.executable, "-m", "scalinglab.sweep", "run", "grid", f"paths.runs={runs}",
                            "sweep=../../escape"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert sweep.returncode == 2 and "sweep" in sweep.stderr and "Traceback" not in sweep.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["box", "box/runs"]


def test_names_from_the_config_cannot_build_paths_outside(tmp_path):
    for sweep, rid in (("ok", "../x"), ("ok", "a/b"), ("ok/..", "x")):
        with pytest.raises(ConfigError):
            run_dir(tmp_path, sweep, rid)
    assert run_dir(tmp_path, "ok", "abc") == (tmp_path / "ok" / "abc").resolve()


def test_branch_source_cannot_point_outside_the_sweep(tmp_path, cache):
    cfg = config(tmp_path / "runs", cache, "train.branch_from=../../other", "train.branch_step=5")
    with pytest.raises(ConfigError, match="train.branch_from"):
        run(cfg)


def test_runs_path_under_a_file_is_a_clear_error(tmp_path, cache):
    (tmp_path / "afile").write_text("not a directory")
    out = cli(tmp_path / "afile" / "runs", cache)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: paths.runs:") and str(tmp_path / "afile") in out.stderr and "Fix:" in out.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories; see the disk-full test")
def test_read_only_runs_directory_is_a_clear_error_and_keeps_previous_results(two_processes, cache):
    runs = two_processes[0].parents[1]
    files = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()}
    modes = {p: p.stat().st_mode for p in [runs, *runs.rglob("*")] if p.is_dir()}
    try:
        for p in modes:
            p.chmod(0o555)
        out = cli(runs, cache, "train.seed=4")
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert str(runs) in out.stderr and "chmod" in out.stderr
    assert {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()} == files


def test_disk_full_while_writing_results_is_a_clear_error_and_keeps_previous_results(tmp_path, cache, monkeypatch):
    runs = tmp_path / "runs"
    first = run(config(runs, cache, "train.seed=5"))
    files = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()}
    real_replace = os.replace

    def full(src, dst, *args, **kwargs):
        if str(dst).startswith(str(runs)):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StoreError) as refused:
        run(config(runs, cache, "train.seed=6"))
    message = str(refused.value)
    assert str(runs / "single") in message and "No space left" in message and "free disk space" in message
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in runs.rglob("*") if p.is_file() and p.name != ".lock"} == \
        {p: b for p, b in files.items() if p.name != ".lock"}
    assert not [p for p in runs.rglob(".tmp-*")]
    assert first["status"] == "complete"
