"""build_report on the committed fixture table and on a runs directory made from the same generator."""
from __future__ import annotations

import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _synthetic_runs import KAPLAN_TRUE, SOURCE_OFFSETS, write_kaplan_runs

from scalinglaws import report
from scalinglaws._context import NOT_IDENTIFIED_TITLE
from scalinglaws.laws import load_B_crit
from scalinglaws.errors import InputError
from scalinglaws.report import SECTION_TITLES, build_report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "analysis"
TABLE = FIXTURES / "sweep.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _fixture_module():
    spec = importlib.util.spec_from_file_location("make_fixture", FIXTURES / "make_fixture.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_fixture_is_reproducible():
    mf = _fixture_module()
    committed = pd.read_csv(TABLE)
    fresh = mf.make_table()
    assert list(committed.columns) == list(fresh.columns)
    cols = ["n_params", "tokens", "loss"]
    pd.testing.assert_frame_equal(committed[cols].astype(float), fresh[cols].astype(float),
                                  rtol=1e-8)


def _figures(md: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)


@pytest.fixture(scope="module")
def runs_report(tmp_path_factory):
    mf = _fixture_module()
    runs = mf.write_runs_dir(tmp_path_factory.mktemp("runs"))
    out = tmp_path_factory.mktemp("report")
    return build_report(runs, out, bootstrap_n=8, seed=1, grid="small", progress=False)


def test_report_from_runs_dir_has_every_section_and_figure(runs_report):
    md = runs_report.read_text()
    headings = re.findall(r"^## (.+)$", md, flags=re.M)
    assert headings == list(SECTION_TITLES)
    assert "Not fitted" not in md  # the runs directory supports every fit, Approach 1 included
    figures = _figures(md)
    expected = {"training_curves.png", "isoflop.png", "residuals_approach3.png", "frontier.png", "loss_vs_N.png",
                "loss_vs_D.png", "loss_vs_C.png", "backtest.png"}
    assert set(figures) == expected
    for name in figures:
        data = (runs_report.parent / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    html = (runs_report.parent / "report.html").read_text()
    assert all(f'src="{name}"' in html for name in figures)  # relative references
    assert html.count("<h2>") == len(SECTION_TITLES)
    assert not [p for p in runs_report.parent.iterdir() if p.name.startswith(".")]  # no temp files left
    # the Kaplan sections say in one line what this input lacks (no batch sizes, no per-source losses)
    assert "this input has no learning curves with batch sizes" in _section(md, "Critical batch size")
    assert "(batch_size, n_ctx: a runs directory); this input has none" in _section(md, KAPLAN_TITLES[1])
    assert "columns of the run summaries); this input has none" in _section(md, KAPLAN_TITLES[2])
    assert "| N_opt ~ C^a, Kaplan | 0.73 | Kaplan 2020 eq 1.7 (non-embedding N) | not fitted | - |" in md
    assert not (runs_report.parent / "bcrit.json").exists()


class _Tags(HTMLParser):
    """Every start tag with its attributes, and the page's visible text."""

    def __init__(self):
        super().__init__()
        self.tags, self.text = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def test_report_html_renders_the_markdown(runs_report):
    md = runs_report.read_text()
    page = _Tags()
    page.feed((runs_report.parent / "report.html").read_text())
    tags = [t for t, _ in page.tags]
    text = "".join(page.text)
    # **caption** and `file` of the markdown are elements in the HTML, not raw markup
    assert md.count("**") >= 2 and "**" not in text
    assert tags.count("strong") == len(re.findall(r"\*\*[^*]+\*\*", md))
    assert "`" in md and "`" not in text and tags.count("code") == md.count("`") // 2
    # every markdown table is an HTML table with its header cells
    n_tables = len(re.findall(r"^\|---", md, flags=re.M))
    assert n_tables >= 5 and tags.count("table") == n_tables
    assert tags.count("th") == sum(line.count("|") - 1 for line in md.splitlines()
                                   if line.startswith("| ") and md.split(line, 1)[1].startswith("\n|---"))
    assert "| --- |" not in text and "|---" not in text
    images = [a for t, a in page.tags if t == "img"]
    assert [a["src"] for a in images] == _figures(md) and all(a["alt"] for a in images)
    assert tags.count("h2") == len(SECTION_TITLES)


def test_report_numbers(runs_report):
    md = runs_report.read_text()
    # exclusions are counted distinctly: 2 diverged, 1 failed in the fixture
    assert "Excluded runs: 3 (2 diverged, 1 failed)." in md
    # ... and listed one by one, marked so they cannot be mistaken for results
    listed = md.split("**Runs not fitted: DIVERGED and FAILED runs are never read as results**")[1].split("\n\n")[1]
    assert listed.count("| DIVERGED |") == 2 and listed.count("| FAILED |") == 1
    # the budget sampled only above its optimum carries no information about N_opt: refused, with the reason
    assert re.search(r"\| 2\.500e\+13 \| minimum at -0\.\d+ of the sampled log N range, more than 0\.5 of it beyond", md)
    # the fixture's true frontier exponent is 0.30 / 0.65 = 0.4615; Approach 2 and 3 find it
    a2 = float(re.search(r"N_opt ~ C\^([0-9]+\.[0-9]+) \(95% interval", md).group(1))
    a3 = float(re.search(r"frontier exponent a = beta/\(alpha\+beta\) = ([0-9]+\.[0-9]+)", md).group(1))
    assert a2 == pytest.approx(0.4615, abs=0.02) and a3 == pytest.approx(0.4615, abs=0.02)
    mape = float(re.search(r"MAPE ([0-9.]+)% on the held-out runs", md).group(1))
    assert 0 < mape < 2
    assert "| N_opt ~ C^a, Approach 2 | 0.49 |" in md and "| Kaplan L(N): alpha_N | 0.076 |" in md
    # counting conventions: non-embedding counting makes the exponent larger (Pearce & Song 2024)
    rows = dict(re.findall(r"\| (total N|non-embedding N) \| 6ND \| ([0-9.]+) \|", md))
    assert float(rows["non-embedding N"]) > float(rows["total N"]) + 0.05


def test_report_from_table_explains_missing_approach1(tmp_path):
    md = build_report(TABLE, tmp_path, bootstrap_n=0, grid="small", progress=False).read_text()
    assert re.findall(r"^## (.+)$", md, flags=re.M) == list(SECTION_TITLES)
    approach1 = md.split("## Chinchilla Approach 1")[1].split("## ")[0]
    assert "Not fitted" in approach1 and "runs directory" in approach1
    assert "training_curves.png" not in md and (tmp_path / "isoflop.png").stat().st_size > 5000


def test_report_sections_say_why_when_data_is_thin(tmp_path):
    table = pd.read_csv(TABLE)
    one_budget = table[table["budget"] == table["budget"].max()]  # 7 runs, a single budget
    md = build_report(one_budget, tmp_path, bootstrap_n=0, grid="small", progress=False).read_text()
    approach2 = md.split("## Chinchilla Approach 2")[1].split("## ")[0]
    assert "Not fitted" in approach2 and "budget" in approach2
    backtest = md.split("## Backtest")[1].split("## ")[0]
    assert "Not fitted" in backtest
    assert "## Chinchilla Approach 3" in md and "isoflop.png" not in md


def test_bootstrap_processes_do_not_change_the_report(tmp_path):
    """jobs=2 refits the same draws in two processes: every file is the same bytes as with one."""
    runs = _fixture_module().write_runs_dir(tmp_path / "runs")
    one, two = (build_report(runs, tmp_path / str(jobs), bootstrap_n=8, seed=1, grid="small", progress=False,
                             jobs=jobs).parent for jobs in (1, 2))
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir()) and "fits.json" in names
    for name in names:
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    with pytest.raises(InputError, match="jobs"):
        build_report(runs, tmp_path / "none", jobs=0, progress=False)
    assert not (tmp_path / "none").exists()


def test_report_rejects_bad_input_before_writing(tmp_path):
    table = pd.read_csv(TABLE)
    table.loc[3, "loss"] = float("nan")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="loss"):
        build_report(table, out, bootstrap_n=0, progress=False)
    assert not out.exists()


def test_commentary_file_becomes_the_last_section(tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("First reading of the fits.\n\nSecond paragraph: why a differs.\n", encoding="utf-8")
    md = build_report(TABLE, tmp_path / "out", bootstrap_n=0, grid="small", progress=False, name="REPORT",
                      commentary=notes).read_text()
    assert (tmp_path / "out" / "REPORT.html").exists()
    assert re.findall(r"^## (.+)$", md, flags=re.M)[-1] == "Commentary"
    tail = md.split("## Commentary")[1]
    assert "First reading of the fits." in tail and "Second paragraph: why a differs." in tail
    with pytest.raises(InputError, match="commentary"):
        build_report(TABLE, tmp_path / "none", bootstrap_n=0, progress=False, commentary=tmp_path / "missing.md")
    assert not (tmp_path / "none").exists()


KAPLAN_TITLES = ("Critical batch size", "Kaplan L(N, S_min) and the compute-efficient frontier",
                 "Generalization to other distributions")
TRUE_A = 1 / (KAPLAN_TRUE["alpha_N"] * (1 / KAPLAN_TRUE["alpha_N"] + 1 / KAPLAN_TRUE["alpha_S"]
                                        + 1 / KAPLAN_TRUE["alpha_B"]))


def _section(md: str, title: str) -> str:
    return md.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def kaplan_report(tmp_path_factory):
    """The report's Kaplan sections (and the comparison) on a batch-size sweep of 4 sizes x 3 batch sizes whose
    curves follow eq 1.6 with S = S_min (1 + B_crit(L)/B); the Chinchilla sections are left out (no budgets)."""
    root, _, _ = write_kaplan_runs(tmp_path_factory.mktemp("kaplan_runs"))
    out = tmp_path_factory.mktemp("kaplan_report")
    keep = {"Data", *KAPLAN_TITLES, "Fitted vs published exponents", NOT_IDENTIFIED_TITLE}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "SECTIONS", [entry for entry in report.SECTIONS if entry[0] in keep])
        md = build_report(root, out, bootstrap_n=30, seed=0, grid="small", progress=False).read_text()
    return md, out


def test_kaplan_sections_measure_what_the_curves_were_made_with(kaplan_report):
    md, out = kaplan_report
    assert re.findall(r"^## (.+)$", md, flags=re.M) == ["Data", *KAPLAN_TITLES, "Fitted vs published exponents",
                                                       NOT_IDENTIFIED_TITLE]
    assert "Not fitted" not in md and "0 fit(s)" not in md
    assert "12 runs of batch-size sweeps (one shape at several batch sizes) feed the critical" in _section(md, "Data")
    bcrit = _section(md, "Critical batch size")
    law = load_B_crit(out / "bcrit.json")  # written by the report, and what it prints
    assert f"alpha_B = {law.params['alpha_B']:.3f} [" in bcrit
    assert law.params["alpha_B"] == pytest.approx(KAPLAN_TRUE["alpha_B"], abs=0.015)
    assert np.log(law.params["B_star"]) == pytest.approx(np.log(KAPLAN_TRUE["B_star"]), abs=0.3)
    assert "| alpha_B | " in bcrit and "| 0.21 |" in bcrit  # Kaplan's value beside the fit
    # the fixture's noise scale is half the true B_crit(L)
    ratio = float(re.search(r"gradient noise scale \(B_simple, median over each sweep's runs\) is ([0-9.]+) times",
                            bcrit).group(1))
    assert ratio == pytest.approx(0.5, abs=0.1)
    frontier = _section(md, KAPLAN_TITLES[1])
    assert "from B_crit(L) fitted above" in frontier
    assert "point fit (not identified)" not in frontier  # sensitivity rows only where B_crit(L) is not identified
    a = float(re.search(r"\| non-embedding N \| fitted above \|(?: [^|]+ \|){9} ([0-9.]+) \[", frontier).group(1))
    assert a == pytest.approx(TRUE_A, abs=0.02)
    row = re.search(r"\| N_opt ~ C\^a, Kaplan \| 0\.73 \| [^|]+ \| ([0-9.]+) \| \[", md)
    assert row and float(row.group(1)) == pytest.approx(a, abs=1e-3)
    assert re.search(r"\| N_opt ~ C\^a, Kaplan, total N \| 0\.73 \| [^|]+ \| [0-9.]+ \|", md)
    transfer = _section(md, KAPLAN_TITLES[2])
    for source, offset in SOURCE_OFFSETS.items():
        held = "yes" if source == "bible" else "no"
        gap = float(re.search(rf"\| {source} \| {held} \| 12 \| 4 \|[^|]+\|[^|]+\| (-?[0-9.]+) \[",
                              transfer).group(1))
        assert gap == pytest.approx(offset, abs=0.01), source
    for name in ("bcrit.png", "bcrit_steps_tokens.png", "noise_scale.png", "loss_vs_s_min.png", "generalization.png"):
        assert f"]({name})" in md and (out / name).read_bytes().startswith(PNG_MAGIC), name


def test_a_sweep_far_below_B_crit_is_said_and_the_published_B_crit_used(tmp_path):
    # 64-192 tokens a step, B_crit 1e3-1e4 tokens: S ~ E_min / B everywhere, S_min not measurable
    root, _, _ = write_kaplan_runs(tmp_path / "runs", sizes=(1e5, 3e5), batch_sizes=(1, 2, 3))
    keep = {"Data", *KAPLAN_TITLES[:2], "Fitted vs published exponents", NOT_IDENTIFIED_TITLE}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(report, "SECTIONS", [entry for entry in report.SECTIONS if entry[0] in keep])
        md = build_report(root, tmp_path / "out", bootstrap_n=0, grid="small", progress=False).read_text()
    # 2 sizes cannot identify the N term of eq 1.6: no frontier is printed, the comparison says why
    assert "| N_opt ~ C^a, Kaplan | 0.73 | Kaplan 2020 eq 1.7 (non-embedding N) | not identified | - |" in md
    assert "| L(N, S_min) | 2 model sizes for the N term's 2 parameters (N_c, alpha_N) | train 3 or more sizes |" in md
    assert "a (N_opt ~ C_min^a)" not in _section(md, KAPLAN_TITLES[1])
    bcrit = _section(md, "Critical batch size")
    assert "B_crit(L) could not be measured" in bcrit and "do not bracket B_crit" in bcrit
    assert not (tmp_path / "out" / "bcrit.json").exists()
    assert "from Kaplan's published B_crit(L) (B* = 2e+08 tokens, alpha_B = 0.21)" in _section(md, KAPLAN_TITLES[1])
