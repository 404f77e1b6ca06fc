"""What `scalinglaws report` writes besides report.md: figures in the chosen format."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from scalinglaws.cli import main

TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "analysis" / "sweep.csv"
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "svg": b"<svg", "pdf": b"%PDF-"}


@pytest.fixture(scope="module")
def svg_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("svg")
    assert main(["report", str(TABLE), "--out", str(out), "--bootstrap", "0", "--grid", "small", "--quiet",
                 "--format", "svg"]) == 0
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
