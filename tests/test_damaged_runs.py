"""Damaged run directories are found and repaired, never trusted: every file a run directory holds, damaged in
turn, is moved aside (named in a warning) and the run ends complete with the curve of an undamaged run."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from scalinglab.store import DAMAGED_TAG, check_run, run_lock
from scalinglab.train import CONFIG_DIR, run

TINY = ["model=nano", "data=text_files", "model.n_ctx=64", "train.batch_size=8", "trainer.progress_bar=false",
        "trainer.accelerator=cpu", "train.threads=1", "train.tokens=10240", "train.eval_points=4",
        "train.save_at_steps=[10]"]
RESULT_COLUMNS = ["step", "tokens", "train_loss", "val_loss", "bpb", "lr", "flops_6nd", "epochs"]


def config(runs: Path, cache: Path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[*TINY, f"paths.runs={runs}", f"paths.cache={cache}"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One complete run of 20 steps (a step-10 checkpoint kept): its cache, directory and curve."""
    root = tmp_path_factory.mktemp("reference")
    summary = run(config(root / "runs", root / "cache"))
    assert summary["status"] == "complete"
    rdir = root / "runs" / "single" / summary["run_id"]
    return root / "cache", rdir, pd.read_parquet(rdir / "metrics.parquet")


def copy_run(reference, tmp_path: Path) -> Path:
    rdir = tmp_path / "runs" / "single" / reference[1].name
    shutil.copytree(reference[1], rdir)
    return rdir


def interrupted_at_step_10(rdir: Path) -> None:
    """What a run killed after its step-10 checkpoint leaves: no summary, last.ckpt = that checkpoint."""
    (rdir / "summary.parquet").unlink()
    shutil.copy(rdir / "checkpoints" / "step-10.ckpt", rdir / "checkpoints" / "last.ckpt")


def garbage(path: Path) -> None:
    path.write_bytes(b"not what this file should be\n" * 10)


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def relaunch(reference, rdir: Path, caplog, capsys) -> tuple[dict, str, str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="scalinglab.store"):
        summary = run(config(rdir.parents[1], reference[0]))
    return summary, caplog.text, capsys.readouterr().out


def assert_like_reference(reference, rdir: Path, summary: dict) -> None:
    assert summary["status"] == "complete"
    pd.testing.assert_frame_equal(pd.read_parquet(rdir / "metrics.parquet")[RESULT_COLUMNS],
                                  reference[2][RESULT_COLUMNS], check_exact=True)
    assert check_run(rdir) == []
    assert not list(rdir.rglob(".tmp-*"))


# A complete run whose file does not read back: marked damaged, moved aside, trained again.
COMPLETE = {
    "summary-garbage": ("summary.parquet", garbage),
    "summary-cut-short": ("summary.parquet", cut_short),
    "summary-empty-file": ("summary.parquet", lambda p: p.write_bytes(b"")),
    "metrics-garbage": ("metrics.parquet", garbage),
    "metrics-missing": ("metrics.parquet", lambda p: p.unlink()),
    "metrics-no-rows": ("metrics.parquet", lambda p: pd.read_parquet(p).iloc[:0].to_parquet(p)),
    "config-garbage": ("config.yaml", lambda p: p.write_bytes(b"\x00\xff: [unclosed")),
    "step-checkpoint-cut-short": ("checkpoints/step-10.ckpt", cut_short),
    "step-checkpoint-zeroed": ("checkpoints/step-10.ckpt", lambda p: p.write_bytes(bytes(p.stat().st_size))),
}


@pytest.mark.parametrize("case", list(COMPLETE))
def test_a_complete_run_whose_file_does_not_read_back_is_moved_aside_and_trained_again(case, reference, tmp_path,
                                                                                       caplog, capsys):
    rdir = copy_run(reference, tmp_path)
    name, damage = COMPLETE[case]
    damage(rdir / name)
    assert [d.file for d in check_run(rdir)] == [rdir / name]
    summary, warned, said = relaunch(reference, rdir, caplog, capsys)
    assert "already complete" not in said
    assert str(rdir / name) in warned and "moved aside" in warned
    aside = name if case != "metrics-missing" else "summary.parquet"  # kept aside for a person to look at
    assert list((rdir / aside).parent.glob(f"{Path(aside).name}{DAMAGED_TAG}*"))
    assert_like_reference(reference, rdir, summary)


@pytest.mark.parametrize("damage", [cut_short, garbage, lambda p: p.write_bytes(bytes(p.stat().st_size))],
                         ids=["cut-short", "garbage", "zeroed"])
def test_a_resume_point_that_does_not_load_is_moved_aside_and_the_previous_good_one_used(damage, reference, tmp_path,
                                                                                         caplog, capsys):
    rdir = copy_run(reference, tmp_path)
    interrupted_at_step_10(rdir)
    damage(rdir / "checkpoints" / "last.ckpt")
    summary, warned, said = relaunch(reference, rdir, caplog, capsys)
    assert str(rdir / "checkpoints" / "last.ckpt") in warned
    assert f"from {rdir / 'checkpoints' / 'step-10.ckpt'}" in said
    assert_like_reference(reference, rdir, summary)
    # rerun_failed is not needed, and a second relaunch has nothing to do.
    assert "already complete" in relaunch(reference, rdir, caplog, capsys)[2]


def test_without_a_good_checkpoint_the_run_restarts_from_scratch(reference, tmp_path, caplog, capsys):
    rdir = copy_run(reference, tmp_path)
    interrupted_at_step_10(rdir)
    cut_short(rdir / "checkpoints" / "last.ckpt")
    garbage(rdir / "checkpoints" / "step-10.ckpt")
    summary, warned, said = relaunch(reference, rdir, caplog, capsys)
    assert "last.ckpt" in warned and "step-10.ckpt" in warned and "resuming" not in said
    assert_like_reference(reference, rdir, summary)


def test_a_checkpoint_of_another_model_is_not_resumed_from(reference, tmp_path, caplog, capsys):
    """It loads, but its parameters do not fit this run's model: aside, like a damaged one."""
    import torch

    rdir = copy_run(reference, tmp_path)
    interrupted_at_step_10(rdir)
    ckpt = rdir / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    state["state_dict"] = {k: v[..., :1] for k, v in state["state_dict"].items()}
    torch.save(state, ckpt)
    summary, warned, said = relaunch(reference, rdir, caplog, capsys)
    assert str(ckpt) in warned and "other parameters" in warned
    assert_like_reference(reference, rdir, summary)


@pytest.mark.parametrize("lock", ["folder", "fifo", "garbage"])
def test_a_damaged_lock_file_is_replaced_and_the_run_trains(lock, reference, tmp_path, caplog, capsys):
    rdir = copy_run(reference, tmp_path)
    interrupted_at_step_10(rdir)
    path = rdir / ".lock"
    path.unlink()
    if lock == "folder":
        (path / "inside").mkdir(parents=True)
    elif lock == "fifo":
        os.mkfifo(path)  # opening it for writing would block forever
    else:
        path.write_bytes(os.urandom(64))  # harmless: flock ignores the contents
    summary, warned, _ = relaunch(reference, rdir, caplog, capsys)
    assert (str(path) in warned) == (lock != "garbage")
    assert path.is_file()
    assert_like_reference(reference, rdir, summary)
    with run_lock(rdir) as mine:  # a working lock again
        assert mine


def test_stray_temporaries_of_a_complete_run_are_removed_under_its_lock(reference, tmp_path, capsys):
    rdir = copy_run(reference, tmp_path)
    stray = [rdir / ".tmp-summary.parquet.x1y2", rdir / ".tmp-metrics.parquet.abc", rdir / "checkpoints" / ".tmp-last.ckpt"]
    for path in stray:
        path.write_bytes(b"half a file")
    before = {p: p.read_bytes() for p in rdir.rglob("*") if p.is_file() and not p.name.startswith(".")}
    run(config(rdir.parents[1], reference[0]))
    assert "already complete" in capsys.readouterr().out  # not retrained
    assert not any(p.exists() for p in stray)
    assert {p: p.read_bytes() for p in rdir.rglob("*") if p.is_file() and not p.name.startswith(".")} == before


def test_temporaries_of_a_run_another_process_holds_are_left_alone(reference, tmp_path, capsys):
    rdir = copy_run(reference, tmp_path)
    live = rdir / ".tmp-metrics.parquet.live"
    live.write_bytes(b"being written")
    with run_lock(rdir) as mine:
        assert mine
        run(config(rdir.parents[1], reference[0]))
        assert live.exists()


def test_a_checkpoint_without_the_optimizer_state_is_not_resumed_from(reference, tmp_path, caplog, capsys):
    """Lightning would refuse it on every relaunch ('contains only the model'): aside, like a damaged one."""
    import torch

    rdir = copy_run(reference, tmp_path)
    interrupted_at_step_10(rdir)
    ckpt = rdir / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    del state["optimizer_states"]
    torch.save(state, ckpt)
    summary, warned, said = relaunch(reference, rdir, caplog, capsys)
    assert str(ckpt) in warned and "optimizer_states" in warned
    assert_like_reference(reference, rdir, summary)
