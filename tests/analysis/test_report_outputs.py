"""What `scalinglaws report` writes besides report.md: figures in the chosen format, and fits.json."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from scalinglaws import chinchilla, kaplan
from scalinglaws.bootstrap import bootstrap
from scalinglaws.roles import assign_roles
from scalinglaws.source import load_source
from scalinglaws.table import fit_table

from scalinglaws.cli import main

TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "analysis" / "sweep.csv"
BOOT = 8
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<svg", "pdf": b"%PDF-"}


@pytest.fixture(scope="module")
def svg_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("svg")
    assert main(["report", str(TABLE), "--out", str(out), "--bootstrap", str(BOOT), "--seed", "3", "--grid",
                 "small", "--quiet", "--format", "svg"]) == 0
    return out


def test_report_format_svg_writes_every_figure_as_svg(svg_report):
    md = (svg_report / "report.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(figures) >= 5 and all(name.endswith(".svg") for name in figures)
    for name in figures:
        assert MAGIC["svg"] in (svg_report / name).read_bytes()[:400], name
    assert not list(svg_report.glob("*.png"))
    html = (svg_report / "report.html").read_text()
    assert all(f'<img src="{name}"' in html for name in figures)


def test_report_format_is_checked(capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["report", str(TABLE), "--out", str(tmp_path / "x"), "--format", "jpg"])
    assert e.value.code == 2 and "--format" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_pdf_figures_are_linked_not_shown_inline():
    from scalinglaws._context import Section
    from scalinglaws.report import render_html, render_markdown

    sections = [Section("Fits", figures=[("frontier.pdf", "N_opt(C)"), ("isoflop.svg", "profiles")])]
    md = render_markdown("T", sections)
    assert "[Figure (PDF): N_opt(C)](frontier.pdf)" in md and "![profiles](isoflop.svg)" in md
    html = render_html("T", sections)
    assert '<a href="frontier.pdf">' in html and '<img src="isoflop.svg"' in html and "<img src=\"frontier" not in html


def test_fits_json_holds_every_fit_with_its_numbers_and_data_selection(svg_report):
    doc = json.loads((svg_report / "fits.json").read_text())
    assert doc["settings"] == {"bootstrap_n": BOOT, "seed": 3, "level": 0.95, "grid": "small"}
    fits = doc["fits"]
    assert {"Approach 2", "Approach 3", "L(N, D)", "law chinchilla"} <= set(fits)
    roles = assign_roles(load_source(TABLE).table)
    iso = roles.chinchilla
    fresh = {"Approach 3": (chinchilla.fit_approach3, iso, {"grid": "small"}),
             "L(N, D)": (kaplan.fit_L_ND, roles.all, {})}
    for key, (fn, df, kw) in fresh.items():
        entry = fits[key]
        fit = bootstrap(fn, df, n=BOOT, seed=3, level=0.95, **kw)
        assert entry["name"] == fit.name and entry["level"] == 0.95
        assert entry["params"] == pytest.approx({k: float(v) for k, v in fit.params.items()}, rel=1e-12)
        assert set(entry["intervals"]) == set(fit.intervals) and fit.intervals
        for name, (lo, hi) in fit.intervals.items():
            assert entry["intervals"][name] == pytest.approx([lo, hi], rel=1e-12)
        assert entry["flags"] == list(fit.flags)
        # the data selection: which runs, and the numbers the fit saw
        assert entry["data"]["run_ids"] == df["run_id"].tolist()
        assert entry["data"]["columns"] == list(fit.data.columns)
        np.testing.assert_allclose(np.array(entry["data"]["rows"], float), fit.data.to_numpy(float), rtol=1e-13)
    assert fits["Approach 2"]["data"]["run_ids"] == iso["run_id"].tolist()
    assert not [p for p in svg_report.iterdir() if p.name.startswith(".")]  # written atomically: no temp files left


def test_fits_json_has_no_nan_or_infinity():
    from scalinglaws._context import Context, Progress
    from scalinglaws.report import fits_document
    from scalinglaws.result import FitResult

    src = load_source(TABLE)
    fit = FitResult(name="L(N)", params={"N_c": float("inf"), "alpha_N": 1e-3}, predict=None,
                    intervals={"alpha_N": (float("nan"), 0.1)}, objective=float("nan"))
    ctx = Context(source=src, roles=assign_roles(src.table), isoflop=src.table, curves=None, out=Path("."),
                  bootstrap_n=0, seed=0, level=0.95, grid="small", progress=Progress(False, 1))
    ctx.keep("L(N)", fit, src.table)
    text = json.dumps(fits_document(ctx, "T"), allow_nan=False)  # raises on NaN/Infinity
    entry = json.loads(text)["fits"]["L(N)"]
    assert entry["params"] == {"N_c": None, "alpha_N": 1e-3} and entry["intervals"]["alpha_N"] == [None, 0.1]
