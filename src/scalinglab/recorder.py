"""A Lightning callback that keeps the run directory current: metrics at eval points, checkpoints, wall time.

At each eval step it evaluates (LanguageModel.record), rewrites metrics.parquet whole and atomically from the
module's rows, logs the row to the optional logger (wandb), applies early stopping, and writes
checkpoints/last.ckpt atomically. Between eval points it also checkpoints every `checkpoint_minutes`.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L

from scalinglab.config import TrainConfig
from scalinglab.store import CHECKPOINT, TMP_PREFIX, fault_point, storage_error, write_metrics


class RunRecorder(L.Callback):
    def __init__(self, run_dir: Path, train: TrainConfig):
        self.run_dir = Path(run_dir)
        self.save_at_steps = set(train.save_at_steps)
        self.checkpoint_seconds = 60.0 * train.checkpoint_minutes
        self.early_stopping, self.patience = train.early_stopping, train.patience
        self._t_batch = None
        self._t_checkpoint = time.monotonic()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t_batch = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        pl_module.wall_time += time.perf_counter() - self._t_batch
        if trainer.global_step in pl_module.eval_at:
            row = pl_module.record()
            if trainer.is_global_zero:
                write_metrics(self.run_dir, pl_module.rows)
            for logger in trainer.loggers:
                logger.log_metrics({k: v for k, v in row.items() if k != "step" and v is not None}, step=row["step"])
            if self.early_stopping and pl_module.evals_without_improvement >= self.patience:
                trainer.should_stop = True
            if trainer.global_step < pl_module.total_steps and not trainer.should_stop:
                self.save_checkpoint(trainer)
        elif time.monotonic() - self._t_checkpoint > self.checkpoint_seconds:
            self.save_checkpoint(trainer)
        if trainer.global_step in self.save_at_steps:  # kept after the run: WSD cooldowns branch from it
            self.save_checkpoint(trainer, self.run_dir / "checkpoints" / f"step-{trainer.global_step}.ckpt")

    def save_checkpoint(self, trainer: L.Trainer, path: Path | None = None) -> None:
        """checkpoints/last.ckpt (or `path`), written to a temporary name and renamed (all ranks call; rank 0
        writes)."""
        path = path or self.run_dir / CHECKPOINT
        tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(tmp)
            if trainer.is_global_zero:
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())
                fault_point(f"write:{path.name}")
                os.replace(tmp, path)
        except OSError as exc:
            if trainer.is_global_zero:
                tmp.unlink(missing_ok=True)
            raise storage_error(path.parent, exc) from None
        self._t_checkpoint = time.monotonic()
