"""A markdown + HTML report of a sweep: every fit the data supports, a backtest, figures, comparison with the papers.

`build_report(source, out_dir, ...)` takes a table (.csv/.parquet path or DataFrame) or a scalinglab runs
directory, and writes report.md, report.html (self-contained, figures referenced by relative path) and PNG
figures into out_dir, each file atomically. A fit the data cannot support gets a section saying why.
"""
from __future__ import annotations

import html
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import chinchilla, kaplan, plots
from .errors import InputError
from .result import FitResult
from .roles import assign_roles
from .table import fit_table, load_curves, load_runs_dir, load_table

# Published exponents (design notes section 3; Hoffmann et al. 2022 Table 2 for Approach 3's a = 0.46).
PUBLISHED_EXPONENTS = [
    ("Kaplan L(N): alpha_N", "L(N)", "alpha_N", 0.076, "Kaplan 2020 eq 1.1"),
    ("Kaplan L(D): alpha_D", "L(D)", "alpha_D", 0.095, "Kaplan 2020 eq 1.2"),
    ("Kaplan L(C_min): alpha_C", "L(C)", "alpha_C", 0.050, "Kaplan 2020 eq 1.3"),
    ("Kaplan eq 1.5: alpha_N", "L(N, D)", "alpha_N", 0.076, "Kaplan 2020 Table 2"),
    ("Kaplan eq 1.5: alpha_D", "L(N, D)", "alpha_D", 0.103, "Kaplan 2020 Table 2"),
    ("N_opt ~ C^a, Kaplan", None, None, 0.73, "Kaplan 2020 sec 6.1"),
    ("N_opt ~ C^a, Approach 1", "Approach 1", "a", 0.50, "Hoffmann 2022 Table 2"),
    ("N_opt ~ C^a, Approach 2", "Approach 2", "a", 0.49, "Hoffmann 2022 Table 2"),
    ("N_opt ~ C^a, Approach 3", "Approach 3", "a", 0.46, "Hoffmann 2022 Table 2"),
    ("Approach 3: alpha", "Approach 3", "alpha", 0.34, "Hoffmann 2022 sec 3.3"),
    ("Approach 3: beta", "Approach 3", "beta", 0.28, "Hoffmann 2022 sec 3.3"),
]
BACKTEST_FRACTION = 8  # fit on budgets <= C_max / 8, predict the rest
APPROACH2_WINDOW = 5  # each isoFLOP parabola is fitted to the 5 sizes around its budget's lowest loss


@dataclass
class Section:
    """One report section: a heading, paragraphs, tables and figures (file names relative to out_dir)."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)


# ---------------------------------------------------------------- loading


NOT_FITTED_COLUMNS = ("run_id", "sweep", "n_params", "tokens", "status", "error")
WSD_COLUMNS = ("run_id", "role", "n_params", "tokens", "branch_step", "batch_size", "n_ctx", "wall_time", "elapsed")


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


def load_source(source, columns=None):
    """(table, curves or None, where) from a table path / DataFrame / runs directory.

    For a runs directory each run also gets its sweep plan's `budget` and `role`, and `table.attrs["not_fitted"]`
    lists the runs whose status is not complete (diverged, failed, running), so a report can show them.
    """
    if isinstance(source, pd.DataFrame):
        return load_table(source, columns=columns), None, "table"
    path = Path(source)
    if path.is_dir():
        raw = load_runs_dir(path)
        plan = _plan_columns(path)
        if plan is not None and "run_id" in raw:
            raw = raw.merge(plan[[c for c in plan if c == "run_id" or c not in raw]], on="run_id", how="left")
        table = load_table(raw, columns=columns)
        if "role" in raw:
            wsd = raw[raw["role"].isin(["long", "cooldown"]) & raw.get("status", "complete").eq("complete")]
            table.attrs["wsd_runs"] = wsd[[c for c in WSD_COLUMNS if c in wsd]].to_dict("records")
        if "status" in raw:
            bad = raw[raw["status"] != "complete"]
            table.attrs["not_fitted"] = bad[[c for c in NOT_FITTED_COLUMNS if c in bad]].to_dict("records")
        curves = None
        if any(path.rglob("metrics.parquet")):
            curves = load_curves(path)
        return table, curves, str(path)
    return load_table(path, columns=columns), None, str(path)


# ---------------------------------------------------------------- helpers


def _fmt(x) -> str:
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return "n/a"
        return f"{x:.4g}" if 1e-3 <= abs(x) < 1e5 or x == 0 else f"{x:.3e}"
    return str(x)


def _params_table(fit: FitResult, names=None) -> pd.DataFrame:
    names = names or list(fit.params)
    rows = []
    for n in names:
        iv = fit.intervals.get(n)
        rows.append({"parameter": n, "estimate": fit.params[n],
                     f"{fit.level:.0%} interval": f"[{_fmt(iv[0])}, {_fmt(iv[1])}]" if iv else "-"})
    return pd.DataFrame(rows)


def _flags_text(fit: FitResult) -> list[str]:
    return [f"Warning: {f}" for f in fit.flags]


def _mape(actual, predicted) -> float:
    return float(100 * np.mean(np.abs(np.asarray(predicted) / np.asarray(actual) - 1)))


def _samples(fit: FitResult) -> pd.DataFrame | None:
    s = fit.extra.get("samples") if isinstance(fit.extra, dict) or hasattr(fit.extra, "get") else None
    if s is None:
        return None
    s = pd.DataFrame(s)
    return s if len(s) else None


def _power_law_band(fit: FitResult, grid, x_c: str, alpha: str, offset: str = "L_inf"):
    """Percentile band of (x_c/x)^alpha (+ offset) over the fit's bootstrap draws, or None without draws."""
    s = _samples(fit)
    if s is None or x_c not in s or alpha not in s:
        return None
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # degenerate draws (alpha ~ 0) give inf
        curves = (s[x_c].to_numpy()[:, None] / grid[None, :]) ** s[alpha].to_numpy()[:, None]
    curves[~np.isfinite(curves)] = np.nan
    if offset in s:
        curves = curves + s[offset].to_numpy()[:, None]
    tail = 100 * (1 - fit.level) / 2
    lo, hi = np.nanpercentile(curves, [tail, 100 - tail], axis=0)
    return grid, lo, hi


class _Progress:
    """A rich progress bar over the report's steps (silent when disabled)."""

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


# ---------------------------------------------------------------- the fits


class _Report:
    def __init__(self, table, curves, out_dir: Path, bootstrap_n, seed, level, grid, progress):
        self.all, self.curves, self.out = table, curves, out_dir
        self.roles = assign_roles(table)
        self.table = self.roles.chinchilla  # Chinchilla approaches, backtest, conventions
        if curves is not None and "run_id" in self.table:
            self.curves = curves[curves["run_id"].isin(self.table["run_id"])]
        self.n, self.seed, self.level, self.grid = bootstrap_n, seed, level, grid
        self.progress = progress
        self.fits: dict[str, FitResult] = {}
        self.backtest_mape: float | None = None
        self.sections: list[Section] = []

    def figure(self, section: Section, fig, name: str, caption: str):
        plots.save_figure(fig, self.out / name)
        section.figures.append((name, caption))

    def fit(self, key: str, fit_fn: Callable, df: pd.DataFrame, **kw) -> FitResult:
        """Point fit, then bootstrap intervals when bootstrap_n > 0 (a failed bootstrap keeps the point fit)."""
        self.progress.step(f"fitting {key}")
        point = fit_table(fit_fn, df, **kw)
        result = point
        if self.n > 0:
            self.progress.step(f"bootstrapping {key} (n={self.n})")
            from .bootstrap import bootstrap

            try:
                result = bootstrap(fit_fn, df, n=self.n, level=self.level, seed=self.seed, **kw)
            except InputError as e:
                result = replace(point, flags=(*point.flags, f"bootstrap failed: {e}"))
        self.fits[key] = result
        self.progress.done()
        return result

    def guarded(self, title: str, build: Callable[[Section], None]) -> Section:
        """Run one section; an InputError (the data cannot support it) becomes the section's explanation."""
        section = Section(title)
        try:
            build(section)
        except InputError as e:
            section.text = [f"Not fitted: {e}"]
            section.tables, section.figures = [], []
            self.progress.done()
        self.sections.append(section)
        return section

    # -- sections

    def data_section(self, where: str, notes):
        s = Section("Data")
        df, roles = self.all, self.roles
        s.text.append(f"Source: `{Path(where).name if where != 'table' else 'DataFrame'}`. "
                      f"{len(df)} complete runs are fitted; N from {_fmt(df['N'].min())} to {_fmt(df['N'].max())} "
                      f"parameters, D from {_fmt(df['D'].min())} to {_fmt(df['D'].max())} tokens, C from "
                      f"{_fmt(df['C'].min())} to {_fmt(df['C'].max())} FLOPs.")
        if len(roles.chinchilla) < len(df) or roles.long_runs:
            uses = [f"{len(roles.chinchilla)} isoFLOP runs (runs with a budget) feed Chinchilla Approaches 1-3, "
                    "the backtest and the counting conventions"]
            if roles.L_N is not None:
                uses.append(f"{len(roles.L_N)} runs at D = {_fmt(roles.L_N['D'].max())} feed Kaplan L(N)")
            if roles.L_D is not None:
                uses.append(f"{len(roles.L_D)} runs of N = {_fmt(roles.L_D['N'].iloc[0])} feed Kaplan L(D)")
            uses.append(f"all {len(roles.all)} feed L(N, D)")
            if roles.long_runs:
                uses.append(f"{roles.long_runs} WSD long runs (constant LR, stopped at the last branch point) feed "
                            "no fit")
            s.text.append("Runs by use: " + "; ".join(uses) + ".")
        excluded = df.attrs.get("excluded", {})
        if excluded:
            s.tables.append(("Runs excluded from every fit (status is not complete)",
                             pd.DataFrame({"status": list(excluded), "runs": list(excluded.values())})))
            s.text.append(f"Excluded runs: {sum(excluded.values())} "
                          f"({', '.join(f'{v} {k}' for k, v in excluded.items())}).")
            if df.attrs.get("not_fitted"):
                s.tables.append(("Runs not fitted: DIVERGED and FAILED runs are never read as results",
                                 pd.DataFrame(df.attrs["not_fitted"]).assign(
                                     status=lambda t: t["status"].astype(str).str.upper())))
        else:
            s.text.append("Excluded runs: 0 (no diverged or failed runs).")
        for note in notes:
            s.text.append(f"Note: {note}.")
        if self.curves is not None:
            s.text.append(f"Training curves: {self.curves['run_id'].nunique()} runs, {len(self.curves)} eval points.")
        self.sections.append(s)

    def approach1(self, s: Section):
        if self.curves is None:
            raise InputError("curves", "no training curves (metrics.parquet) in the input",
                             "pass a runs directory to fit Approach 1")
        sizes = self.table.set_index("run_id")["N"] if "run_id" in self.table else None
        if sizes is None:
            raise InputError("run_id", "the table has no run_id to join curves to sizes", "add run_id")
        curves = self.curves.merge(sizes.rename("N"), left_on="run_id", right_index=True, how="inner")
        x = "flops_6nd" if "flops_6nd" in curves else "tokens"
        self.figure(s, plots.training_curves(curves, x=x), "training_curves.png",
                    "Validation loss along training, coloured by model size (log scale).")
        fit = self.fit("Approach 1", chinchilla.fit_approach1, curves)
        s.text.append(f"Envelope of {curves['run_id'].nunique()} training curves: N_opt ~ C^{fit.params['a']:.3f}, "
                      f"D_opt ~ C^{fit.params['b']:.3f}.")
        s.text += _flags_text(fit)
        s.tables.append(("Parameters", _params_table(fit, ["a", "b", "k_N", "k_D"])))

    def approach2(self, s: Section):
        fit = self.fit("Approach 2", chinchilla.fit_approach2, self.table, window=APPROACH2_WINDOW)
        s.text.append(f"IsoFLOP parabolas: N_opt ~ C^{fit.params['a']:.3f}, D_opt ~ C^{fit.params['b']:.3f} "
                      f"over {len(fit.extra['minima'])} budgets.")
        s.text.append(f"Each parabola (in log N) is fitted to the {APPROACH2_WINDOW} sizes nearest its budget's "
                      "lowest loss: over a wider ladder the profile is not a parabola and far sizes pull the vertex.")
        try:
            every = fit_table(chinchilla.fit_approach2, self.table)
            s.text.append(f"With every size in each parabola: a = {every.params['a']:.3f} over "
                          f"{len(every.extra['minima'])} budgets ({len(every.extra['refused'])} refused).")
        except InputError as e:
            s.text.append(f"With every size in each parabola: not fitted ({e}).")
        refused = fit.extra.get("refused", {})
        if refused:
            s.tables.append(("Budgets refused", pd.DataFrame({"budget (FLOPs)": list(refused),
                                                              "reason": list(refused.values())})))
        s.text += _flags_text(fit)
        s.tables.append(("Parameters", _params_table(fit, ["a", "b", "k_N", "k_D"])))
        s.tables.append(("Minimum of each budget", fit.extra["minima"]))
        self.figure(s, plots.isoflop_curves(fit), "isoflop.png",
                    "Loss vs N per budget; stars mark parabola minima; refused budgets grey and dashed.")

    def approach3(self, s: Section):
        df = self.table
        fit = self.fit("Approach 3", chinchilla.fit_approach3, df, grid=self.grid)
        s.text.append(f"L(N, D) = E + A/N^alpha + B/D^beta fitted with the Huber loss (delta 1e-3) from the "
                      f"'{self.grid}' grid of starts; frontier exponent a = beta/(alpha+beta) = {fit.params['a']:.3f}.")
        s.text += _flags_text(fit)
        s.tables.append(("Parameters", _params_table(fit)))
        predicted = fit.predict(df["N"].to_numpy(), df["D"].to_numpy())
        s.text.append(f"In-sample MAPE {_mape(df['loss'], predicted):.2f}%.")
        self.figure(s, plots.residuals(df["loss"], predicted), "residuals_approach3.png",
                    "Approach 3 predicted vs actual loss (in sample).")

    def frontier_section(self, s: Section):
        fits = {k: self.fits[k] for k in ("Approach 1", "Approach 2", "Approach 3") if k in self.fits}
        if not fits:
            raise InputError("frontier", "no Chinchilla approach could be fitted", "see the sections above")
        s.text.append("Fitted N_opt(C) lines; Kaplan's N ~ C^0.73 and Chinchilla's N ~ C^0.50 are drawn for their "
                      "slopes only, through the middle of the first fitted line.")
        self.figure(s, plots.frontier(fits, C_range=self.table["C"]), "frontier.png",
                    "Compute-optimal N_opt(C).")

    def kaplan(self, s: Section):
        df, iso, roles = self.roles.all, self.table, self.roles
        envelopes = {
            "N": roles.L_N if roles.L_N is not None else df.loc[df.groupby("N")["loss"].idxmin()],
            "D": roles.L_D if roles.L_D is not None else df.loc[df.groupby("D")["loss"].idxmin()],
            "C": (iso.loc[iso.groupby("budget")["loss"].idxmin()] if "budget" in iso
                  else iso.loc[iso.groupby("C")["loss"].idxmin()]),
        }
        how = {"N": (f"L(N): the {len(roles.L_N)} runs at one D = {_fmt(roles.L_N['D'].max())} tokens"
                     if roles.L_N is not None else "L(N): the best loss at each N over all runs"),
               "D": (f"L(D): the {len(roles.L_D)} runs of one model, N = {_fmt(roles.L_D['N'].iloc[0])}"
                     if roles.L_D is not None else "L(D): the best loss at each D over all runs")}
        s.text.append(f"{how['N']}; {how['D']}; L(C): the best loss at each isoFLOP budget (Kaplan's compute-"
                      f"efficient frontier); L(N, D) (eq 1.5): all {len(df)} runs.")
        specs = [("L(N)", kaplan.fit_L_N, "N", "N_c", "alpha_N"), ("L(D)", kaplan.fit_L_D, "D", "D_c", "alpha_D"),
                 ("L(C)", kaplan.fit_L_C, "C", "C_c", "alpha_C")]
        rows = []
        for key, fn, x, x_c, alpha in specs:
            env = envelopes[x]
            try:
                fit = self.fit(key, fn, env)
            except InputError as e:
                s.text.append(f"{key} not fitted: {e}")
                self.progress.done()
                continue
            grid = plots._grid(env[x])
            band = _power_law_band(fit, grid, x_c, alpha)
            self.figure(s, plots.loss_vs(iso if x == "C" else df, x, {key: fit}, {key: band} if band else None,
                                         title=f"Kaplan {key}: loss vs {plots.LABELS[x]}", fitted=env),
                        f"loss_vs_{x}.png", f"{key} fitted to the {len(env)} highlighted runs.")
            iv = fit.intervals.get(alpha)
            rows.append({"law": key, "scale": f"{x_c} = {_fmt(fit.params[x_c])}",
                         "exponent": f"{alpha} = {fit.params[alpha]:.4f}",
                         f"{self.level:.0%} interval": f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "-",
                         "flags": "; ".join(fit.flags) or "-"})
        try:
            fit = self.fit("L(N, D)", kaplan.fit_L_ND, df)
            rows.append({"law": "L(N, D) eq 1.5",
                         "scale": f"N_c = {_fmt(fit.params['N_c'])}, D_c = {_fmt(fit.params['D_c'])}",
                         "exponent": f"alpha_N = {fit.params['alpha_N']:.4f}, alpha_D = {fit.params['alpha_D']:.4f}",
                         f"{self.level:.0%} interval": "; ".join(f"{k} [{lo:.4g}, {hi:.4g}]" for k, (lo, hi)
                                                                   in fit.intervals.items()) or "-",
                         "flags": "; ".join(fit.flags) or "-"})
        except InputError as e:
            s.text.append(f"L(N, D) not fitted: {e}")
            self.progress.done()
        if not rows:
            raise InputError("Kaplan fits", "none could be fitted", "see the messages above")
        s.tables.append(("Kaplan fits", pd.DataFrame(rows)))

    def backtest_section(self, s: Section):
        from .backtest import backtest

        df = self.table
        cutoff = df["C"].max() / BACKTEST_FRACTION
        self.progress.step("backtest (Approach 3 on small budgets)")
        bt = backtest(chinchilla.fit_approach3, df, cutoff_C=cutoff, grid=self.grid)
        self.progress.done()
        runs = bt.table
        if "run_id" in df:
            runs = runs.assign(run_id=df.loc[runs.index, "run_id"])[["run_id", *runs.columns]]
        groups = chinchilla.budget_groups(df["C"].to_numpy())
        largest = pd.Series(groups == groups.max(), index=df.index)  # the largest budget's runs
        self.backtest_mape = _mape(runs.loc[runs.index.isin(df.index[largest]), "loss"],
                                   runs.loc[runs.index.isin(df.index[largest]), "predicted"])
        s.text.append(f"Approach 3 fitted on the {int((df['C'] <= cutoff).sum())} runs with C <= C_max/"
                      f"{BACKTEST_FRACTION} = {_fmt(cutoff)} FLOPs, then used to predict the "
                      f"{int((df['C'] > cutoff).sum())} larger runs: MAPE {bt.mape:.2f}% on the held-out runs.")
        s.text.append(f"On the largest budget alone ({int(largest.sum())} runs, C ~ {_fmt(df['C'].max())}): MAPE "
                      f"{self.backtest_mape:.2f}%.")
        s.tables.append(("Per-run errors on held-out runs", runs))
        self.figure(s, plots.residuals(runs["loss"], runs["predicted"], title="Backtest: held-out runs"),
                    "backtest.png", "Predicted vs actual loss of the held-out (largest-compute) runs.")

    def comparison_section(self):
        s = Section("Fitted vs published exponents")
        rows = []
        for label, key, param, published, source in PUBLISHED_EXPONENTS:
            fit = self.fits.get(key) if key else None
            value = fit.params.get(param) if fit is not None else None
            iv = fit.intervals.get(param) if fit is not None else None
            rows.append({"quantity": label, "published": published, "source": source,
                         "fitted": _fmt(float(value)) if value is not None else "not fitted",
                         f"{self.level:.0%} interval": f"[{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "-"})
        s.tables.append(("Exponents", pd.DataFrame(rows)))
        s.text.append("Kaplan's 0.73 has no fitted counterpart here: it came from L(N, S_min) with early stopping, "
                      "and is compared with the Chinchilla frontier exponents above.")
        self.sections.append(s)

    def wsd_section(self, s: Section):
        """Cost of the WSD runs vs training each cooldown's D from scratch (Hagele et al. 2024)."""
        df = self.roles.all
        raw = pd.DataFrame(self.all.attrs.get("wsd_runs") or [])
        if raw.empty or not raw["role"].eq("cooldown").any():
            raise InputError("role", "no WSD cooldown runs in the input", "run a wsd_budgets sweep")
        rows = []
        for n, g in raw.groupby("n_params"):
            long, cool = g[g["role"] == "long"], g[g["role"] == "cooldown"]
            if long.empty or cool.empty:
                continue
            trained = float(long["tokens"].sum() + (cool["tokens"] - cool["branch_step"] * cool["batch_size"]
                                                    * cool["n_ctx"]).sum())
            scratch = float(cool["tokens"].sum())
            rate = float(long["tokens"].sum() / long["wall_time"].sum())  # training tokens/s of the long run
            overhead = float((long["elapsed"] - long["wall_time"]).mean())  # start-up, data, evals per process
            wall = float(g["elapsed"].sum())  # every process of the long run and its cooldowns, start to end
            estimate = scratch / rate + len(cool) * overhead
            rows.append({"N": int(n), "budgets D": len(cool), "tokens trained": int(trained),
                         "tokens from scratch": int(scratch), "tokens saved": f"{1 - trained / scratch:.0%}",
                         "wall time (s)": round(wall, 1), "from scratch, est. (s)": round(estimate, 1),
                         "time saved": f"{1 - wall / estimate:.0%}"})
        if not rows:
            raise InputError("role", "no WSD long run with its cooldowns in the input", "run a wsd_budgets sweep")
        t = pd.DataFrame(rows)
        s.text.append("One constant-LR run per size, checkpointed at each cooldown's start, then one short WSD "
                      "cooldown per token budget D, instead of one cosine run per D. 'From scratch, est.' prices "
                      "the cooldowns' full D at the long run's measured training tokens/s, plus its start-up/eval overhead per run; "
                      "'wall time' is the measured start-to-end time of the long run and every cooldown process.")
        s.text.append(f"Saved overall: {1 - t['tokens trained'].sum() / t['tokens from scratch'].sum():.0%} of the "
                      f"tokens, {1 - t['wall time (s)'].sum() / t['from scratch, est. (s)'].sum():.0%} of the "
                      f"wall time ({int(df['role'].eq('cooldown').sum())} cooldowns are in the fits).")
        s.tables.append(("WSD runs vs training every budget from scratch", t))

    def targets_section(self):
        """The reproduction's checks, as measured (results are reported whether or not they meet them)."""
        s = Section(SECTION_TITLES[-1])
        rows = []
        a2 = self.fits.get("Approach 2")
        if a2 is not None:
            budgets = len(a2.extra["minima"]) + len(a2.extra.get("refused", {}))
            interior = len(a2.extra["minima"])
            rows.append({"check": "isoFLOP budgets with an interior minimum", "target": ">= 4",
                         "measured": f"{interior} of {budgets}", "met": "yes" if interior >= 4 else "no"})
        for key in ("Approach 2", "Approach 3"):
            fit = self.fits.get(key)
            if fit is None:
                continue
            a = float(fit.params["a"])
            off = 0.0 if 0.4 <= a <= 0.65 else (0.4 - a if a < 0.4 else a - 0.65)
            rows.append({"check": f"{key} exponent a (total N, 6ND)", "target": "[0.40, 0.65]",
                         "measured": f"{a:.3f}", "met": "yes" if off == 0 else f"no (off by {off:.3f})"})
        if self.backtest_mape is not None:
            rows.append({"check": "backtest MAPE on the largest budget", "target": "<= 2%",
                         "measured": f"{self.backtest_mape:.2f}%", "met": "yes" if self.backtest_mape <= 2 else "no"})
        if not rows:
            s.text.append("No fit to check.")
        else:
            s.tables.append(("Targets (Hoffmann et al. 2022 Table 2 range for a; backtest as in DESIGN.md)",
                             pd.DataFrame(rows)))
        self.sections.append(s)

    def conventions(self, s: Section):
        df = self.table
        variants = [("total N", "N", "6ND", "C")]
        if "n_params_nonembed" in df:
            variants.append(("non-embedding N", "n_params_nonembed", "6ND", "C"))
        for col, name in (("flops_kaplan", "Kaplan FLOPs"), ("flops_chinchilla", "Chinchilla App. F FLOPs")):
            if col in df:
                variants.append(("total N", "N", name, col))
                if "n_params_nonembed" in df:
                    variants.append(("non-embedding N", "n_params_nonembed", name, col))
        if len(variants) == 1:
            raise InputError("n_params_nonembed / flops_kaplan / flops_chinchilla",
                             "none of these columns is in the table", "use a scalinglab sweep table")
        rows = []
        for n_label, n_col, c_label, c_col in variants:
            self.progress.step(f"Approach 2 with {n_label}, {c_label}")
            d = df.assign(N=df[n_col].astype(float), C=df[c_col].astype(float))
            try:
                fit = fit_table(chinchilla.fit_approach2, d, window=APPROACH2_WINDOW)
                rows.append({"parameters": n_label, "compute": c_label, "a (N_opt ~ C^a)": round(fit.params["a"], 4),
                             "b (D_opt ~ C^b)": round(fit.params["b"], 4)})
            except InputError as e:
                rows.append({"parameters": n_label, "compute": c_label, "a (N_opt ~ C^a)": f"not fitted: {e}",
                             "b (D_opt ~ C^b)": "-"})
        self.progress.done()
        s.text.append("Approach 2 refitted with each way of counting parameters and compute (no bootstrap). "
                      "Pearce & Song 2024 and Porian et al. 2024 trace much of Kaplan's 0.73 vs Chinchilla's 0.5 to "
                      "these choices at small scale.")
        s.tables.append(("Frontier exponent by counting convention", pd.DataFrame(rows)))


# ---------------------------------------------------------------- rendering


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def render_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for t in s.text:
            out += [t, ""]
        for caption, table in s.tables:
            out += [f"**{caption}**", "", _md_table(table), ""]
        for name, caption in s.figures:
            out += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return "\n".join(out)


def render_html(title: str, sections: list[Section]) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{e(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.4}"
           "table{border-collapse:collapse;margin:0.5em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px}"
           "th{background:#eee}img{max-width:100%}figcaption{font-style:italic}</style></head><body>",
           f"<h1>{e(title)}</h1>"]
    for s in sections:
        out.append(f"<h2>{e(s.title)}</h2>")
        out += [f"<p>{e(t)}</p>" for t in s.text]
        for caption, table in s.tables:
            head = "".join(f"<th>{e(str(c))}</th>" for c in table.columns)
            body = "".join("<tr>" + "".join(f"<td>{e(_fmt(v))}</td>" for v in row) + "</tr>"
                           for row in table.itertuples(index=False))
            out.append(f"<p><b>{e(caption)}</b></p><table><tr>{head}</tr>{body}</table>")
        for name, caption in s.figures:
            out.append(f"<figure><img src='{e(name)}' alt='{e(caption)}'><figcaption>{e(caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


SECTION_TITLES = ("Data", "Chinchilla Approach 1: envelope of training curves", "Chinchilla Approach 2: isoFLOP profiles",
                  "Chinchilla Approach 3: parametric fit", "Compute-optimal frontier", "Kaplan laws",
                  "Backtest: predicting the largest budget", "Fitted vs published exponents",
                  "Counting conventions: parameters and FLOPs", "Targets")
WSD_TITLE = "WSD: many token budgets from one run"  # only when the input has WSD cooldown runs


def build_report(source, out_dir, bootstrap_n: int = 1000, seed: int = 0, level: float = 0.95,
                 grid: str = "chinchilla", columns: dict | None = None, progress: bool = True,
                 title: str = "Scaling-law report", name: str = "report", commentary=None) -> Path:
    """Fit everything the data supports and write <name>.md, <name>.html and PNG figures into out_dir.

    Returns the path of the markdown file. The input is validated before anything is written. `commentary`: a
    markdown file whose paragraphs become a final "Commentary" section (a person's reading of the numbers).
    """
    if int(bootstrap_n) < 0:
        raise InputError("bootstrap_n", f"must be >= 0, got {bootstrap_n}", "pass 0 to skip intervals, or e.g. 1000")
    table, curves, where = load_source(source, columns)
    notes = None
    if commentary is not None:
        path = Path(commentary)
        if not path.is_file():
            raise InputError(str(path), "commentary file not found", "pass an existing markdown file, or leave it out")
        notes = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with _Progress(progress, total=12) as bar:
        r = _Report(table, curves, out, int(bootstrap_n), seed, level, grid, bar)
        r.data_section(where, table.attrs.get("notes", []))
        t = iter(SECTION_TITLES[1:])
        r.guarded(next(t), r.approach1)
        r.guarded(next(t), r.approach2)
        r.guarded(next(t), r.approach3)
        r.guarded(next(t), r.frontier_section)
        r.guarded(next(t), r.kaplan)
        r.guarded(next(t), r.backtest_section)
        next(t)
        r.comparison_section()
        r.guarded(next(t), r.conventions)
        if "role" in table and table["role"].eq("cooldown").any():
            r.guarded(WSD_TITLE, r.wsd_section)
        r.targets_section()
        if notes:
            r.sections.append(Section("Commentary", text=notes))
    _write_text(out / f"{name}.md", render_markdown(title, r.sections))
    _write_text(out / f"{name}.html", render_html(title, r.sections))
    return out / f"{name}.md"
