"""Lightning integration: trainer.* passes through to lightning.Trainer (or is refused), loggers through Lightning
(csv, tensorboard, wandb, several at once) get train loss/LR every log_every_n_steps and the eval rows, and the W&B
run id is unique per sweep and run."""
from __future__ import annotations

import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from scalinglab.errors import ConfigError
from scalinglab.loggers import build_loggers
from scalinglab.runs import run_identity as identity
from scalinglab.train import run
from scalinglab.validate import validate
from test_train import config


def test_accounting_arguments_are_refused_with_the_reason(tmp_path):
    for override, fix in (("+trainer.accumulate_grad_batches=2", "train.batch_size"),
                          ("+trainer.max_steps=10", "train.tokens"), ("+trainer.gradient_clip_val=0.5", "grad_clip")):
        with pytest.raises(ConfigError, match=fix) as info:
            validate(config(tmp_path, override))
        assert info.value.field == override[1:].split("=")[0]


def test_other_trainer_arguments_reach_lightning_and_the_run_id(tmp_path):
    with pytest.raises(ConfigError, match="not an argument of lightning.Trainer"):
        validate(config(tmp_path, "+trainer.max_stepz=3"))
    plain = config(tmp_path)
    assert identity(config(tmp_path, "trainer.log_every_n_steps=7")) == identity(plain)  # no effect on results
    assert identity(config(tmp_path, "+trainer.gradient_clip_algorithm=value")) != identity(plain)
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        summary = run(config(tmp_path, "train.tokens=6000", "+trainer.deterministic=true", "logger=[csv,tensorboard]",
                             "trainer.log_every_n_steps=3"))
        assert torch.are_deterministic_algorithms_enabled()  # lightning.Trainer got deterministic=True
    finally:
        torch.use_deterministic_algorithms(False)
    assert summary["status"] == "complete"
    rdir = tmp_path / "runs" / "single" / summary["run_id"]
    rows = pd.read_csv(rdir / "csv" / "metrics.csv")
    train_rows = rows.dropna(subset=["train/loss"])
    assert train_rows["step"].tolist() == list(range(3, summary["steps"] + 1, 3))
    assert (train_rows["train/lr"] > 0).all() and train_rows["train/loss"].between(0, 10).all()
    evals = rows.dropna(subset=["val_loss"])
    metrics = pd.read_parquet(rdir / "metrics.parquet")
    assert evals["step"].tolist() == metrics["step"].tolist()
    assert evals["val_loss"].tolist() == pytest.approx(metrics["val_loss"].tolist())
    events = list((rdir / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and b"train/loss" in events[0].read_bytes() and b"val_loss" in events[0].read_bytes()


def test_wandb_run_id_is_unique_per_sweep_and_run_and_grouped_by_sweep(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    ids = {}
    for sweep in ("first", "second"):
        cfg = config(tmp_path, "logger=wandb", f"sweep={sweep}")
        (logger,) = build_loggers(cfg, "abc123def456", tmp_path / sweep)
        ids[sweep] = logger.version
        assert logger._wandb_init["group"] == sweep and logger._wandb_init["name"] == f"{sweep}/abc123def456"
    assert ids["first"] != ids["second"]
    (again,) = build_loggers(config(tmp_path, "logger=wandb", "sweep=first"), "abc123def456", tmp_path)
    assert again.version == ids["first"]  # a resumed run continues its own W&B run
    assert build_loggers(config(tmp_path), "abc123def456", tmp_path) == []  # default: parquet only
    assert OmegaConf.to_container(config(tmp_path, "logger=[csv,wandb]").logger).keys() == {"csv", "wandb"}


def test_console_has_no_lightning_banners_tips_or_checkpoint_info(tmp_path):
    from test_train import cli

    out = cli(tmp_path, "train.tokens=3000")
    assert out.returncode == 0, out.stderr
    console = out.stdout + out.stderr
    for noise in ("GPU available", "TPU available", "Tip:", "weights_only", "max_steps=", "LOCAL_RANK"):
        assert noise not in console, (noise, console)
    assert console.count(": complete, val loss") == 1
