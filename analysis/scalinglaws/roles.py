"""Which runs of a table feed which fit, when one runs directory holds several sweeps.

A reproduction directory (docs/DESIGN.md section 4) mixes isoFLOP runs (each with the `budget` its sweep plan gave it),
Kaplan L(N) runs (many N at one D), L(D) runs (one N at many D, e.g. WSD cooldowns) and WSD long runs (`role`
"long": constant LR up to the last branch point, so their final loss is not that of a finished run).
`assign_roles(table)` splits the rows:

- chinchilla: rows with a finite `budget` when the column exists, else every row (Approaches 1-3, backtest).
- L_N: outside `chinchilla` and not WSD cooldowns, the runs at the token budget (`tokens_budget`, else D) shared
  by the most distinct N (at least 3; early stopping may end a run before its budget), else None.
- L_D: outside `chinchilla`, the runs of the N with the most distinct D (at least 3; ties: the largest N), else None.
  Both keep the best loss where one N (or D) appears twice.
- all: every row except WSD long runs (Kaplan's L(N, D), eq 1.5).

Runs of a batch-size sweep (plan role `batch_size`, or one shape at 3 or more batch sizes:
`critical_batch.batch_size_sweeps`) measure the critical batch size and are in `all`, but not in L_N or L_D: at a fixed D their loss depends on the batch size.

Runs of LR-tuning sweeps (`role` "tune") feed no law: most of them are trained at a deliberately wrong LR; nor do
runs of an ablation sweep (`role` "ablation": the same plan under another setting, compared in its own section),
nor runs that held a data source out of training (`role` "transfer": another training distribution), which only
the generalization section reads (`transfer`).

None means "no dedicated runs": the report then uses the lower envelope of `all` (best loss at each N or D).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .critical_batch import batch_size_sweeps

MIN_POINTS = 3
NO_LAW_ROLES = ("long", "tune", "ablation", "transfer")  # plan roles whose runs feed no law


@dataclass
class Roles:
    chinchilla: pd.DataFrame
    L_N: pd.DataFrame | None
    L_D: pd.DataFrame | None
    all: pd.DataFrame
    long_runs: int  # WSD long runs left out of every fit
    transfer: pd.DataFrame  # runs of role "transfer" (a data source held out of training)


def _largest_group(df: pd.DataFrame, by: str, distinct: str) -> pd.DataFrame | None:
    """Rows of the `by` value with the most distinct `distinct` values (>= MIN_POINTS), best loss per value."""
    if df.empty:
        return None
    counts = df.groupby(by)[distinct].nunique()
    counts = counts[counts >= MIN_POINTS]
    if counts.empty:
        return None
    best = counts[counts == counts.max()].index.max()  # ties: the largest N (or D)
    group = df[df[by] == best]
    return group.loc[group.groupby(distinct)["loss"].idxmin()].sort_values(distinct)


def in_batch_size_sweep(df: pd.DataFrame) -> pd.Series:
    """Rows of a batch-size sweep: plan role `batch_size`, or one shape at 3 or more batch sizes."""
    planned = df["role"].eq("batch_size") if "role" in df else pd.Series(False, index=df.index)
    if df.empty or not {"batch_size", "n_ctx"} <= set(df.columns):
        return planned
    return planned | batch_size_sweeps(df if "n_params" in df else df.assign(n_params=df["N"])).notna()


def assign_roles(table: pd.DataFrame) -> Roles:
    """Split a validated table (canonical N, D, C, loss) into the runs each family of fits uses."""
    long = table["role"].isin(NO_LAW_ROLES) if "role" in table else pd.Series(False, index=table.index)
    usable = table[~long]
    if "budget" in usable and usable["budget"].notna().any():
        isoflop = usable["budget"].notna()
        chinchilla, rest = usable[isoflop], usable[~isoflop]
    else:
        chinchilla, rest = usable, usable.iloc[0:0]
    rest = rest[~in_batch_size_sweep(rest)]
    cooldown = rest["role"].eq("cooldown") if "role" in rest else pd.Series(False, index=rest.index)
    budget = "tokens_budget" if "tokens_budget" in rest and rest["tokens_budget"].notna().all() else "D"
    return Roles(chinchilla=chinchilla, L_N=_largest_group(rest[~cooldown], budget, "N"),
                 L_D=_largest_group(rest, "N", "D"), all=usable,
                 long_runs=int(table["role"].eq("long").sum()) if "role" in table else 0,
                 transfer=table[table["role"].eq("transfer")] if "role" in table else table.iloc[0:0])
