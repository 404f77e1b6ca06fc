"""From built wheels in fresh virtualenvs that cannot see this checkout: the console scripts work from any
directory (configs, sweep files and the sample corpus ship inside the package), and the analysis package works
alone, without torch. Slow (wheels + venvs, ~1-2 min each); .ci/run runs them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from isolated_venv import build_wheels, make_venv  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "analysis" / "sweep.csv"
pytestmark = pytest.mark.slow


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline"}


def _run(cwd: Path, *args, ok: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    if ok:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_wheel_works_from_any_directory(tmp_path):
    python = make_venv(tmp_path / "venv", build_wheels(tmp_path / "wheels"))
    bin_, elsewhere = python.parent, tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run(elsewhere, python, "-c", "import scalinglab, scalinglaws; print(scalinglab.__file__, scalinglaws.__file__)")
    assert all(path.startswith(str(tmp_path / "venv")) for path in where.stdout.split()), where.stdout
    job = _run(elsewhere, bin_ / "scalinglab-train", "--cfg", "job", "--resolve", "model=nano")  # presets resolve
    assert "n_layer: 1" in job.stdout and "sweep: single" in job.stdout
    plan = _run(elsewhere, bin_ / "scalinglab-sweep", "plan", "quickstart", f"paths.runs={tmp_path / 'runs'}",
                f"paths.cache={tmp_path / 'cache'}")
    assert "sweep quickstart (isoflop)" in plan.stdout and "runs" in plan.stdout
    # A sweep file of one's own, by path; data=text_files reads the sample corpus shipped with the package.
    own = elsewhere / "mine.yaml"
    own.write_text("defaults:\n  - config\n  - override hydra/sweeper: scalinglab\n  - _self_\nsweep: mine\n"
                   "plan:\n  kind: grid\n  grid:\n    train.tokens: [4096, 8192]\n")
    mine = _run(elsewhere, bin_ / "scalinglab-sweep", "plan", own, f"paths.runs={tmp_path / 'runs'}",
                f"paths.cache={tmp_path / 'cache'}")
    assert "sweep mine (grid)" in mine.stdout
    data = _run(elsewhere, python, "-m", "scalinglab.data", "prepare", "data=text_files",
                f"paths.cache={tmp_path / 'cache'}")
    assert '"documents": 10' in data.stdout
    assert _run(elsewhere, bin_ / "scalinglaws", "--version").stdout.startswith("scalinglaws ")


def test_analysis_package_alone_without_torch(tmp_path):
    python = make_venv(tmp_path / "venv", build_wheels(tmp_path / "wheels", analysis_only=True), analysis_only=True)
    bin_ = python.parent
    assert _run(tmp_path, python, "-c", "import torch", ok=False).returncode != 0
    assert _run(tmp_path, python, "-c", "import scalinglab", ok=False).returncode != 0
    fit = _run(tmp_path, bin_ / "scalinglaws", "fit", FIXTURE, "--approach", "3", "--grid", "small", "--json")
    assert '"alpha"' in fit.stdout
    _run(tmp_path, bin_ / "scalinglaws", "report", FIXTURE, "--out", tmp_path / "report", "--bootstrap", "10",
         "--quiet")
    assert (tmp_path / "report" / "report.md").read_text().startswith("# ")
