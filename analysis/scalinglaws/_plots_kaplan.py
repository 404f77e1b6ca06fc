"""Figures of the critical batch size, L(N, S_min) and generalization sections (conventions of `plots`: each
function returns a matplotlib Figure; loss in nats/token, batch sizes and tokens in tokens)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from .plots import LABELS, _figure, log_grid, plt
from .result import FitResult


def _band(samples: pd.DataFrame | None, grid: np.ndarray, fn, level: float):
    """Percentile band of fn(row, grid) over bootstrap rows, or None."""
    if samples is None or not len(samples.dropna()):
        return None
    curves = np.array([fn(r, grid) for r in samples.dropna().to_dict("records")])
    tail = 50 * (1 - level)
    return np.nanpercentile(curves, [tail, 100 - tail], axis=0)


def bcrit_vs_loss(fit: FitResult, published: tuple[float, float], title: str = "Critical batch size B_crit(L)"):
    """Measured B_crit at each target loss (with bootstrap intervals), the fitted B* / L^(1/alpha_B), and the
    published law (B*, alpha_B) for comparison."""
    fig, ax = _figure(title)
    points, iv = fit.extra["points"], fit.extra.get("point_intervals")
    held = points["flags"] == ""
    for i, (sweep, g) in enumerate(points[held].groupby("sweep")):
        err = None
        if iv is not None:
            lo, hi = iv.loc[g.index, "low"].to_numpy(), iv.loc[g.index, "high"].to_numpy()
            err = np.vstack([g["B_crit"] - lo, hi - g["B_crit"]]).clip(min=0)
        ax.errorbar(g["L"], g["B_crit"], yerr=err, fmt="o", color=f"C{i}", ms=5, capsize=2, label=f"measured, {sweep}")
    if (~held).any():
        ax.scatter(points.loc[~held, "L"], points.loc[~held, "B_crit"], marker="x", color="0.5",
                   label="measured, eq 5.1 flagged (not fitted)")
    grid = log_grid(points["L"], 100, pad=1.1)
    B_star, alpha_B = fit.params["B_star"], fit.params["alpha_B"]
    ax.plot(grid, B_star / grid ** (1 / alpha_B), color="k", lw=2,
            label=f"fit: B* = {B_star:.3g} tokens, alpha_B = {alpha_B:.3f}")
    band = _band(fit.extra.get("samples"), grid, lambda r, g: r["B_star"] / g ** (1 / r["alpha_B"]), fit.level)
    if band is not None:
        ax.fill_between(grid, band[0], band[1], color="k", alpha=0.15, label=f"fit: {fit.level:.0%} bootstrap interval")
    ax.plot(grid, published[0] / grid ** (1 / published[1]), ":", color="0.3",
            label=f"Kaplan 2020: B* = {published[0]:.0e}, alpha_B = {published[1]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS["loss"])
    ax.set_ylabel("critical batch size B_crit (tokens)")
    ax.legend(fontsize=7)
    return fig


def steps_vs_tokens(fit: FitResult, title: str = "Steps vs tokens to reach each loss (Kaplan eq 5.1)"):
    """Per target loss: the (E, S) of every batch size and the fitted hyperbola S = S_min + E_min / B."""
    fig, ax = _figure(title)
    steps, points = fit.extra["steps"].dropna(), fit.extra["points"]
    norm = LogNorm(vmin=points["L"].min(), vmax=max(points["L"].max(), points["L"].min() * 1.001))
    cmap = plt.get_cmap("viridis")
    for r in points.itertuples():
        g = steps[(steps["sweep"] == r.sweep) & np.isclose(steps["L"], r.L)]
        color = cmap(norm(r.L))
        ax.scatter(g["E"], g["S"], color=color, s=16, zorder=3)
        B = np.geomspace(g["B"].min() / 3, g["B"].max() * 3, 100)
        S = r.S_min + r.E_min / B
        ax.plot(S * B, S, color=color, lw=1, ls="-" if not r.flags else ":")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=f"target {LABELS['loss']}")
    ax.scatter([], [], color="0.5", s=16, label="(E, S) of one batch size (colour: target loss)")
    ax.plot([], [], color="0.5", lw=1, label="S = S_min + E_min / B (dotted: flagged)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens E = B S")
    ax.set_ylabel("optimizer steps S")
    ax.legend(fontsize=7)
    return fig


def noise_scale(curves: pd.DataFrame, runs: pd.DataFrame, fits: dict, published: tuple[float, float],
                title: str = "Gradient noise scale during training"):
    """grad_noise_scale (tokens) against the validation loss for every run, coloured by batch size, with the
    B_crit(L) laws of `fits` (label -> (B_star, alpha_B, (lowest, highest loss measured))) and the published one."""
    fig, ax = _figure(title)
    B = (runs.set_index("run_id")["batch_size"] * runs.set_index("run_id")["n_ctx"]).astype(float)
    data = curves.dropna(subset=["grad_noise_scale", "val_loss"])
    data = data[(data["grad_noise_scale"] > 0) & data["run_id"].isin(B.index)]
    norm = LogNorm(vmin=B[data["run_id"].unique()].min(), vmax=max(B[data["run_id"].unique()].max(),
                                                                   B[data["run_id"].unique()].min() * 1.01))
    cmap = plt.get_cmap("plasma")
    for run_id, g in data.sort_values("step").groupby("run_id"):
        ax.plot(g["val_loss"], g["grad_noise_scale"], color=cmap(norm(B[run_id])), lw=1, alpha=0.8)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="batch size (tokens per step)")
    grid = log_grid(data["val_loss"], 100, pad=1.05)
    for i, (label, (B_star, alpha_B, (lo, hi))) in enumerate(fits.items()):
        losses = np.geomspace(lo, hi, 50)  # only over the losses it was measured at
        ax.plot(losses, B_star / losses ** (1 / alpha_B), color=f"C{i}", lw=2, label=label)
    ax.plot(grid, published[0] / grid ** (1 / published[1]), ":", color="0.3",
            label=f"Kaplan 2020 B_crit(L): B* = {published[0]:.0e}, alpha_B = {published[1]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"validation {LABELS['loss']}")
    ax.set_ylabel("gradient noise scale B_simple (tokens)")
    ax.legend(fontsize=7)
    return fig


def loss_vs_s_min(fit: FitResult, title: str = "Learning curves vs S_min with L(N, S_min) (Kaplan eq 1.6)"):
    """Loss against S_min for every eval point, coloured by N, with the fitted eq 1.6 curve of each N."""
    fig, ax = _figure(title)
    d = fit.data
    norm = LogNorm(vmin=d["N"].min(), vmax=max(d["N"].max(), d["N"].min() * 1.01))
    cmap = plt.get_cmap("plasma")
    for run_id, g in d.groupby("run_id"):
        ax.plot(g["S_min"], g["loss"], ".", color=cmap(norm(g["N"].iloc[0])), ms=3, alpha=0.6)
    grid = log_grid(d["S_min"], 100, pad=1.0)
    for N in np.unique(d["N"]):
        ax.plot(grid, np.asarray(fit.predict(np.full_like(grid, N), grid), float), color=cmap(norm(N)), lw=1.5)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=LABELS["N"])
    ax.plot([], [], ".", color="0.5", ms=3, label="eval points (colour: N)")
    ax.plot([], [], color="0.5", lw=1.5, label="L(N, S_min) fitted, one line per N")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("S_min = S / (1 + B_crit(L)/B) (steps)")
    ax.set_ylabel(f"validation {LABELS['loss']}")
    ax.legend(fontsize=7)
    return fig


def generalization(fits: dict, title: str = "Loss on each data source vs training loss (Kaplan Fig 8)"):
    """Per (source, held out): the runs' points and the fitted line; the y = x line for reference."""
    fig, ax = _figure(title)
    xs = []
    for i, ((source, held), fit) in enumerate(sorted(fits.items())):
        pts = fit.extra["points"]
        xs.append(pts["loss_train"].to_numpy())
        label = f"{source}{' (held out of training)' if held else ''}: slope {fit.params['slope']:.2f}"
        ax.scatter(pts["loss_train"], pts["loss_source"], color=f"C{i}", marker="s" if held else "o", s=20,
                   zorder=3)
        grid = np.linspace(pts["loss_train"].min(), pts["loss_train"].max(), 50)
        ax.plot(grid, fit.predict(grid), color=f"C{i}", lw=1.5, ls="--" if held else "-", label=label)
    for held, marker in ((False, "o"), (True, "s")):
        if any(h == held for _, h in fits):
            ax.scatter([], [], color="0.5", marker=marker, s=20,
                       label="runs, source held out of training" if held else "runs, source in training")
    x = np.concatenate(xs)
    ax.plot([x.min(), x.max()], [x.min(), x.max()], "k:", lw=1, label="y = x")
    ax.set_xlabel(f"validation {LABELS['loss']}, training distribution")
    ax.set_ylabel(f"validation {LABELS['loss']}, data source")
    ax.legend(fontsize=7)
    return fig
