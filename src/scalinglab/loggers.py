"""Lightning loggers from the `logger` config group, and what scalinglab sends to them.

`logger=csv`, `logger=tensorboard`, `logger=wandb` or several at once (`logger=[csv,wandb]`). Each logger gets
`train/loss` and `train/lr` every `trainer.log_every_n_steps` optimizer steps (the loss of that step: one host
sync per logged step, none in between) and every eval row at the eval points (the recorder logs those). The
parquet files in the run directory are written in any case.

W&B: the run id is a hash of sweep and run id, so the same run in two sweeps is two W&B runs; group = sweep.
"""
from __future__ import annotations

from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from scalinglab.runs import run_id

KINDS = ("csv", "tensorboard", "wandb")


def wandb_id(sweep: str, rid: str) -> str:
    """The W&B run id of run `rid` in `sweep` (unique per sweep and run; W&B appends to a run with a known id)."""
    return run_id({"sweep": sweep, "run_id": rid})


def build_loggers(cfg: DictConfig, rid: str, rdir: Path) -> list:
    """The Lightning loggers the `logger` group selects (an empty list for the default, parquet only)."""
    settings = OmegaConf.to_container(cfg.logger, resolve=True) or {}
    hparams = OmegaConf.to_container(cfg, resolve=True)
    loggers = []
    if settings.get("csv") is not None:
        from lightning.pytorch.loggers import CSVLogger
        loggers.append(CSVLogger(save_dir=str(rdir / settings["csv"]["save_dir"]), name="", version=""))
        loggers[-1].log_hyperparams(hparams)
    if settings.get("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger
        loggers.append(TensorBoardLogger(save_dir=str(rdir / settings["tensorboard"]["save_dir"]), name="",
                                         version="", default_hp_metric=False))
        loggers[-1].log_hyperparams(hparams)
    if settings.get("wandb") is not None:
        from lightning.pytorch.loggers import WandbLogger
        w = settings["wandb"]
        loggers.append(WandbLogger(project=w["project"], entity=w["entity"], group=w["group"],
                                   name=f"{cfg.sweep}/{rid}", id=wandb_id(str(cfg.sweep), rid), mode=w["mode"],
                                   save_dir=str(rdir), resume="allow", config=hparams))
    return loggers


class LogTrainLoss(L.Callback):
    """train/loss and train/lr to every logger each `log_every_n_steps` optimizer steps."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if not trainer.loggers or step % trainer.log_every_n_steps:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        metrics = {"train/loss": float(loss), "train/lr": pl_module.lr_at(step - 1)}  # the LR of this update
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
