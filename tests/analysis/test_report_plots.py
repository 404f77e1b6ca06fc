"""Figures: what they draw, and atomic PNG writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scalinglaws import frontier, plots
from scalinglaws.table import fit_table, read_table

TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "analysis" / "sweep.csv"


@pytest.fixture(scope="module")
def approach2():
    return fit_table(frontier.fit_approach2, read_table(TABLE))


def test_isoflop_marks_minima_and_draws_refused_budgets_grey_dashed(approach2):
    fig = plots.isoflop_curves(approach2)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    refused = [line for line in ax.get_lines() if "refused" in line.get_label()]
    assert len(refused) == 1 and refused[0].get_linestyle() == "--" and refused[0].get_color() == "0.6"
    assert "minimum outside the sampled range" in refused[0].get_label()
    stars = [line for line in ax.get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    minima = approach2.extra["minima"]
    assert sorted(float(s.get_xdata()[0]) for s in stars) == pytest.approx(sorted(minima["N_opt"]))
    assert sum("FLOPs" in t for t in labels) == len(minima)
    assert ax.get_xlabel() == "parameters N" and "nats/token" in ax.get_ylabel()


def test_frontier_reference_slopes(approach2):
    ax = plots.frontier({"Approach 2": approach2}).axes[0]
    lines = {line.get_label().split(":")[0]: line for line in ax.get_lines()}
    for who, slope in (("Kaplan 2020", 0.73), ("Chinchilla 2022", 0.50), ("Approach 2", approach2.params["a"])):
        x, y = np.asarray(lines[who].get_xdata(), float), np.asarray(lines[who].get_ydata(), float)
        assert np.polyfit(np.log(x), np.log(y), 1)[0] == pytest.approx(slope, rel=1e-6)
    assert ax.get_xscale() == "log" and "FLOPs" in ax.get_xlabel()


def test_save_figure_is_atomic_png(tmp_path):
    actual = np.array([3.0, 3.5, 4.0])
    fig = plots.residuals(actual, actual * 1.01)
    assert "MAPE 1.00%" in fig.axes[0].texts[0].get_text()
    path = plots.save_figure(fig, tmp_path / "sub" / "r.png")
    assert path.read_bytes().startswith(b"\x89PNG") and [p.name for p in path.parent.iterdir()] == ["r.png"]


def test_loss_plot_shades_the_bootstrap_band():
    from scalinglaws import kaplan
    from scalinglaws.bootstrap import bootstrap
    from scalinglaws._context import power_law_band as _power_law_band

    df = read_table(TABLE)
    env = df.loc[df.groupby("N")["loss"].idxmin()]
    fit = bootstrap(kaplan.fit_L_N, env, n=20, seed=0)
    grid = np.geomspace(env["N"].min(), env["N"].max(), 7)
    g, lo, hi = _power_law_band(fit, grid, "N_c", "alpha_N")
    s = fit.extra["samples"].dropna()
    curves = (s["N_c"].to_numpy()[:, None] / grid) ** s["alpha_N"].to_numpy()[:, None]
    assert lo == pytest.approx(np.percentile(curves, 2.5, axis=0)) and np.all(hi > lo)
    ax = plots.loss_vs(df, "N", {"L(N)": fit}, {"L(N)": (g, lo, hi)}, fitted=env).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "L(N): 95% bootstrap interval" in labels and "points fitted" in labels
