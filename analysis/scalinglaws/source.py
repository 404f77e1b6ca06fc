"""What a report reads: the validated runs table, the training curves, and the runs no fit may use.

`load_source(source)` takes a table (.csv/.parquet path or DataFrame) or a scalinglab runs directory and returns
a `Source`. For a runs directory each run also gets its sweep plan's `budget` and `role` (plan.parquet), the runs
whose status is not complete are listed, and so are the WSD long runs and cooldowns (Hagele et al. 2024,
arXiv:2405.18392) whose cost the report compares with training each budget from scratch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import InputError
from .table import damaged_error, load_curves, load_runs_dir, read_table

log = logging.getLogger("scalinglaws")
NOT_FITTED_COLUMNS = ("run_id", "sweep", "n_params", "tokens", "status", "error")
WSD_COLUMNS = ("run_id", "role", "n_params", "tokens", "branch_step", "batch_size", "n_ctx", "wall_time", "elapsed")


@dataclass(frozen=True)
class Source:
    """A report's input.

    table: the validated runs table (`table.read_table`: canonical N, D, C, loss; complete runs only).
    curves: every eval point of every run (`table.load_curves`), or None for a bare table.
    where: the path read, or "table" for a DataFrame.
    excluded: {status: count} of the runs left out because they are not complete; notes: what reading assumed
    (e.g. C computed as 6 N D).
    not_fitted: the runs left out, one row each (run_id, sweep, n_params, tokens, status, error where known).
    damaged: the runs left out because a file of theirs does not read back (run_id, file, problem; `load_source`
    with skip_damaged=True).
    wsd_runs: the complete WSD long runs and cooldowns (role, tokens, branch_step, batch_size, n_ctx, times).
    tune_runs: the runs of LR-tuning sweeps (plan role "tune"), complete or diverged (`tuning_runs`).
    """

    table: pd.DataFrame
    curves: pd.DataFrame | None = None
    where: str = "table"
    excluded: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    tune_runs: pd.DataFrame | None = None
    not_fitted: pd.DataFrame = field(default_factory=pd.DataFrame)
    damaged: pd.DataFrame = field(default_factory=pd.DataFrame)
    wsd_runs: pd.DataFrame = field(default_factory=pd.DataFrame)


def _plan_columns(root: Path) -> pd.DataFrame | None:
    """`budget` and `role` of every planned run under root (the sweeps' plan.parquet files), by run_id."""
    frames = []
    for f in sorted(root.rglob("plan.parquet")):
        try:
            frame = pd.read_parquet(f)
        except Exception as e:  # pyarrow raises many kinds
            raise InputError(str(f), f"cannot be read ({type(e).__name__}: {e})",
                             "delete it; `python -m scalinglab.sweep plan <sweep>` writes it again") from e
        frame = frame[[c for c in ("run_id", "budget", "role") if c in frame]]
        if "budget" in frame:  # None for runs of sweeps without budgets
            frame = frame.assign(budget=pd.to_numeric(frame["budget"], errors="coerce"))
        frames.append(frame)
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True).drop_duplicates("run_id", keep="last")


def runs_with_plan(path: Path, damaged: list | None = None) -> pd.DataFrame:
    """The summaries of a runs directory (`table.load_runs_dir`, `damaged` as there) with their sweep plans'
    `budget` and `role`."""
    raw = load_runs_dir(path, damaged)
    plan = _plan_columns(path)
    if plan is not None and "run_id" in raw:
        raw = raw.merge(plan[[c for c in plan if c == "run_id" or c not in raw]], on="run_id", how="left")
    return raw


def _source(table: pd.DataFrame, **kw) -> Source:
    return Source(table=table, excluded=dict(table.attrs.get("excluded", {})),
                  notes=tuple(table.attrs.get("notes", ())), **kw)


def _damaged_runs(errors: list[InputError]) -> pd.DataFrame:
    """One row per run with a file that does not read back: run_id, file, problem."""
    rows = [{"run_id": Path(e.field).parent.name, "file": e.field, "problem": e.problem} for e in errors]
    return pd.DataFrame(rows, columns=["run_id", "file", "problem"])


def load_source(source, columns: dict | None = None, skip_damaged: bool = False) -> Source:
    """The report's input from a table path, a DataFrame or a scalinglab runs directory.

    Parameters
    ----------
    source : str, Path or DataFrame
        A .csv/.parquet table, a DataFrame, or a runs directory (`<dir>/**/<run_id>/summary.parquet`).
    columns : dict, optional
        Canonical name -> column of the table, as in `table.read_table`.
    skip_damaged : bool
        For a runs directory: leave out every run whose summary or metrics file does not read back, list them in
        `Source.damaged` and warn (one line naming them all), instead of an InputError naming them all.

    Returns
    -------
    Source
    """
    if isinstance(source, pd.DataFrame):
        return _source(read_table(source, columns=columns))
    path = Path(source)
    if not path.is_dir():
        return _source(read_table(path, columns=columns), where=str(path))
    errors: list[InputError] = []  # every file that does not read back, summaries and curves, in one pass
    raw = runs_with_plan(path, errors)
    curves = load_curves(path, errors) if any(path.rglob("metrics.parquet")) else None
    if errors and not skip_damaged:
        raise damaged_error(errors, path)
    kw = {}
    if errors:
        kw["damaged"] = damaged = _damaged_runs(errors)
        left_out = set(damaged["run_id"])
        raw = raw[~raw["run_id"].astype(str).isin(left_out)].reset_index(drop=True)
        if curves is not None:
            curves = curves[~curves["run_id"].astype(str).isin(left_out)].reset_index(drop=True)
            curves = curves if len(curves) else None
        log.warning("%d damaged run%s left out (files that do not read back): %s. Fix: %s", len(left_out),
                    "s" if len(left_out) > 1 else "", ", ".join(damaged["file"]),
                    "relaunch the sweep: damaged files are moved aside and only those runs are trained again")
    if "role" in raw:
        wsd = raw[raw["role"].isin(["long", "cooldown"]) & raw.get("status", "complete").eq("complete")]
        kw["wsd_runs"] = wsd[[c for c in WSD_COLUMNS if c in wsd]].reset_index(drop=True)
    if "role" in raw and raw["role"].eq("tune").any():
        kw["tune_runs"] = tuning_runs(raw)
    if "status" in raw:
        bad = raw[raw["status"] != "complete"]
        kw["not_fitted"] = bad[[c for c in NOT_FITTED_COLUMNS if c in bad]].reset_index(drop=True)
    return _source(read_table(raw, columns=columns), curves=curves, where=str(path), **kw)


TUNE_COLUMNS = ("run_id", "sweep", "n_params", "n_params_nonembed", "batch_size", "lr", "loss", "status")


def tuning_runs(raw: pd.DataFrame) -> pd.DataFrame:
    """The runs of LR-tuning sweeps in a runs table with plan columns (role "tune"; every run when there is no
    role column): complete ones with their loss, diverged ones with loss inf (an LR too high to train)."""
    runs = raw[raw["role"].eq("tune")] if "role" in raw else raw
    if "status" in runs:
        runs = runs[runs["status"].isin(["complete", "diverged"])]
        runs = runs.assign(loss=runs["loss"].where(runs["status"].eq("complete"), float("inf")))
    return runs[[c for c in TUNE_COLUMNS if c in runs]].reset_index(drop=True)
