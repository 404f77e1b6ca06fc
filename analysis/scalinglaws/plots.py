"""Figures of a sweep and its fits. Every function returns a matplotlib Figure; `save_figure` writes it atomically
as PNG (FIGURE_DPI dots per inch), SVG or PDF.

Units: loss in nats/token, N in parameters, D in tokens, C in FLOPs (training, 6 N D unless stated).
Log axes are tidied by `tidy_log_axis`: loss axes get plain tick labels (3, 3.5, 4, not 3x10^0), other log axes
label decades (10^4) or, within about one decade, 1-2-5 steps (2x10^4); minor ticks are never labelled, so
labels cannot overlap. Every kind of marker drawn has a legend entry.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import (FixedLocator, FuncFormatter, LogFormatterSciNotation, LogLocator,  # noqa: E402
                               MaxNLocator, NullFormatter)

from ._files import atomic_write  # noqa: E402
from ._format import fmt  # noqa: E402
from .errors import InputError  # noqa: E402
from .result import FitResult  # noqa: E402

LABELS = {
    "N": "parameters N",
    "D": "training tokens D",
    "C": "training compute C (FLOPs)",
    "loss": "loss (nats/token)",
    "tokens": "training tokens",
    "flops_6nd": "training compute 6ND (FLOPs)",
    "flops_kaplan": "training compute, Kaplan count (FLOPs)",
    "flops_chinchilla": "training compute, Chinchilla App. F count (FLOPs)",
}
FORMATS = ("png", "svg", "pdf")  # what save_figure writes (the report's --format)
FIGURE_DPI = 150  # raster resolution of saved figures (PNG); SVG and PDF are vector
KAPLAN_FRONTIER_EXPONENT = 0.73  # Kaplan et al. 2020: N_opt ~ C^0.73
CHINCHILLA_FRONTIER_EXPONENT = 0.50  # Hoffmann et al. 2022, Approach 1: N_opt ~ C^0.50


def _figure(title: str):
    fig, ax = plt.subplots(figsize=(7, 5), dpi=FIGURE_DPI, layout="constrained")
    ax.set_title(title)
    return fig, ax


def _plain(value, _pos=None) -> str:
    return f"{value:.4g}"


def tidy_log_axis(axis, plain: bool = False) -> None:
    """Readable ticks on a log-scaled axis (call once its data are drawn; `axis` is e.g. ax.yaxis).

    plain=True (loss axes): plain numbers: within one decade, 4-7 evenly spaced ticks (3, 3.5, 4, 4.5); over
    more, 1-2-5 steps (or decades past 3 decades). plain=False: decades as 10^k when at least two are in view,
    else 1-2-5 steps as 2x10^k. Minor ticks stay, unlabelled (matplotlib labels them on short log axes, where they
    read 3x10^0 and collide).
    """
    lo, hi = sorted(float(v) for v in axis.get_view_interval())
    if not (0 < lo < hi < np.inf):
        return
    decades = np.log10(hi / lo)
    if plain:
        if decades < 1:
            ticks = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
            axis.set_major_locator(FixedLocator([t for t in ticks if lo <= t <= hi]))
        else:
            axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if decades < 3 else (1.0,)))
        axis.set_major_formatter(FuncFormatter(_plain))
    elif np.floor(np.log10(hi)) - np.ceil(np.log10(lo)) + 1 >= 2:
        axis.set_major_locator(LogLocator(base=10))
        axis.set_major_formatter(LogFormatterSciNotation(base=10))
    else:
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(LogFormatterSciNotation(base=10, labelOnlyBase=False,
                                                         minor_thresholds=(np.inf, np.inf)))
    axis.set_minor_formatter(NullFormatter())


def tidy_figure(fig) -> None:
    """tidy_log_axis on every log axis of every panel (colour bars included) of `fig`; an axis whose label names
    the loss gets plain labels. save_figure applies it, so every written figure follows the module's rules."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_scale() == "log":
                tidy_log_axis(axis, plain="loss" in axis.get_label_text())


def _tidy(ax, loss_axis: str = "y") -> None:
    """tidy_log_axis on every log axis of `ax`; the `loss_axis` one gets plain labels."""
    for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
        if axis.get_scale() == "log":
            tidy_log_axis(axis, plain=name == loss_axis)


def log_grid(values, n: int = 200, pad: float = 1.5) -> np.ndarray:
    """n log-spaced points from min(values) / pad to max(values) * pad (the x of a fitted line)."""
    values = np.asarray(values, dtype=float)
    return np.geomspace(values.min() / pad, values.max() * pad, n)


def _budget_colors(budgets) -> dict:
    budgets = sorted(pd.unique(np.asarray(budgets)))
    cmap = plt.get_cmap("viridis")
    return {b: cmap(i / max(len(budgets) - 1, 1)) for i, b in enumerate(budgets)}


def loss_vs(df: pd.DataFrame, x: str = "N", fits: Mapping[str, FitResult] | None = None,
            bands: Mapping[str, tuple] | None = None, title: str | None = None, fitted: pd.DataFrame | None = None):
    """Log-log loss against x (N, D or C) with fitted laws (`fits`: label -> FitResult whose predict takes x),
    shaded intervals (`bands`: label -> (grid, low, high), e.g. bootstrap percentiles), and the points the
    fits saw (`fitted`, ringed in black) when they are a subset of df."""
    fig, ax = _figure(title or f"Loss vs {LABELS.get(x, x)}")
    budgeted = df["budget"].notna() if "budget" in df.columns else pd.Series(False, index=df.index)
    if budgeted.any():
        colors = _budget_colors(df.loc[budgeted, "budget"])
        for b, g in df[budgeted].groupby("budget"):
            ax.scatter(g[x], g["loss"], color=colors[b], s=22, label=f"runs, C = {fmt(b, 3, sci=False)}", zorder=3)
    if (~budgeted).any():
        other = df[~budgeted]
        ax.scatter(other[x], other["loss"], color="k", s=22, label="runs" if not budgeted.any() else
                   "runs without a compute budget", zorder=3)
    if fitted is not None:
        ax.scatter(fitted[x], fitted["loss"], s=70, facecolors="none", edgecolors="k", label="points fitted", zorder=4)
    grid = log_grid(df[x])
    for i, (label, fit) in enumerate((fits or {}).items()):
        color = f"C{i + 1}"
        ax.plot(grid, np.asarray(fit.predict(grid), dtype=float), color=color, lw=2, label=label)
        if bands and label in bands:
            g, lo, hi = bands[label]
            ax.fill_between(g, lo, hi, color=color, alpha=0.2, label=f"{label}: {fit.level:.0%} bootstrap interval")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS["loss"])
    _tidy(ax)
    ax.legend(fontsize=7)
    return fig


def isoflop_curves(fit: FitResult, title: str = "IsoFLOP profiles (Chinchilla Approach 2)"):
    """Loss vs N per compute budget with each budget's parabola in log N and its minimum; refused budgets are
    drawn grey and dashed with the reason in the legend. `fit` is a fit_approach2 result."""
    fig, ax = _figure(title)
    data = fit.data
    refused = dict(fit.extra.get("refused", {}))
    minima = fit.extra.get("minima", pd.DataFrame(columns=["budget"])).set_index("budget")
    colors = _budget_colors(data["budget"])
    for b, g in data.groupby("budget", sort=True):
        g = g.sort_values("N")
        key = b.item() if hasattr(b, "item") else b
        if key in refused or b in refused:
            reason = refused.get(key, refused.get(b))
            ax.plot(g["N"], g["loss"], "o--", color="0.6", ms=4,
                    label=f"C = {fmt(b, 3, sci=False)}: refused ({reason})")
            continue
        color = colors[b]
        ax.scatter(g["N"], g["loss"], color=color, s=22, zorder=3)
        coef = np.polyfit(np.log(g["N"]), g["loss"], 2)
        grid = log_grid(g["N"], 100, pad=1.0)
        ax.plot(grid, np.polyval(coef, np.log(grid)), color=color, lw=1.5, label=f"C = {fmt(b, 3, sci=False)} FLOPs")
        if b in minima.index:
            N_opt = float(minima.loc[b, "N_opt"])
            ax.plot(N_opt, np.polyval(coef, np.log(N_opt)), "*", color=color, ms=14, mec="k", zorder=4)
    ax.scatter([], [], color="0.5", s=22, label="runs (colour: budget)")
    ax.plot([], [], "*", color="w", mec="k", ms=12, label="parabola minimum N_opt")
    ax.set_xscale("log")
    ax.set_xlabel(LABELS["N"])
    ax.set_ylabel(LABELS["loss"])
    _tidy(ax)
    ax.legend(fontsize=7)
    return fig


def frontier(fits: Mapping[str, FitResult], C_range: Sequence[float] | None = None,
             title: str = "Compute-optimal model size N_opt(C)"):
    """N_opt(C) of each fit (points: Approach 2 minima / Approach 1 envelope; line: extra["frontier"]), with
    Kaplan's N ~ C^0.73 and Chinchilla's N ~ C^0.50 drawn through the middle of the first fitted line."""
    fig, ax = _figure(title)
    points = []
    for fit in fits.values():
        for key in ("minima", "envelope"):
            if key in fit.extra:
                points.append(fit.extra[key]["C"].to_numpy(float))
    if C_range is None:
        C_range = np.concatenate(points) if points else np.array([1e18, 1e24])
    grid = log_grid(C_range, 100, pad=2.0)
    anchor = None
    markers = itertools.cycle("osD^v")
    for i, (label, fit) in enumerate(fits.items()):
        color = f"C{i}"
        for key in ("minima", "envelope"):
            if key in fit.extra:
                pts = fit.extra[key]
                what = "isoFLOP minima" if key == "minima" else "envelope of the training curves"
                ax.scatter(pts["C"], pts["N_opt"], color=color, marker=next(markers), s=28, zorder=3,
                           label=f"{label}: {what}")
        N_line = np.asarray(fit.extra["frontier"](grid)[0], dtype=float)
        a = fit.params.get("a", np.nan)
        iv = fit.intervals.get("a")
        a_text = f"a = {a:.3f}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")
        ax.plot(grid, N_line, color=color, lw=2, label=f"{label}: {a_text}")
        if anchor is None:
            mid = len(grid) // 2
            anchor = (grid[mid], N_line[mid])
    if anchor is not None:
        for exponent, style, who in ((KAPLAN_FRONTIER_EXPONENT, ":", "Kaplan 2020"),
                                     (CHINCHILLA_FRONTIER_EXPONENT, "--", "Chinchilla 2022")):
            ax.plot(grid, anchor[1] * (grid / anchor[0]) ** exponent, style, color="0.3",
                    label=f"{who}: N ~ C^{exponent:.2f} (slope only, through the first fit)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS["C"])
    ax.set_ylabel("compute-optimal parameters N_opt")
    _tidy(ax, loss_axis="")
    ax.legend(fontsize=7)
    return fig


def training_curves(curves: pd.DataFrame, x: str = "flops_6nd", loss: str = "val_loss", size: str = "N",
                    title: str | None = None):
    """Loss vs compute (or tokens) for every run, coloured by model size on a log colour scale."""
    fig, ax = _figure(title or f"Training curves: loss vs {LABELS.get(x, x)}")
    sizes = curves.groupby("run_id")[size].first()
    norm = LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.01))
    cmap = plt.get_cmap("plasma")
    for run_id, g in curves.sort_values(x).groupby("run_id"):
        ax.plot(g[x], g[loss], color=cmap(norm(sizes[run_id])), lw=1, alpha=0.8)
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=LABELS["N"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(f"validation {LABELS['loss']}")
    _tidy(ax)
    tidy_log_axis(bar.ax.yaxis)
    return fig


def residuals(actual, predicted, labels=None, title: str = "Predicted vs actual loss"):
    """Predicted against actual loss with the y = x line and the mean absolute percentage error.
    `labels` (optional, one per point) colours points by group, e.g. 'fit' vs 'held out'."""
    actual, predicted = np.asarray(actual, float), np.asarray(predicted, float)
    fig, ax = _figure(title)
    if labels is None:
        ax.scatter(actual, predicted, s=22, color="C0", label="runs", zorder=3)
    else:
        labels = np.asarray(labels)
        for i, name in enumerate(pd.unique(labels)):
            m = labels == name
            mape = 100 * np.mean(np.abs(predicted[m] / actual[m] - 1))
            ax.scatter(actual[m], predicted[m], s=22, color=f"C{i}", label=f"{name} (MAPE {mape:.2f}%)", zorder=3)
    lo, hi = min(actual.min(), predicted.min()), max(actual.max(), predicted.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    mape = 100 * np.mean(np.abs(predicted / actual - 1))
    ax.set_xlabel(f"actual {LABELS['loss']}")
    ax.set_ylabel(f"predicted {LABELS['loss']}")
    ax.text(0.03, 0.95, f"MAPE {mape:.2f}% over {len(actual)} runs", transform=ax.transAxes, va="top")
    ax.legend(fontsize=7, loc="lower right")
    return fig


def lr_curves(optima, law=None, title: str = "Loss vs peak learning rate, per size"):
    """Each size's tuning grid (loss vs LR, log x; diverged runs marked x at the top), the LR_opt picked (star,
    hollow when flagged), and on a second panel LR_opt against N with the fitted law `law` (an LRLaw)."""
    fig, (ax, ax_law) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=100, layout="constrained")
    fig.suptitle(title)
    norm = LogNorm(vmin=min(o.N for o in optima), vmax=max(max(o.N for o in optima), min(o.N for o in optima) * 1.01))
    cmap = plt.get_cmap("viridis")
    finite = [v for o in optima for v in o.losses if np.isfinite(v)]
    top = max(finite) if finite else 1.0
    for o in optima:
        color = cmap(norm(o.N))
        lrs, losses = np.array(o.lrs), np.array(o.losses)
        ok = np.isfinite(losses)
        ax.plot(lrs[ok], losses[ok], "o-", color=color, ms=4, lw=1, label=f"N = {fmt(o.N)}")
        ax.plot(lrs[~ok], np.full((~ok).sum(), top), "x", color=color, ms=6)
        ax.plot([o.lr_opt], [o.loss_opt], "*", ms=12, color=color, mfc="white" if o.flag else color, mec=color)
    if any(not np.isfinite(o.losses).all() for o in optima):
        ax.plot([], [], "x", color="0.4", ms=6, label="diverged (drawn at the top)")
    ax.plot([], [], "*", color="0.4", ms=10, label="LR_opt (hollow: flagged)")
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel(f"final {LABELS['loss']}")
    ax.legend(fontsize=7)
    N = np.array([o.N for o in optima])
    ax_law.scatter(N, [o.lr_opt for o in optima], c=[cmap(norm(n)) for n in N], s=40, zorder=3, label="LR_opt")
    if law is not None:
        grid = log_grid(N)
        lo, hi = law.interval.get("exponent", (None, None))
        label = law.formula
        if lo is not None:
            label += f" [{lo:.3f}, {hi:.3f}]"
        ax_law.plot(grid, law.lr(grid), "k-", lw=1.2, label=label)
    ax_law.set_xscale("log")
    ax_law.set_yscale("log")
    ax_law.set_xlabel(LABELS["N"])
    ax_law.set_ylabel("LR_opt")
    ax_law.legend(fontsize=7)
    _tidy(ax, loss_axis="none")
    _tidy(ax_law, loss_axis="none")
    return fig


def save_figure(fig, path, format: str | None = None) -> Path:
    """Write `fig` to `path` atomically (a temporary file beside it, then os.replace) and close it.

    format: one of FORMATS, default the suffix of `path` (PNG when it has none of them). PNG is written at
    FIGURE_DPI dots per inch (recorded in the file's pHYs chunk); SVG and PDF are vector. Log axes are tidied
    first (`tidy_figure`).
    """
    try:
        if format is not None and format not in FORMATS:
            raise InputError("format", f"unknown figure format {format!r}", f"use one of {', '.join(FORMATS)}")
        format = format or Path(path).suffix.lstrip(".").lower()
        if format not in FORMATS:
            format = "png"
        tidy_figure(fig)
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format=format, dpi=FIGURE_DPI))
    finally:
        plt.close(fig)
