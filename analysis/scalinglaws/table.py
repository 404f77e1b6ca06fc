"""Read and validate the table every fit works on: one row per run, canonical columns N, D, C, loss.

Public API
- `load_table(path_or_df, columns=None, keep_status=("complete",), require=("N", "D", "loss")) -> DataFrame`
  reads a .csv/.parquet file (or takes a DataFrame) and returns a validated copy with canonical columns
  N (parameters), D (training tokens), C (training FLOPs) and loss (nats/token); all other columns are kept.
  `columns` maps canonical name -> column in the table, e.g. {"N": "params", "loss": "val_loss"}.
  A scalinglab sweep table is recognised without a mapping: N <- n_params, D <- tokens, C <- flops_6nd.
  If C is absent it is computed as 6 N D (Chinchilla's convention) and `df.attrs["notes"]` says so.
  Rows whose `status` is not in `keep_status` are dropped; `df.attrs["excluded"]` = {status: count}.
  Errors (InputError naming the column and row): a missing column (lists the columns there are), NaN/inf,
  non-numeric or non-positive N/D/C/loss, a duplicate run (same run_id twice; without run_id, the same (N, D)
  twice unless a `seed` column tells them apart).
- `check_enough(df_or_count, need, what)` raises InputError when fewer than `need` points/budgets are given.
- `load_runs_dir(path) -> DataFrame`: the sweep table of a scalinglab runs directory (`<path>/**/<run_id>/
  summary.parquet`, one row each), read without importing scalinglab; columns only some runs have are kept
  (NaN elsewhere). `load_curves(path) -> DataFrame`: all `<run_id>/metrics.parquet` files stacked, with a
  `run_id` column. A truncated or corrupt parquet file raises InputError naming the file.
- `fit_table(fit_fn, df, **kw)` calls a fit function with the table's columns as its array arguments
  (data arguments only: `L` <- column `loss`, N, D, C, S, B, x, y by name; `budgets` <- column `budget` when present; a first argument
  named `curves` gets the whole frame). Bootstrap and backtest use it.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import InputError

CANONICAL = ("N", "D", "C", "loss")
SWEEP_COLUMNS = {"N": "n_params", "D": "tokens", "C": "flops_6nd", "loss": "loss"}


def _read(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise InputError(str(path), "file not found", "pass the path of a .csv or .parquet table")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".txt"):
            return pd.read_csv(path)
    except Exception as e:  # pyarrow / pandas raise many kinds
        raise InputError(str(path), f"cannot be read ({type(e).__name__}: {e})",
                         "rewrite the file completely (a truncated parquet has no footer)") from e
    raise InputError(str(path), f"unknown file type {path.suffix!r}", "use .csv or .parquet")


def load_table(path_or_df, columns: dict | None = None, keep_status=("complete",),
               require=("N", "D", "loss")) -> pd.DataFrame:
    """Validated runs table with canonical columns N, D, C, loss (see module docstring)."""
    df = path_or_df.copy() if isinstance(path_or_df, pd.DataFrame) else _read(Path(path_or_df))
    source = str(path_or_df) if not isinstance(path_or_df, pd.DataFrame) else "table"
    columns = dict(columns or {})
    for name in columns:
        if name not in CANONICAL:
            raise InputError(f"columns[{name!r}]", f"unknown canonical name; expected one of {CANONICAL}",
                             "map canonical names to your columns, e.g. {'N': 'params'}")
    rename = {}
    for name in CANONICAL:
        if name in columns:
            src = columns[name]
            if src not in df.columns:
                raise InputError(f"column {src!r}", f"mapped to {name} but not in {source}; columns are "
                                 f"{list(df.columns)}", f"fix the mapping for {name}")
            rename[src] = name
        elif name not in df.columns and SWEEP_COLUMNS[name] in df.columns:
            rename[SWEEP_COLUMNS[name]] = name
    df = df.rename(columns=rename)
    notes = []

    excluded = {}
    if "status" in df.columns and keep_status is not None:
        keep = df["status"].isin(keep_status)
        excluded = {str(k): int(v) for k, v in df.loc[~keep, "status"].value_counts(dropna=False).items()}
        df = df[keep]

    for name in require:
        if name not in df.columns:
            raise InputError(f"column {name!r}", f"missing from {source}; columns are {list(df.columns)}",
                             f"add it or map it with columns={{'{name}': '<your column>'}}")
    if "C" not in df.columns and {"N", "D"} <= set(df.columns):
        df["C"] = 6.0 * df["N"].astype(float) * df["D"].astype(float)
        notes.append("C computed as 6 N D (no C column)")

    for name in [c for c in CANONICAL if c in df.columns]:
        values = pd.to_numeric(df[name], errors="coerce")
        bad = values.isna() & df[name].notna()
        if bad.any():
            row = bad.idxmax()
            raise InputError(f"column {name!r}, row {row}", f"non-numeric value {df.loc[row, name]!r}",
                             "clean the table")
        values = values.astype(float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = bad.idxmax()
            raise InputError(f"column {name!r}, row {row}", f"value {values[row]} is not finite",
                             "drop or fix the run (failed runs should have status != complete)")
        bad = values <= 0
        if bad.any():
            row = bad.idxmax()
            raise InputError(f"column {name!r}, row {row}", f"value {values[row]} must be > 0", "fix the run")
        df[name] = values

    if "run_id" in df.columns:
        dup = df["run_id"].duplicated()
        if dup.any():
            row = dup.idxmax()
            raise InputError(f"column 'run_id', row {row}", f"run {df.loc[row, 'run_id']!r} appears twice",
                             "drop the duplicate row")
    elif {"N", "D"} <= set(df.columns):
        key = ["N", "D"] + (["seed"] if "seed" in df.columns else [])
        dup = df.duplicated(subset=key)
        if dup.any():
            row = dup.idxmax()
            raise InputError(f"row {row}", f"duplicate run (same {', '.join(key)} as an earlier row)",
                             "drop the duplicate, or add a 'seed' or 'run_id' column to tell repeats apart")
    if len(df) == 0:
        raise InputError(source, f"no usable rows (excluded by status: {excluded})",
                         "check the status column or pass keep_status=None")
    df.attrs["excluded"] = excluded
    df.attrs["notes"] = notes
    return df


def check_enough(df_or_count, need: int, what: str) -> None:
    """Raise InputError unless there are at least `need` of `what` (e.g. 'points for fit_L_N')."""
    have = df_or_count if isinstance(df_or_count, (int, np.integer)) else len(df_or_count)
    if have < need:
        raise InputError(what, f"need at least {need}, got {have}", "add runs, or choose a fit with fewer parameters")


def _read_parquets(path, name: str) -> list[tuple[Path, pd.DataFrame]]:
    root = Path(path)
    if not root.is_dir():
        raise InputError(str(root), "not a directory", "pass a runs directory (runs/<sweep>/<run_id>/...)")
    files = sorted(root.rglob(name))
    if not files:
        raise InputError(str(root), f"no {name} files under it", "point at a scalinglab runs directory")
    return [(f, _read(f)) for f in files]


def load_runs_dir(path) -> pd.DataFrame:
    """Union of `<path>/**/<run_id>/summary.parquet` rows; columns missing in some runs are kept as NaN."""
    frames = []
    for f, frame in _read_parquets(path, "summary.parquet"):
        if "run_id" not in frame.columns:
            frame = frame.assign(run_id=f.parent.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True, sort=False)


def load_curves(path) -> pd.DataFrame:
    """All `<run_id>/metrics.parquet` files stacked, with `run_id` (the run directory's name) added."""
    frames = [frame.assign(run_id=f.parent.name) for f, frame in _read_parquets(path, "metrics.parquet")]
    return pd.concat(frames, ignore_index=True, sort=False)


ARGUMENT_COLUMNS = {"L": "loss", "budgets": "budget"}
DATA_ARGUMENTS = {"N", "D", "C", "L", "S", "B", "B_crit", "x", "y", "budgets"}


def fit_table(fit_fn: Callable, df: pd.DataFrame, **kw):
    """Call `fit_fn` with the columns of `df` as its array arguments (L <- loss, budgets <- budget, X <- X)."""
    params = list(inspect.signature(fit_fn).parameters.values())
    if params and params[0].name == "curves":
        return fit_fn(df, **kw)
    args = {}
    for p in params:
        if p.name in kw or p.name not in DATA_ARGUMENTS:
            continue
        col = ARGUMENT_COLUMNS.get(p.name, p.name)
        if col in df.columns:
            args[p.name] = df[col].to_numpy()
        elif p.default is inspect.Parameter.empty:
            raise InputError(f"column {col!r}", f"needed by {fit_fn.__name__} but missing; columns are "
                             f"{list(df.columns)}", "add the column or map it in load_table")
    return fit_fn(**args, **kw)
