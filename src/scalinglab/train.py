"""Train one model: `python -m scalinglab.train [Hydra overrides]` (or one member of a `-m` multirun).

    python -m scalinglab.train model=nano train.tokens=1e6 train.seed=1 paths.runs=runs logger=wandb

Order of work: validate every setting (cheap) -> prepare data (cached) -> run directory -> skip if complete,
resume if it has a checkpoint -> train with Lightning -> summary.parquet (complete | diverged | failed).
A user mistake exits with status 2 and one line naming the setting and the fix, before any training.
"""
from __future__ import annotations

import logging
import math
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from scalinglab import resources
from scalinglab.build import build_datamodule, instantiate
from scalinglab.config import CONFIG_DIR, GPTConfig, TrainConfig
from scalinglab.errors import ConfigError, exit_on_user_error, report_user_error
from scalinglab.runs import resolve_device_kind, resolve_precision, run_id, run_identity
from scalinglab.resume import claim_run_dir, resume_point
from scalinglab.store import (CHECKPOINT, CONFIG, SCHEMA_VERSION, SUMMARY, TMP_PREFIX, StoreError, check_name,
                              check_run, read_summary, remove_temporaries, run_dir, run_lock, write_parquet,
                              write_text)
from scalinglab.validate import check_overrides, trainer_passthrough, validate

log = logging.getLogger("scalinglab.train")


def branch_checkpoint(train: TrainConfig, rdir: Path, steps: int) -> str | None:
    """The checkpoint a WSD cooldown starts from: <sweep>/<branch_from>/checkpoints/step-<branch_step>.ckpt."""
    source, step = train.branch_from, train.branch_step
    if source is None:
        return None
    if not isinstance(step, int) or not 0 < step < steps:
        raise ConfigError("train.branch_step", f"must be a step in (0, {steps}) of this run, got {step!r}",
                          "set train.branch_step to the long run's step where this cooldown starts")
    path = rdir.parent / check_name(str(source), "train.branch_from") / "checkpoints" / f"step-{step}.ckpt"
    if not path.exists():
        raise ConfigError("train.branch_from", f"no checkpoint {path}",
                          "train the long run first (with train.save_at_steps including this step)")
    return str(path)


def _versions() -> dict:
    import lightning
    import torch

    import scalinglab
    return {"python": platform.python_version(), "torch": torch.__version__, "lightning": lightning.__version__,
            "scalinglab": scalinglab.__version__}


def _quiet_lightning() -> None:
    """Keep the console for the progress bar and our own lines: no Lightning banners, Tips or per-checkpoint INFO.

    Called after Lightning is imported (its import sets its loggers to INFO with a console handler of their own,
    which also printed each line a second time through Hydra's root handler); its warnings reach the console
    once, through the root logger.
    """
    import warnings
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.WARNING)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
    warnings.filterwarnings("ignore", message=".*val_dataloader.*validation_step.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # The data module starts a resumed run's batches at its global step (data.py), so this warning does not apply.
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before the epoch ended.*")


def _launcher_rank_zero() -> bool:
    """False in the extra processes of a multi-process run (Lightning's DDP children, torchrun, SLURM tasks)."""
    return all(int(os.environ.get(var, 0)) == 0 for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"))


def _is_multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


def open_run(cfg: DictConfig) -> tuple:
    """Validate every cheap setting (a refused setting never imports torch), build the model config and the data
    module, and name the run: (model_cfg, dm, run_id, run_dir). The run id hashes the device kind and precision
    the run will train on (runs.run_identity)."""
    from scalinglab.machine import check_launch, check_resources

    train = validate(cfg)
    model_cfg = instantiate(cfg.model)  # a scalinglab.config.GPTConfig
    dm = build_datamodule(cfg, train)
    if _launcher_rank_zero():  # what the machine can run (a DDP child sees the devices its parent checked)
        check_resources(cfg, model_cfg, check_launch(cfg))
    rid = run_id(run_identity(cfg))
    return model_cfg, dm, rid, run_dir(cfg.paths.runs, str(cfg.sweep), rid)


def finished(cfg: DictConfig, rdir: Path, rid: str) -> dict | None:
    """The summary of a run with nothing left to do (complete, or ended and not to be rerun), else None.

    A run with a damaged file (store.check_run) has something left to do: it is repaired under its lock
    (claim_run_dir) and trained again if it was complete."""
    if check_run(rdir):
        return None
    done = read_summary(rdir)
    if done is not None and (done["status"] == "complete" or not cfg.rerun_failed):
        hint = "" if done["status"] == "complete" else " (pass rerun_failed=true to train it again)"
        print(f"run {cfg.sweep}/{rid} is already {done['status']}: nothing to do{hint}")
        return done
    return None


def running(cfg: DictConfig, rid: str) -> dict:
    """The row returned for a run whose lock another process holds."""
    print(f"run {cfg.sweep}/{rid} is being trained by another process: skipped")
    return {"run_id": rid, "sweep": str(cfg.sweep), "status": "running", "loss": math.nan}


def run(cfg: DictConfig) -> dict:
    """Train the run `cfg` describes (or skip it) and return its summary row."""
    # 1. Validate every cheap setting before touching data or compute.
    model_cfg, dm, rid, rdir = open_run(cfg)
    done = finished(cfg, rdir, rid)
    if done is not None:
        if any(rdir.rglob(f"{TMP_PREFIX}*")):  # a killed writer's leftovers beside a finished result
            with run_lock(rdir) as mine:
                if mine:
                    remove_temporaries(rdir)
        return done
    # 2. Data (built once, then cached); validates n_ctx and batch size against the splits.
    dm.prepare()
    if not _launcher_rank_zero():  # a DDP child process Lightning started: rank 0 holds the lock
        return _train(cfg, model_cfg, dm, rid, rdir)
    with run_lock(rdir) as mine:
        if not mine:
            return running(cfg, rid)
        claim_run_dir(rdir)
        done = finished(cfg, rdir, rid)  # another process may have finished it while we prepared data
        if done is not None:
            return done
        from scalinglab.stacked import is_member_checkpoint, train_members
        if is_member_checkpoint(rdir / CHECKPOINT):  # interrupted while stacked: resumed the same way
            return train_members([(cfg, model_cfg, dm, rid, rdir)])[0]
        return _train(cfg, model_cfg, dm, rid, rdir)


def run_facts(cfg: DictConfig, model_cfg, dm, rdir: Path) -> tuple:
    """Write config.yaml and count what the summary reports: (model_cfg with the data's vocabulary, parameter
    counts, FLOPs per token by convention, peak LR, tokens per epoch)."""
    import torch

    from scalinglab.allocator import keep_freed_memory
    from scalinglab.flops import flops_measured, flops_per_token
    from scalinglab.model import GPT
    from scalinglab.schedule import peak_lr

    train = TrainConfig.from_dict(cfg.train)
    if model_cfg.vocab_size != dm.vocab_size:
        model_cfg = GPTConfig(**{**model_cfg.to_dict(), "vocab_size": dm.vocab_size})
    if train.threads:
        torch.set_num_threads(train.threads)
    keep_freed_memory()  # every step allocates the same tensors: no page faults for them (allocator.py)
    if _launcher_rank_zero():
        write_text(rdir / CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
    probe = GPT(model_cfg)
    counts = probe.param_counts()
    per_token = {**flops_per_token(model_cfg, counts), "flops_measured": flops_measured(probe)}
    lr = peak_lr(train, counts, model_cfg.d_model)
    return model_cfg, counts, per_token, lr, dm.tokens_per_epoch


def build_module(cfg: DictConfig, model_cfg, dm, per_token: dict, lr: float, tokens_per_epoch: int, cls=None):
    """Seed from train.seed, then build the run's LanguageModel (or subclass `cls`): the same initial weights
    whether the run trains alone or stacked."""
    import lightning as L

    from scalinglab.module import LanguageModel

    train = TrainConfig.from_dict(cfg.train)
    L.seed_everything(train.seed, workers=True, verbose=False)
    return (cls or LanguageModel)(model_cfg, train, dm.steps, per_token, lr, dm.val_bytes_per_token,
                                  tokens_per_epoch)


def _train(cfg: DictConfig, model_cfg, dm, rid: str, rdir: Path) -> dict:
    """Build, fit (or resume) and write the summary of one run; the caller holds its lock."""
    import lightning as L
    import torch

    _quiet_lightning()
    from scalinglab.loggers import LogTrainLoss, build_loggers
    from scalinglab.module import STEPS_PER_BATCH, Diverged
    from scalinglab.recorder import RunRecorder

    # 3. Run directory and objects.
    model_cfg, counts, per_token, lr, tokens_per_epoch = run_facts(cfg, model_cfg, dm, rdir)
    module = build_module(cfg, model_cfg, dm, per_token, lr, tokens_per_epoch)
    train = module.train_cfg
    if train.compile:
        module.model = torch.compile(module.model)
    loggers = build_loggers(cfg, rid, rdir)
    device_kind = resolve_device_kind(cfg.trainer.accelerator)  # as open_run hashed it into the run id
    callbacks = [RunRecorder(rdir, train), LogTrainLoss()]
    if cfg.trainer.progress_bar:
        from scalinglab.progress import TokenProgressBar
        callbacks.append(TokenProgressBar(total_tokens=dm.tokens_total))
    precision = resolve_precision(cfg.trainer.precision, device_kind, model_cfg.d_model)  # as in the run id
    trainer = L.Trainer(accelerator=device_kind, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
                        strategy=cfg.trainer.strategy, precision=precision,
                        max_steps=dm.steps, max_epochs=1,  # the module clips gradients itself (train.grad_clip)
                        logger=loggers or False, callbacks=callbacks, enable_checkpointing=False,
                        enable_progress_bar=bool(cfg.trainer.progress_bar),
                        num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=str(rdir),
                        use_distributed_sampler=False,  # the data module splits each step's batch itself
                        **trainer_passthrough(cfg))
    # Several optimizer steps per Lightning batch; a batch ends at every step a callback acts on (eval points, kept
    # checkpoints, and the steps LogTrainLoss logs).
    logged = range(trainer.log_every_n_steps, dm.steps + 1, trainer.log_every_n_steps) if loggers else ()
    dm.steps_per_batch = STEPS_PER_BATCH
    dm.step_cuts = frozenset(module.eval_at) | set(train.save_at_steps) | set(logged)
    ckpt = resume_point(rdir, module)
    resume = str(ckpt) if ckpt is not None else branch_checkpoint(train, rdir, dm.steps)
    if resume:
        print(f"resuming {cfg.sweep}/{rid} from {resume}")

    # 4. Train; the summary says how it ended.
    status, error, started = "complete", None, time.time()
    steps = None
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=resume, weights_only=True)
        if trainer.global_step < dm.steps and not trainer.should_stop:
            raise RuntimeError(f"training stopped at step {trainer.global_step} of {dm.steps}")
    except Diverged as exc:
        status, error = "diverged", str(exc)
        steps = exc.step - 1  # the steps before the one that failed (its loss is read a few steps late)
    except (KeyboardInterrupt, SystemExit, StoreError):  # a refused write is the disk's problem, not the run's
        raise
    except Exception as exc:  # a real failure: recorded, never read as a result
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("run %s failed", rid)
    finally:
        for logger in loggers:
            logger.finalize(status)
        if OmegaConf.select(cfg, "logger.wandb") is not None:
            import wandb
            wandb.finish()  # under multirun, the next run must not log into this one
    steps = trainer.global_step if steps is None else steps
    summary = summary_row(cfg, model_cfg, counts, per_token, module, steps, status, error, started)
    if trainer.is_global_zero:
        if status == "complete" and cfg.train.save_final:  # before the summary that marks the run complete
            from scalinglab.pretrained import save_pretrained
            save_pretrained(module.model, model_cfg, rdir)
        write_result(cfg, rdir, summary)
    if status == "failed" and not _is_multirun():
        raise RuntimeError(f"run {rid} failed: {error}")
    return summary


def summary_row(cfg: DictConfig, model_cfg, counts: dict, per_token: dict, module, steps: int, status: str,
                error: str | None, started: float) -> dict:
    """The one row of summary.parquet, from the run's config and its LanguageModel's state after `steps` steps."""
    rows, train = module.rows, module.train_cfg
    final = rows[-1] if rows and status == "complete" else {}
    identity = run_identity(cfg)
    return {
        "run_id": run_id(identity), "sweep": str(cfg.sweep), "status": status, "error": error,
        "family": model_cfg.family, "n_layer": model_cfg.n_layer, "d_model": model_cfg.d_model,
        "n_head": model_cfg.n_head, "n_kv_head": model_cfg.kv_heads,
        "n_ctx": model_cfg.n_ctx, "d_ff": model_cfg.ff, "vocab_size": model_cfg.vocab_size,
        **counts,
        "tokens_budget": train.tokens, "tokens": module.tokens_seen, "steps": steps,
        "batch_size": train.batch_size, "lr": module.peak_lr, "lr_rule": train.lr_rule,
        "schedule": train.schedule, "seed": train.seed,
        "device": identity["device"], "precision": identity["precision"],
        "branch_from": train.branch_from, "branch_step": train.branch_step,
        "epochs": module.tokens_seen / module.tokens_per_epoch,
        **{name: module.tokens_seen * per_token[name] for name in per_token},
        "flops_per_token_measured": per_token["flops_measured"],
        "loss": final.get("val_loss", math.nan),
        "loss_best": min((r["val_loss"] for r in rows), default=math.nan) if status == "complete" else math.nan,
        "bpb": final.get("bpb", math.nan),
        "holdout_source": OmegaConf.select(cfg, "data.holdout_source", default=None),
        "grad_noise_scale": next((r["grad_noise_scale"] for r in reversed(rows) if r.get("grad_noise_scale") is not None),
                                 None),
        **{k: v for k, v in final.items() if k.startswith("val_loss/")},
        "wall_time": module.wall_time, "finished_at": time.time(), "elapsed": time.time() - started,
        "data": str(OmegaConf.select(cfg, "data.source.kind", default="")), **_versions(),
        "schema_version": SCHEMA_VERSION,
    }


def write_result(cfg: DictConfig, rdir: Path, summary: dict) -> None:
    """Write summary.parquet (the run's result), drop the resume point of a complete run, say how it ended."""
    write_parquet(rdir / SUMMARY, [summary])
    status, error = summary["status"], summary["error"]
    if status == "complete":  # no resume point needed: the summary is the result
        ckpt = rdir / CHECKPOINT
        ckpt.unlink(missing_ok=True)
        if ckpt.parent.exists() and not any(ckpt.parent.iterdir()):
            ckpt.parent.rmdir()
    print(f"run {cfg.sweep}/{summary['run_id']}: {status}" + (f" ({error})" if error else
          f", val loss {summary['loss']:.4f} nats/token, {summary['bpb']:.4f} bits/byte, {summary['tokens']:,} tokens"))
    if _is_multirun():  # a launched sweep: one progress line per finished run
        from scalinglab.sweep import progress_line
        line = progress_line(rdir.parent)
        if line:
            print(line, flush=True)


def _override(argv: list[str], key: str) -> str | None:
    """The value of the last `key=value` (or `+key=`/`++key=`) on the command line, None if absent."""
    value = None
    for arg in argv:
        name, sep, rest = arg.lstrip("+").partition("=")
        if sep and name == key:
            value = rest
    return value


def check_runs_writable(argv: list[str]) -> None:
    """Refuse an unwritable paths.runs (given on the command line or in SCALINGLAB_RUNS) before Hydra creates its
    output folder there, which would otherwise fail with a traceback."""
    runs = _override(argv, "paths.runs") or os.environ.get("SCALINGLAB_RUNS")
    if not runs or "${" in runs:
        return
    from scalinglab.machine import check_directory
    check_directory(runs, "paths.runs")


def train_job(cfg: DictConfig) -> list[dict]:
    """One Hydra job: the stack a sweep grouped into it (stacked.STACK_ENV), or the run `cfg` describes; one
    summary row per run."""
    group = os.environ.get("SCALINGLAB_STACK_GROUP")
    if group:
        from scalinglab.stacked import train_group_file
        return train_group_file(group)
    return [run(cfg)]


JOB_KEYS = ("run_id", "status", "loss", "finished_at", "error")  # what a sweep job hands back to the sweeper


def sweep_job(cfg: DictConfig) -> list[dict]:
    """One job of a launched sweep: its runs' (run_id, status, loss, finished_at, error), which the sweeper sums
    up when the launch ends (sweep.launch_outcome). A user mistake met by this job alone (a missing branch
    checkpoint, ...) fails this job, not the launch: one line on stderr and a `failed` row. A refused write
    (StoreError: disk full, read-only) still ends the launch with status 2, since every run would meet it."""
    from scalinglab.errors import user_error

    try:
        rows = train_job(cfg)
    except StoreError as exc:
        sys.exit(report_user_error(exc))
    except Exception as exc:
        error = user_error(exc)
        if error is None:
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        return [{"run_id": None, "status": "failed", "loss": math.nan, "finished_at": time.time(),
                 "error": str(error)}]
    return [{key: row.get(key) for key in JOB_KEYS} for row in rows]


@hydra.main(version_base="1.3", config_path=resources.CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> float | list[dict] | None:
    # Not decorated itself: Hydra names the job after the task function's file.
    if _is_multirun():
        exit_on_user_error(_check_sweeper)(cfg)
        return sweep_job(cfg)
    return exit_on_user_error(train_job)(cfg)[0].get("loss")


def _check_sweeper(cfg: DictConfig) -> None:
    """A sweep file (one with a plan: section) launched with `-m` without the scalinglab sweeper would get Hydra's
    basic sweeper, which trains one run of the defaults: refused."""
    if "plan" in cfg and "scalinglab_sweeper" not in str(HydraConfig.get().sweeper.get("_target_", "")):
        raise ConfigError("hydra/sweeper", "the file has a plan: section, but Hydra's basic sweeper would train "
                          "one run of its defaults instead of the plan", "add `- override hydra/sweeper: scalinglab` "
                          "to the file's defaults (before _self_), or launch it with `scalinglab-sweep run <file>`")


def check_settings(cfg: DictConfig) -> None:
    """Every check of a composed run config that needs no data: the settings (validate), the model and data
    settings (their constructors), the paths, the machine and the resources (scalinglab.machine). Raises
    ConfigError; creates nothing."""
    from scalinglab.machine import check_directory, check_launch, check_resources

    validate(cfg)
    build_datamodule(cfg, progress=False)  # first: model.vocab_size reads data.vocab_size
    model_cfg = instantiate(cfg.model)
    check_directory(cfg.paths.runs, "paths.runs")
    check_directory(cfg.paths.cache, "paths.cache")
    check_resources(cfg, model_cfg, check_launch(cfg))


@exit_on_user_error
def _check_command_line(argv: list[str]) -> None:
    sweep = _override(argv, "sweep")
    if sweep is not None:
        check_name(sweep.strip("'\""), "sweep")
    cfg = check_overrides(argv, CONFIG_DIR)
    check_runs_writable(argv)
    if cfg is not None and "${hydra:" not in OmegaConf.to_yaml(cfg):  # Hydra's own resolver works only under Hydra
        check_settings(cfg)


def entry() -> None:
    """`python -m scalinglab.train`: check the sweep name (first: it is where a path or code would be smuggled in),
    that the overrides compose (Hydra would exit 1 with its own message), the runs folder Hydra writes its output
    folder under (`<paths.runs>/<sweep>/.hydra`, made before main runs) and every setting (check_settings), so
    that a refused command leaves nothing behind; then Hydra."""
    _check_command_line(sys.argv[1:])
    main()


if __name__ == "__main__":
    entry()
