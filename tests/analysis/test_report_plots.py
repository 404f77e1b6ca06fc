"""Figures: what they draw, readable ticks, a legend entry per marker kind, and atomic PNG/SVG/PDF writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scalinglaws import frontier, plots
from scalinglaws.errors import InputError
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


# ---------------------------------------------------------------- ticks, legends, formats


def _narrow_table():
    """Runs over 0.35 decades of N and loss 3.0-3.6 (a short log axis both ways), two budgets and unbudgeted."""
    N = np.geomspace(1e5, 2.2e5, 6)
    return pd.DataFrame({"N": np.tile(N, 2), "D": 1e7, "C": 6e12, "loss": np.r_[3.6 - 0.1 * np.arange(6),
                                                                               3.5 - 0.1 * np.arange(6)],
                         "budget": [1e12] * 6 + [np.nan] * 6})


def _curves():
    rows = []
    for i, N in enumerate(np.geomspace(2e4, 4e5, 5)):
        for C in np.geomspace(1e9, 1e12 * (i + 1), 12):
            rows.append({"run_id": f"r{i}", "N": N, "flops_6nd": C, "val_loss": 2.8 + 3.0 * (C / 1e9) ** -0.3})
    return pd.DataFrame(rows)


def _other_figures() -> dict:
    """The tuning and Kaplan figures, from small hand-made fits."""
    from scalinglaws import _plots_kaplan as kplots
    from scalinglaws.lr_tuning import LROptimum
    from scalinglaws.result import FitResult

    nan = float("nan")
    optima = [LROptimum(N=1e5, lr_opt=1e-3, loss_opt=3.2, flag=None, lrs=(3e-4, 1e-3, 3e-3, 1e-2),
                        losses=(3.4, 3.2, 3.3, nan)),
              LROptimum(N=4e5, lr_opt=3e-3, loss_opt=3.0, flag="vertex at the grid's edge", lrs=(1e-3, 3e-3),
                        losses=(3.1, 3.0))]
    L = np.array([3.0, 3.5, 4.0, 4.5])
    points = pd.DataFrame({"sweep": "bs", "L": L, "B_crit": 2e8 / L ** (1 / 0.21), "S_min": 1e3 / L,
                           "E_min": 1e6 / L, "flags": ["", "", "", "eq 5.1: one batch size"]})
    B = np.array([1e3, 4e3, 1.6e4])
    steps = pd.DataFrame([{"sweep": "bs", "L": r.L, "B": b, "S": r.S_min + r.E_min / b,
                           "E": (r.S_min + r.E_min / b) * b} for r in points.itertuples() for b in B])
    bcrit = FitResult(name="B_crit(L)", params={"B_star": 2e8, "alpha_B": 0.21}, predict=None,
                      extra={"points": points, "steps": steps})
    curves = pd.DataFrame([{"run_id": f"r{n}", "N": N, "S_min": S,
                            "loss": 2.5 + (1e5 / N) ** 0.1 + (1e3 / S) ** 0.5}
                           for n, N in enumerate((1e5, 4e5)) for S in np.geomspace(10, 1e4, 8)])
    ns = FitResult(name="L(N, S_min)", params={}, data=curves,
                   predict=lambda N, S: 2.5 + (1e5 / N) ** 0.1 + (1e3 / S) ** 0.5)
    line = lambda slope: FitResult(name="transfer", params={"slope": slope}, predict=lambda x: 0.2 + slope * x,  # noqa: E731
                                   extra={"points": pd.DataFrame({"loss_train": L, "loss_source": 0.2 + slope * L})})
    return {"lr_curves": plots.lr_curves(optima),
            "bcrit_vs_loss": kplots.bcrit_vs_loss(bcrit, (2e8, 0.21)),
            "steps_vs_tokens": kplots.steps_vs_tokens(bcrit),
            "loss_vs_s_min": kplots.loss_vs_s_min(ns),
            "generalization": kplots.generalization({("web", False): line(1.0), ("books", True): line(1.1)})}


def _figures(approach2):
    df = read_table(TABLE)
    actual = df["loss"].to_numpy()
    return {**_other_figures(),"loss_vs N": plots.loss_vs(df, "N", fitted=df.head(5)),
            "loss_vs narrow": plots.loss_vs(_narrow_table(), "N"),
            "isoflop": plots.isoflop_curves(approach2),
            "frontier": plots.frontier({"Approach 2": approach2}),
            "training_curves": plots.training_curves(_curves()),
            "residuals": plots.residuals(actual, actual * 1.01),
            "residuals by group": plots.residuals(actual, actual * 1.01, labels=["fit", "held out"] * (len(df) // 2)
                                                  + ["fit"] * (len(df) % 2))}


def _shown_labels(axis):
    """(location, Text) of every tick label in view with text, major and minor."""
    lo, hi = sorted(axis.get_view_interval())
    pairs = list(zip(axis.get_majorticklocs(), axis.get_majorticklabels())) + \
        list(zip(axis.get_minorticklocs(), axis.get_minorticklabels()))
    return [(loc, t) for loc, t in pairs if lo <= loc <= hi and t.get_visible() and t.get_text()]


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-"))


def test_log_loss_axes_have_plain_tick_labels():
    import matplotlib.pyplot as plt

    for fig in (plots.loss_vs(read_table(TABLE), "N"), plots.loss_vs(_narrow_table(), "N"),
                plots.training_curves(_curves())):
        fig.canvas.draw()
        ax = fig.axes[0]
        assert ax.get_yscale() == "log"
        shown = _shown_labels(ax.yaxis)
        assert len(shown) >= 3, [t.get_text() for _, t in shown]
        for loc, text in shown:  # "3.5", not "$\\mathdefault{3.5\\times10^{0}}$"
            assert _number(text.get_text()) == pytest.approx(loc, rel=1e-3), text.get_text()
        plt.close(fig)


def test_no_tick_labels_overlap(approach2):
    import matplotlib.pyplot as plt

    for name, fig in _figures(approach2).items():
        renderer = fig.canvas.get_renderer()
        fig.canvas.draw()
        for ax in fig.axes:  # the plot and any colour bar
            for axis in (ax.xaxis, ax.yaxis):
                boxes = [t.get_window_extent(renderer) for _, t in _shown_labels(axis)]
                for i, a in enumerate(boxes):
                    for b in boxes[i + 1:]:
                        assert not a.overlaps(b), f"{name}: tick labels overlap on the {axis.axis_name} axis"
        plt.close(fig)


def _marker_kind(artist):
    """What a reader tells apart: a line marker or a scatter marker, its shape, filled or hollow."""
    from matplotlib.collections import PathCollection
    from matplotlib.colors import to_rgba_array
    from matplotlib.lines import Line2D

    if isinstance(artist, Line2D):
        if artist.get_marker() in (None, "None", "", " ", "none"):
            return None
        return "line", artist.get_marker(), to_rgba_array(artist.get_markerfacecolor())[0, 3] > 0
    if isinstance(artist, PathCollection):
        filled = len(artist.get_facecolor()) and to_rgba_array(artist.get_facecolor())[:, 3].max() > 0
        return "scatter", tuple(np.round(artist.get_paths()[0].vertices, 4).ravel()), bool(filled)
    return None


def test_every_marker_kind_drawn_has_a_legend_entry(approach2):
    import matplotlib.pyplot as plt

    for name, fig in _figures(approach2).items():
        for ax in fig.axes:  # every panel (a colour bar draws no markers)
            drawn = {_marker_kind(a) for a in ax.lines if len(a.get_xdata())} | \
                {_marker_kind(c) for c in ax.collections if len(c.get_offsets())}
            drawn.discard(None)
            if not drawn:
                continue
            legend = ax.get_legend()
            assert legend is not None, name
            entries = {_marker_kind(h) for h in legend.findobj()}  # every artist a legend entry draws
            assert drawn <= entries, f"{name}: drawn without a legend entry: {drawn - entries}"
        plt.close(fig)


def _png_chunks(data: bytes) -> dict:
    """The chunks of a PNG file: type -> payload (the first of each type)."""
    import struct

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, i = {}, 8
    while i < len(data):
        (n,), kind = struct.unpack(">I", data[i:i + 4]), data[i + 4:i + 8].decode()
        chunks.setdefault(kind, data[i + 8:i + 8 + n])
        i += 12 + n
    return chunks


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG\r\n\x1a\n"), ("svg", b"<svg"), ("pdf", b"%PDF-")])
def test_save_figure_formats_and_raster_dpi(tmp_path, fmt, magic):
    import struct

    fig = plots.residuals(np.array([3.0, 3.5, 4.0]), np.array([3.1, 3.4, 4.1]))
    width_in, height_in = fig.get_size_inches()
    data = plots.save_figure(fig, tmp_path / f"r.{fmt}").read_bytes()
    assert magic in data[:400]
    if fmt == "png":
        chunks = _png_chunks(data)
        px_x, px_y, unit = struct.unpack(">IIB", chunks["pHYs"])
        assert unit == 1 and px_x == px_y and px_x * 0.0254 == pytest.approx(plots.FIGURE_DPI, abs=0.5)
        assert plots.FIGURE_DPI >= 150
        width, height = struct.unpack(">II", chunks["IHDR"][:8])
        assert (width, height) == (round(width_in * plots.FIGURE_DPI), round(height_in * plots.FIGURE_DPI))
    with pytest.raises(InputError, match="format"):
        plots.save_figure(plots.residuals([1.0, 2.0], [1.0, 2.0]), tmp_path / "r.jpg", format="jpg")


def test_save_figure_tidies_every_log_axis_of_any_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig, (ax, other) = plt.subplots(1, 2)
    ax.plot([1e5, 2e5, 4e5], [3.6, 3.3, 3.0], "o-")
    ax.set(xscale="log", yscale="log", ylabel=plots.LABELS["loss"])  # drawn without plots' own tidying
    other.plot([1.0, 2.0], [1e3, 3e3])
    other.set(yscale="log", ylabel="tokens")
    plots.save_figure(fig, tmp_path / "f.svg")
    fig.canvas.draw()
    shown = _shown_labels(ax.yaxis)
    assert len(shown) >= 3 and all(_number(t.get_text()) == pytest.approx(loc) for loc, t in shown)
    assert all("10^" in t.get_text() for _, t in _shown_labels(other.yaxis))  # not a loss: 1-2-5 x 10^k
    assert not [t for t in other.yaxis.get_minorticklabels() if t.get_text()]
