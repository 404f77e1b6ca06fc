"""Read and validate the table every fit works on: one row per run, canonical columns N, D, C, loss.

`read_table` validates a table; `load_runs_dir` and `load_curves` read a scalinglab runs directory without
importing scalinglab; `fit_table` calls a fit with a table's columns; `check_enough`, `count_budgets` and
`describe_excluded` are the small checks the fits and the command line share.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import InputError

CANONICAL = ("N", "D", "C", "loss")
REPETITION_COLUMNS = ("unique_tokens", "epochs")  # runs at one (N, D) that differ here are different configs
SWEEP_COLUMNS = {"N": "n_params", "D": "tokens", "C": "flops_6nd", "loss": "loss"}
# The newest run-summary schema this reader understands (scalinglab.store.SCHEMA_VERSION; a test keeps them equal).
SCHEMA_VERSION = 1
TABLE_FIX = "write the table again in full (a parquet file cut short has no footer; a csv needs a header row)"


def _read(path: Path, fix: str = TABLE_FIX) -> pd.DataFrame:
    if not path.exists():
        raise InputError(str(path), "file not found", "pass the path of a .csv or .parquet table, or a runs directory")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".txt"):
            return pd.read_csv(path)
    except Exception as e:  # pyarrow / pandas raise many kinds
        raise InputError(str(path), f"cannot be read ({type(e).__name__}: {e})", fix) from None
    raise InputError(str(path), f"unknown file type {path.suffix!r}", "use .csv or .parquet")


def _row(df: pd.DataFrame, row) -> str:
    """'row 3' or, when the table has run ids, "row 3 (run_id 'b0s03')"."""
    if "run_id" in df.columns:
        return f"row {row} (run_id {df.loc[row, 'run_id']!r})"
    return f"row {row}"


def config_columns(table: pd.DataFrame) -> list[str]:
    """The columns that define a run's config, of those present: N, D, and how often its data repeat
    (REPETITION_COLUMNS).

    Rows equal in all of them are seeds of one config (noise.seed_groups); rows that differ only in
    `unique_tokens` or `epochs` are different configs (Muennighoff et al. 2023's repeated-data runs).
    """
    return [c for c in ("N", "D", *REPETITION_COLUMNS) if c in table.columns]


def read_table(path_or_df, columns: dict | None = None, keep_status=("complete",),
               require=("N", "D", "loss")) -> pd.DataFrame:
    """A validated runs table with canonical columns N, D, C and loss; all other columns are kept.

    N is parameters, D training tokens, C training FLOPs, loss nats/token. A scalinglab sweep table is recognised
    without a mapping (N <- n_params, D <- tokens, C <- flops_6nd); without a C column, C = 6 N D (Hoffmann et al.
    2022's convention) and attrs["notes"] says so.

    Parameters
    ----------
    path_or_df : str, Path or DataFrame
        A .csv/.parquet file, or a DataFrame (copied).
    columns : dict, optional
        Canonical name -> column of the table, e.g. {"N": "params", "loss": "val_loss"}.
    keep_status : tuple of str
        Rows whose `status` column is not one of these are dropped (attrs["excluded"] = {status: count}).
    require : tuple of str
        Canonical columns that must be present.

    Returns
    -------
    DataFrame
        The validated copy. InputError (naming the column and row) for a missing column, NaN/inf, a non-numeric
        or non-positive N/D/C/loss, a duplicate run (same run_id twice; without run_id, the same config
        (config_columns) twice unless a `seed` column tells them apart), or no usable row.
    """
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
    original_columns = list(df.columns)
    df = df.rename(columns=rename)
    notes = []

    excluded = {}
    if "status" in df.columns and keep_status is not None:
        keep = df["status"].isin(keep_status)
        excluded = {str(k): int(v) for k, v in df.loc[~keep, "status"].value_counts(dropna=False).items()}
        df = df[keep]

    for name in require:
        if name not in df.columns:
            raise InputError(f"column {name!r}", f"missing from {source}; columns are {original_columns}",
                             f"add a {name} column, or map one of yours to it: --col {name}=<your column> "
                             f"(columns={{'{name}': '<your column>'}} in Python)")
    for name in [c for c in CANONICAL if c in df.columns]:
        values = pd.to_numeric(df[name], errors="coerce")
        bad = values.isna() & df[name].notna()
        if bad.any():
            row = bad.idxmax()
            raise InputError(f"column {name!r}, {_row(df, row)}", f"non-numeric value {df.loc[row, name]!r}",
                             f"put a number in {name} for that run, or drop the row")
        values = values.astype(float)
        bad = ~np.isfinite(values)
        if bad.any():
            row = bad.idxmax()
            raise InputError(f"column {name!r}, {_row(df, row)}", f"value {values[row]} is not finite",
                             "fix or drop that run; a run that failed or diverged should have status failed or "
                             "diverged, which fits skip")
        bad = values <= 0
        if bad.any():
            row = bad.idxmax()
            raise InputError(f"column {name!r}, {_row(df, row)}", f"value {values[row]} must be > 0",
                             f"fix {name} of that run (a count or loss is positive), or drop the row")
        df[name] = values
    if "C" not in df.columns and {"N", "D"} <= set(df.columns):  # from the checked N and D
        df["C"] = 6.0 * df["N"] * df["D"]
        notes.append("C computed as 6 N D (no C column)")

    if "run_id" in df.columns:
        dup = df["run_id"].duplicated()
        if dup.any():
            row = dup.idxmax()
            first = df.index[df["run_id"] == df.loc[row, "run_id"]][0]
            raise InputError(f"column 'run_id', row {row}", f"run {df.loc[row, 'run_id']!r} appears twice "
                             f"(also row {first})", "drop the duplicate row (or merge the tables without repeats)")
    elif {"N", "D"} <= set(df.columns):
        key = config_columns(df) + (["seed"] if "seed" in df.columns else [])
        dup = df.duplicated(subset=key)
        if dup.any():
            row = dup.idxmax()
            raise InputError(f"row {row}", f"duplicate run (same {', '.join(key)} as an earlier row)",
                             "drop the duplicate, or add a 'seed' or 'run_id' column to tell repeats apart")
    if len(df) == 0 and not excluded:
        raise InputError(source, "no usable rows: the table is empty", "pass a table with one row per run "
                         "(run the sweep first, or check the file)")
    if len(df) == 0:
        raise InputError(source, f"no usable rows: every run was excluded by its status ({describe_excluded(excluded)})",
                         "only runs with status complete are fitted: finish or rerun the runs "
                         "(rerun_failed=true), or fix the status column")
    df.attrs["excluded"] = excluded
    df.attrs["notes"] = notes
    return df


def describe_excluded(excluded: dict) -> str:
    """{'diverged': 2, 'failed': 1} -> '3 runs: 2 diverged, 1 failed' ('' when nothing was excluded)."""
    total = sum(excluded.values())
    if not total:
        return ""
    return f"{total} run{'s' if total != 1 else ''}: " + ", ".join(f"{n} {status}" for status, n in excluded.items())


def count_budgets(df: pd.DataFrame, tolerance_decades: float = 0.05) -> int:
    """Distinct compute budgets: the `budget` column when every row has one, else C values grouped when within
    `tolerance_decades` of each other (runs of one isoFLOP budget differ by whole-batch rounding only)."""
    if "budget" in df.columns and len(df) and pd.to_numeric(df["budget"], errors="coerce").notna().all():
        return int(pd.to_numeric(df["budget"]).nunique())
    if "C" not in df.columns or not len(df):
        return 0
    log_c = np.sort(np.log10(df["C"].to_numpy(dtype=float)))
    return int(1 + (np.diff(log_c) > tolerance_decades).sum())


def check_enough(df_or_count, need: int, what: str) -> None:
    """Raise InputError unless there are at least `need` of `what` (e.g. 'points for fit_L_N')."""
    have = df_or_count if isinstance(df_or_count, (int, np.integer)) else len(df_or_count)
    if have < need:
        raise InputError(what, f"need at least {need}, got {have}", "add runs, or choose a fit with fewer parameters")


DAMAGED_FIX = ("relaunch the sweep: the damaged file is moved aside and only that run is trained again (or delete "
               "{folder} and run that run again)")


def _read_parquets(path, name: str, damaged: list | None = None) -> list[tuple[Path, pd.DataFrame]]:
    """Every `<path>/**/<name>` read as a frame. Files that do not read back are all found in one pass: with
    `damaged` (a list) each one's InputError is appended there and the file left out; without, one InputError names
    every one of them."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(str(root), "not a directory", "pass a runs directory (runs/<sweep>/<run_id>/...)")
    files = sorted(root.rglob(name))
    if not files:
        raise InputError(str(root), f"no {name} files under it", "point at a scalinglab runs directory")
    out, bad = [], []
    for f in files:
        try:
            out.append((f, _read(f, DAMAGED_FIX.format(folder=f.parent))))
        except InputError as error:
            bad.append(error)
    if damaged is not None:
        damaged.extend(bad)
    elif bad:
        raise damaged_error(bad, root)
    return out


def damaged_error(errors: list[InputError], root) -> InputError:
    """One InputError for the run files that do not read back: the file's own error, or one naming them all."""
    if len(errors) == 1:
        return errors[0]
    return InputError(f"{len(errors)} run files under {root}", "cannot be read (damaged or cut short): " +
                      ", ".join(e.field for e in errors), DAMAGED_FIX.format(folder="each run's folder"))


def load_runs_dir(path, damaged: list | None = None) -> pd.DataFrame:
    """The sweep table of a scalinglab runs directory: one row per `<path>/**/<run_id>/summary.parquet`.

    Parameters
    ----------
    path : str or Path
        A runs directory.
    damaged : list, optional
        Collects the InputError of each summary that does not read back (that run is left out); without it, one
        InputError names every such file.

    Returns
    -------
    DataFrame
        The union of the summaries; columns only some runs have are NaN elsewhere. InputError for damaged
        files, or a summary with a newer schema_version than SCHEMA_VERSION.
    """
    frames = []
    for f, frame in _read_parquets(path, "summary.parquet", damaged):
        if "schema_version" in frame.columns:
            versions = pd.to_numeric(frame["schema_version"], errors="coerce")
            if (versions > SCHEMA_VERSION).any():
                raise InputError(str(f), f"has schema_version {versions.max():g}; this reader "
                                 f"understands up to {SCHEMA_VERSION}", "upgrade scalinglab (it ships scalinglaws) "
                                 "to read it, or fit a table exported by the newer version")
        if "run_id" not in frame.columns:
            frame = frame.assign(run_id=f.parent.name)
        frames.append(frame)
    if not frames:
        raise InputError(str(path), "no summary.parquet under it reads back", DAMAGED_FIX.format(folder="each run"))
    return pd.concat(frames, ignore_index=True, sort=False)


def load_curves(path, damaged: list | None = None) -> pd.DataFrame:
    """Every eval point of every run of a runs directory: the `<run_id>/metrics.parquet` files stacked.

    Parameters
    ----------
    path : str or Path
        A runs directory.
    damaged : list, optional
        As for `load_runs_dir`: collects the errors of metrics files that do not read back.

    Returns
    -------
    DataFrame
        The metrics rows with a `run_id` column (the run directory's name).
    """
    frames = [frame.assign(run_id=f.parent.name) for f, frame in _read_parquets(path, "metrics.parquet", damaged)]
    if not frames:
        return pd.DataFrame(columns=["run_id"])
    return pd.concat(frames, ignore_index=True, sort=False)


ARGUMENT_COLUMNS = {"L": "loss", "budgets": "budget"}
DATA_ARGUMENTS = {"N", "D", "C", "L", "S", "B", "B_crit", "x", "y", "budgets"}


def fit_table(fit_fn: Callable, df: pd.DataFrame, **kw):
    """Call `fit_fn` with the columns of `df` as its array arguments.

    Data arguments only, by name: L <- column loss, budgets <- column budget (when present), and N, D, C, S, B,
    B_crit, x, y <- the column of that name; a fit whose first argument is `curves` gets the whole frame.
    Bootstrap, backtest and the report call fits this way.

    Parameters
    ----------
    fit_fn : callable
        A fit, e.g. `fit_approach3`.
    df : DataFrame
        The table.
    **kw
        Other arguments of the fit (an argument given here is not taken from the table).

    Returns
    -------
    FitResult
        What `fit_fn` returns. InputError when a required column is missing.
    """
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
                             f"{list(df.columns)}", "add the column or map it in read_table")
    return fit_fn(**args, **kw)
