"""One training run end to end on the committed test corpus: files, schema, skip, resume, divergence, errors."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hydra import compose, initialize_config_dir

from scalinglab import schema
from scalinglab.errors import ConfigError
from scalinglab.module import eval_steps
from scalinglab.store import read_sweep
from scalinglab.train import CONFIG_DIR, run

TINY = ["model=nano", "data=text_files", "model.n_ctx=64", "train.batch_size=8", "trainer.progress_bar=false",
        "train.threads=1"]


def config(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[*TINY, f"paths.runs={tmp_path / 'runs'}",
                                            f"paths.cache={tmp_path.parent / 'shared-cache'}", *overrides])


def cli(tmp_path: Path, *overrides: str, **kw) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "scalinglab.train", *TINY, f"paths.runs={tmp_path / 'runs'}",
            f"paths.cache={tmp_path.parent / 'shared-cache'}", *overrides]
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def unigram_entropy(tokens: np.ndarray) -> float:
    p = np.bincount(tokens) / tokens.size
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def test_tiny_run_learns_and_writes_a_complete_run_directory(tmp_path):
    cfg = config(tmp_path, "train.tokens=120000")
    summary = run(cfg)
    rdir = tmp_path / "runs" / "single" / summary["run_id"]
    assert sorted(p.name for p in rdir.iterdir() if p.name != ".lock") == ["config.yaml", "metrics.parquet",
                                                                         "summary.parquet"]
    metrics = pd.read_parquet(rdir / "metrics.parquet")
    for column in ("step", "tokens", "flops_6nd", "flops_kaplan", "flops_chinchilla", "flops_measured",
                   "train_loss", "val_loss", "bpb", "lr", "wall_time"):
        assert column in metrics, column
    assert metrics["tokens"].is_monotonic_increasing and metrics["step"].iloc[-1] == summary["steps"]
    # Evaluated at exactly its eval points although a Lightning batch holds several steps (data.step_groups).
    assert metrics["step"].tolist() == eval_steps(summary["steps"], cfg.train.eval_points)
    # The budget is exact: round(120000 / (8 * 64)) = 234 steps of 512 tokens.
    assert summary["tokens"] == 234 * 512 == metrics["tokens"].iloc[-1]
    assert summary["flops_6nd"] == 6 * summary["n_params"] * summary["tokens"]
    # Loss falls below the unigram entropy of the training tokens: the model learned context. (At 117 steps the
    # margin was 0.02-0.07 nats and depended on the CPU's float rounding; at 234 steps it is ~0.5.)
    cache = next((tmp_path.parent / "shared-cache" / "tokens").glob("*/manifest.json")).parent
    dtype = json.loads((cache / "manifest.json").read_text())["dtype"]
    h1 = unigram_entropy(np.fromfile(cache / "train.bin", dtype=dtype))
    assert summary["loss"] < h1 - 0.05, (summary["loss"], h1)
    assert summary["status"] == "complete" and math.isclose(summary["bpb"], metrics["bpb"].iloc[-1])
    # Both files carry exactly their documented schema (docs/SCHEMA.md); metrics rows name their run.
    assert pq.read_schema(rdir / "summary.parquet").remove_metadata() == schema.SUMMARY
    assert pq.read_schema(rdir / "metrics.parquet").remove_metadata() == schema.METRICS
    assert set(metrics["run_id"]) == {summary["run_id"]}
    # A second launch is a no-op: the summary file is not rewritten.
    before = (rdir / "summary.parquet").stat().st_mtime_ns
    again = run(cfg)
    assert again["run_id"] == summary["run_id"] and (rdir / "summary.parquet").stat().st_mtime_ns == before


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_killed_run_resumes_to_the_same_loss_curve(tmp_path, family):
    args = ["train.tokens=150000", "train.checkpoint_minutes=0.0001", f"model.family={family}"]
    reference = run(config(tmp_path / "ref", *args))
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "scalinglab.train", *TINY, *args,
                             f"paths.runs={killed_dir / 'runs'}", f"paths.cache={tmp_path / 'shared-cache'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        found = list((killed_dir / "runs").glob("single/*/checkpoints/last.ckpt"))
        if found:
            ckpt = found[0]
            time.sleep(0.3)
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt is not None and not (ckpt.parent.parent / "summary.parquet").exists(), "killed too late"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = run(config(killed_dir, *args))
    # Lightning's "dataloader is not resumable" does not apply (batches restart at the global step): not shown.
    assert not [w for w in caught if "resuming from a checkpoint" in str(w.message)]
    assert resumed["run_id"] == reference["run_id"]
    a = pd.read_parquet(tmp_path / "ref" / "runs" / "single" / reference["run_id"] / "metrics.parquet")
    b = pd.read_parquet(killed_dir / "runs" / "single" / resumed["run_id"] / "metrics.parquet")
    cols = ["step", "tokens", "train_loss", "val_loss", "bpb", "lr"]
    pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    assert resumed["loss"] == reference["loss"]


def test_blown_up_run_is_marked_diverged_not_complete(tmp_path):
    summary = run(config(tmp_path, "train.tokens=60000", "train.lr=30", "train.warmup_frac=0"))
    assert summary["status"] == "diverged" and "step" in summary["error"] and math.isnan(summary["loss"])
    # Caught within a few steps of a 117-step run, not at the next eval point or the end.
    assert 1 <= summary["steps"] <= 10, summary["steps"]
    table = read_sweep(tmp_path / "runs")
    assert table["status"].tolist() == ["diverged"] and read_sweep(tmp_path / "runs", complete_only=True).empty
    # Not retried unless asked.
    assert run(config(tmp_path, "train.tokens=60000", "train.lr=30", "train.warmup_frac=0"))["status"] == "diverged"


@pytest.mark.parametrize("override, field", [
    ("model.n_head=3", "model.n_head"),
    ("train.tokens=0", "train.tokens"),
    ("train.tokens=-5", "train.tokens"),
    ("train.lr=0", "train.lr"),
    ("train.batch_size=100000", "train.batch_size"),
    ("model.n_ctx=100000", "model.n_ctx"),
    ("train.schedule=linear", "train.schedule"),
    ("sweep=../../etc", "sweep"),
])
def test_bad_settings_fail_before_training_and_name_the_field(tmp_path, override, field):
    with pytest.raises(ConfigError) as err:
        run(config(tmp_path, "train.tokens=20000", override))
    assert err.value.field == field
    assert not list((tmp_path / "runs").rglob("summary.parquet"))
    assert not list((tmp_path / "runs").rglob("metrics.parquet"))


def test_cli_user_mistakes_exit_nonzero_with_one_clear_line(tmp_path):
    bad = cli(tmp_path, "model.n_head=3")
    assert bad.returncode == 2
    assert "model.n_head" in bad.stderr and "Traceback" not in bad.stderr
    unknown = cli(tmp_path, "model=doesnotexist")
    assert unknown.returncode != 0 and "model" in unknown.stderr and "doesnotexist" in unknown.stderr


def test_a_run_locked_by_another_process_is_skipped(tmp_path):
    from scalinglab.store import run_lock
    cfg = config(tmp_path, "train.tokens=20000")
    from scalinglab.runs import run_id, run_identity
    from scalinglab.store import run_dir
    rdir = run_dir(cfg.paths.runs, "single", run_id(run_identity(cfg)))
    with run_lock(rdir) as mine:
        assert mine
        assert run(cfg)["status"] == "running"
    assert not (rdir / "summary.parquet").exists()
    assert run(cfg)["status"] == "complete"  # the lock is gone with its holder


def test_wandb_offline_logs_the_same_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    summary = run(config(tmp_path, "train.tokens=20000", "logger=wandb"))
    rdir = tmp_path / "runs" / "single" / summary["run_id"]
    assert summary["status"] == "complete" and (rdir / "metrics.parquet").exists()  # parquet is always written
    runs = list((rdir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_wsd_cooldown_branched_from_a_long_run_equals_training_it_from_scratch(tmp_path):
    """Hagele et al. 2024: with no warmup, a constant-LR run's checkpoint at step b followed by this run's WSD
    cooldown is the same computation as the whole WSD run, so branching must reproduce it exactly."""
    common = ["train.warmup_frac=0", "train.cooldown_frac=0.2"]
    scratch = run(config(tmp_path / "a", "train.tokens=25600", "train.schedule=wsd", *common))  # 50 steps
    assert scratch["steps"] == 50
    branch_step = 50 - 10
    # The long run ends at the branch step, as the wsd_budgets plan makes it for its largest budget.
    long = run(config(tmp_path / "b", f"train.tokens={branch_step * 512}", "train.schedule=constant", *common,
                      f"train.save_at_steps=[{branch_step}]"))
    kept = tmp_path / "b" / "runs" / "single" / long["run_id"] / "checkpoints" / f"step-{branch_step}.ckpt"
    assert kept.exists()  # kept after the long run completed
    branched = run(config(tmp_path / "b", "train.tokens=25600", "train.schedule=wsd", *common,
                          f"train.branch_from={long['run_id']}", f"train.branch_step={branch_step}"))
    assert branched["status"] == "complete" and branched["tokens"] == scratch["tokens"] == 25600
    assert branched["loss"] == scratch["loss"]
    missing = config(tmp_path / "c", "train.tokens=25600", "train.schedule=wsd", *common,
                     "train.branch_from=abc123", f"train.branch_step={branch_step}")
    with pytest.raises(ConfigError, match="train.branch_from"):
        run(missing)


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_trains_one_run(tmp_path):
    """Lightning's DDP (gloo) with 2 processes: one run directory, one summary, the same tokens as one process
    (train.batch_size is the global batch, split across processes) and the same loss up to reduction order."""
    single = run(config(tmp_path / "one", "train.tokens=30000"))
    ddp = cli(tmp_path / "two", "train.tokens=30000", "trainer.accelerator=cpu", "trainer.devices=2",
              "trainer.strategy=ddp")
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    table = read_sweep(tmp_path / "two" / "runs")
    assert len(table) == 1 and table["status"].item() == "complete"
    assert table["tokens"].item() == single["tokens"]
    assert table["loss"].item() == pytest.approx(single["loss"], rel=2e-3)


def test_early_stopping_ends_the_run_after_patience_evals_without_improvement(tmp_path, monkeypatch):
    from scalinglab.module import LanguageModel, eval_steps

    # Validation losses that improve three times, then never again: with patience 3 the run stops at the
    # sixth eval point, long before its token budget.
    losses = iter([5.0, 4.0, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1])
    monkeypatch.setattr(LanguageModel, "evaluate", lambda self: next(losses))
    cfg = config(tmp_path, "train.tokens=120000", "train.early_stopping=true", "train.patience=3",
                 "train.eval_points=12")
    summary = run(cfg)
    points = eval_steps(round(120000 / 512), 12)
    rdir = tmp_path / "runs" / "single" / summary["run_id"]
    metrics = pd.read_parquet(rdir / "metrics.parquet")
    assert metrics["val_loss"].tolist() == [5.0, 4.0, 3.0, 3.1, 3.2, 3.3]
    assert summary["steps"] == points[5] < points[-1] and summary["tokens"] == points[5] * 512
    assert summary["status"] == "complete" and summary["loss_best"] == 3.0
    # Without early stopping the same losses run the whole budget.
    losses = iter([5.0, 4.0, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1])
    full = run(config(tmp_path, "train.tokens=120000", "train.eval_points=12"))
    assert full["steps"] == points[-1]


def test_auto_precision_trains_d_model_64_in_bf16_on_a_cpu_with_bfloat16(tmp_path, monkeypatch):
    """On a CPU with bfloat16 instructions (patched in here, so the test runs alike on every CPU) precision=auto
    trains a d_model 64 model under bf16 autocast and names it as the explicit bf16-mixed run; d_model 32 stays
    fp32, under the 32-true run's id."""
    import torch

    from scalinglab import runs
    from scalinglab.model import GPT

    monkeypatch.setattr(runs, "cpu_has_bf16", lambda: True)
    seen = []
    forward = GPT.forward

    def spy(self, *args, **kwargs):
        if torch.is_grad_enabled():
            seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
        return forward(self, *args, **kwargs)
    monkeypatch.setattr(GPT, "forward", spy)
    for d_model, precision, dtype in ((64, "bf16-mixed", torch.bfloat16), (32, "32-true", torch.float32)):
        seen.clear()
        cfg = config(tmp_path, f"model.d_model={d_model}", "train.tokens=8192", "train.eval_points=1")
        summary = run(cfg)
        explicit = config(tmp_path, f"model.d_model={d_model}", "train.tokens=8192", "train.eval_points=1",
                          f"trainer.precision={precision}")
        assert summary["status"] == "complete" and math.isfinite(summary["loss"])
        assert summary["run_id"] == runs.run_id(runs.run_identity(explicit))
        assert (summary["precision"], summary["device"]) == (precision, "cpu")  # the resolved one, in the table
        # Every training step's forward under `dtype` (one more, in fp32, counts the run's FLOPs: flops.py).
        assert seen.count(dtype) >= summary["steps"] and set(seen) <= {dtype, torch.float32}
