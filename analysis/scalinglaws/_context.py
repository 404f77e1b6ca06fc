"""What every report section works with.

A section is a plain function `section(ctx: Context, s: Section) -> None` that fills `s` (paragraphs, tables,
figures). It raises InputError when the data cannot support it (the report then says why in its place) and
NotApplicable when it does not apply to this input (the report leaves it out). `Context` carries the input, the
fits made so far (later sections compare them) and the report's settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import plots
from ._format import fmt
from .bootstrap import bootstrap
from .errors import InputError
from .identify import not_identified
from .result import FitResult
from .roles import Roles
from .source import Source
from .table import fit_table


class NotApplicable(Exception):
    """Raised by a section that does not apply to this input (e.g. WSD savings without WSD runs)."""


@dataclass
class Section:
    """One report section: a heading, paragraphs, tables and figures (file names relative to out_dir)."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)


class Progress:
    """A rich progress bar over the report's sections (silent when disabled)."""

    def __init__(self, enabled: bool, total: int):
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), transient=True)
            self.task = self.bar.add_task("report", total=total)

    def __enter__(self):
        if self.bar:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar:
            self.bar.__exit__(*exc)

    def step(self, description: str):
        if self.bar:
            self.bar.update(self.task, description=description)

    def done(self):
        if self.bar:
            self.bar.advance(self.task)


@dataclass
class Context:
    """The input of a report and what its sections have found so far.

    source: what was read; roles: which runs feed which fit (`roles.assign_roles`); isoflop: the runs of the
    Chinchilla approaches, backtest and counting conventions (roles.chinchilla); curves: their training curves.
    fits: every fit made so far by key ("Approach 2", "L(N)", ...), and selections: the rows each was fitted to
    (`fit` and `keep` record both; report.py writes them to fits.json); backtest_mape: the backtest's error on
    the largest budget, once known.
    """

    source: Source
    roles: Roles
    isoflop: pd.DataFrame
    curves: pd.DataFrame | None
    out: Path
    bootstrap_n: int
    seed: int
    level: float
    grid: str
    progress: Progress
    fits: dict[str, FitResult] = field(default_factory=dict)
    selections: dict[str, pd.DataFrame] = field(default_factory=dict)  # key -> the rows that fit was given
    backtest_mape: float | None = None
    law_backtest: object | None = None  # selection.LawBacktest of the law-selection section, once made
    noise: object | None = None  # noise.Noise of the isoFLOP runs (seeds section), once estimated
    fig_format: str = "png"  # figures are written as png, svg or pdf (plots.FORMATS); a section names them .png
    jobs: int = 1  # processes for bootstrap refits (bootstrap.bootstrap n_jobs: the same draws for any number)

    def fit(self, key: str, fit_fn: Callable, df: pd.DataFrame, **kw) -> FitResult:
        """Point fit, then bootstrap intervals when bootstrap_n > 0 (a failed bootstrap keeps the point fit)."""
        self.progress.step(f"fitting {key}")
        result = point = fit_table(fit_fn, df, **kw)
        if self.bootstrap_n > 0:
            self.progress.step(f"bootstrapping {key} (n={self.bootstrap_n})")
            try:
                result = bootstrap(fit_fn, df, n=self.bootstrap_n, level=self.level, seed=self.seed,
                                   n_jobs=self.jobs, **kw)
            except InputError as e:
                result = replace(point, flags=(*point.flags, f"bootstrap failed: {e}"))
        return self.keep(key, result, df)

    def keep(self, key: str, fit: FitResult, df: pd.DataFrame) -> FitResult:
        """Record `fit` as ctx.fits[key], fitted to the rows `df` (its data selection in fits.json)."""
        self.fits[key] = fit
        self.selections[key] = df
        return fit

    def figure(self, section: Section, fig, name: str, caption: str) -> None:
        """Save `fig` as out/name (its suffix replaced by fig_format) and show it in `section` with `caption`."""
        name = Path(name).with_suffix(f".{self.fig_format}").name
        plots.save_figure(fig, self.out / name, format=self.fig_format)
        section.figures.append((name, caption))


def params_table(fit: FitResult, names=None) -> pd.DataFrame:
    """One row per parameter: estimate and its interval at the fit's level ("-" without one)."""
    rows = []
    for n in names or list(fit.params):
        iv = fit.intervals.get(n)
        rows.append({"parameter": n, "estimate": fit.params[n],
                     f"{fit.level:.0%} interval": f"[{fmt(iv[0])}, {fmt(iv[1])}]" if iv else "-"})
    return pd.DataFrame(rows)


NOT_IDENTIFIED_TITLE = "Not identified, and why"


def holds(ctx: Context, s: Section, key: str) -> bool:
    """True when ctx.fits[key] is identified; else a pointer to the not-identified section goes into `s`."""
    fit = ctx.fits.get(key)
    if fit is None:
        return False
    problems = not_identified(fit)
    if problems:
        s.text.append(f"{key}: not identified by these data ({problems[0][0]}); its parameters are not printed "
                      f"as a result (see '{NOT_IDENTIFIED_TITLE}').")
    return not problems


def flags_text(fit: FitResult) -> list[str]:
    return [f"Warning: {f}" for f in fit.flags]


def mape(actual, predicted) -> float:
    """Mean absolute percentage error, 100 mean |predicted / actual - 1|."""
    return float(100 * np.mean(np.abs(np.asarray(predicted) / np.asarray(actual) - 1)))


def power_law_band(fit: FitResult, grid, x_c: str, alpha: str, offset: str = "L_inf"):
    """Percentile band of (x_c/x)^alpha (+ offset) over the fit's bootstrap draws, or None without draws."""
    s = fit.extra.get("samples")
    if s is None or not len(s) or x_c not in s or alpha not in s:
        return None
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # degenerate draws (alpha ~ 0) give inf
        curves = (s[x_c].to_numpy()[:, None] / grid[None, :]) ** s[alpha].to_numpy()[:, None]
    curves[~np.isfinite(curves)] = np.nan
    if offset in s:
        curves = curves + s[offset].to_numpy()[:, None]
    tail = 100 * (1 - fit.level) / 2
    lo, hi = np.nanpercentile(curves, [tail, 100 - tail], axis=0)
    return grid, lo, hi
