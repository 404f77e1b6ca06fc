"""scripts/gpu_check.sh --cpu: the GPU readiness check's dry run prints three RESULT lines that parse and agree."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def parse(stdout: str) -> dict[str, dict[str, str]]:
    out = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            fields = dict(item.split("=", 1) for item in line.split()[1:])
            out[fields.pop("check")] = fields
    return out


@pytest.mark.slow  # 1-2 minutes: .ci/run runs it after the default suite
def test_gpu_check_cpu_dry_run_prints_three_consistent_results(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--cpu", "--cache", str(tmp_path / "cache")], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = parse(proc.stdout)
    assert set(results) == {"mfu", "stacked", "sweep"}, proc.stdout
    assert all(r["ok"] == "true" for r in results.values()), results
    mfu = results["mfu"]
    assert int(mfu["params"]) > 0 and float(mfu["bf16_peak_tflops"]) > 0
    assert abs(float(mfu["mfu"]) - float(mfu["tflops"]) / float(mfu["bf16_peak_tflops"])) < 2e-3
    stacked = results["stacked"]
    assert stacked["stacked_k"] == "8"
    speedup = float(stacked["stacked_tokens_per_s"]) / float(stacked["one_tokens_per_s"])
    assert abs(float(stacked["stacked_speedup"]) - speedup) < 2e-3 * speedup + 1e-3
    sweep = results["sweep"]
    assert sweep["runs"] == sweep["complete"] == "4" and float(sweep["tokens_per_s"]) > 0


def test_gpu_check_without_a_gpu_refuses_with_exit_2():
    if subprocess.run([sys.executable, "-c", "import torch, sys; sys.exit(torch.cuda.is_available())"]).returncode:
        pytest.skip("a GPU is visible: the full check would run")
    proc = subprocess.run([sys.executable, "scripts/gpu_check.py"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2 and "--cpu" in proc.stderr and "Traceback" not in proc.stderr
