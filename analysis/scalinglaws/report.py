"""A markdown + HTML report of a sweep: every fit the data supports, a backtest, figures, comparison with the papers.

The report is `SECTIONS`, a list of (title, section function) pairs run in order (`_sections`; what a section
function receives and may raise is in `_context`). `build_report(source, out_dir, ...)` takes a table
(.csv/.parquet path or DataFrame) or a scalinglab runs directory, and writes report.md, report.html
(self-contained, figures referenced by relative path), the figures (PNG, SVG or PDF) and fits.json (every fit:
law, parameters, intervals, the runs and numbers it was fitted to; `fits_document`) into out_dir, each file
atomically. A fit the data cannot support gets a section saying why.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from . import _sections, _sections_kaplan, _sections_laws, _sections_tune
from ._context import NOT_IDENTIFIED_TITLE, Context, NotApplicable, Progress, Section
from ._files import check_file_name, check_out_dir, replaced_together, write_text
from ._format import fmt
from .errors import InputError
from .identify import not_identified
from .plots import FORMATS
from .roles import assign_roles
from .source import load_source

WSD_TITLE = "WSD: many token budgets from one run"  # only when the input has WSD cooldown runs
TUNE_TITLE = "Learning-rate tuning"  # only when the input has runs of a tuning sweep
ABLATION_TITLE = "Ablation: tuned LR law vs another LR rule"  # only with an ablation sweep (plan.role: ablation)
SECTIONS = [
    ("Data", _sections.data),
    (TUNE_TITLE, _sections_tune.lr_tuning),
    ("Chinchilla Approach 1: envelope of training curves", _sections.approach1),
    ("Chinchilla Approach 2: isoFLOP profiles", _sections_laws.robust_approach2),
    ("Run-to-run noise (seeds)", _sections_laws.seed_noise),
    (ABLATION_TITLE, _sections_tune.lr_ablation),
    ("Chinchilla Approach 3: parametric fit", _sections.approach3),
    ("Compute-optimal frontier", _sections.frontier_lines),
    ("Kaplan laws", _sections.kaplan_laws),
    ("Critical batch size", _sections_kaplan.critical_batch),
    ("Kaplan L(N, S_min) and the compute-efficient frontier", _sections_kaplan.kaplan_ns),
    ("Generalization to other distributions", _sections_kaplan.generalization),
    ("Backtest: predicting the largest budget", _sections.backtest_largest),
    ("Laws by held-out error", _sections_laws.law_selection),
    ("Fitted vs published exponents", _sections.comparison),
    (NOT_IDENTIFIED_TITLE, _sections_laws.not_identified),
    ("Counting conventions: parameters and FLOPs", _sections.counting_conventions),
    (WSD_TITLE, _sections.wsd_savings),
    ("Targets", _sections.targets),
]
FITS_JSON = "fits.json"  # written next to the report: every fit of ctx.fits (fits_document)
SECTION_TITLES = tuple(title for title, _ in SECTIONS
                       if title not in (WSD_TITLE, TUNE_TITLE, ABLATION_TITLE))  # the sections every report has


def _run_section(ctx: Context, title: str, build) -> Section | None:
    """One section; an InputError (the data cannot support it) becomes the section's explanation."""
    section = Section(title)
    ctx.progress.step(title)
    try:
        build(ctx, section)
    except NotApplicable:
        return None
    except InputError as e:
        section.text, section.tables, section.figures = [f"Not fitted: {e}"], [], []
    finally:
        ctx.progress.done()
    return section


# ---------------------------------------------------------------- rendering


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(fmt(v).replace("|", "\\|") for v in row) + " |")
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
            # a browser shows PNG and SVG images inline; a PDF figure is linked instead
            shown = f"[Figure (PDF): {caption}]({name})" if name.endswith(".pdf") else f"![{caption}]({name})"
            out += [shown, "", f"*{caption}*", ""]
    return "\n".join(out)


HTML_STYLE = ("body{font-family:sans-serif;max-width:960px;margin:2em auto;line-height:1.4}"
              "table{border-collapse:collapse;margin:0.5em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 6px}"
              "th{background:#eee}img{max-width:100%}code{background:#f4f4f4;padding:0 2px}")


def render_html(title: str, sections: list[Section]) -> str:
    """The report as one HTML page: `render_markdown`'s text rendered by markdown-it-py (CommonMark + tables).

    Raw HTML in the text is escaped, not passed through (a run id or a reason is shown as written).
    """
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(render_markdown(title, sections))
    return "\n".join(["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
                      f"<style>{HTML_STYLE}</style></head><body>", body, "</body></html>"])


def _finite(value):
    """`value` with every non-finite float replaced by None (JSON has no inf/nan: a scale beyond the float range,
    or an interval that could not be computed, is null; the fit's flags say why)."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fits_document(ctx: Context, title: str) -> dict:
    """fits.json: the report's settings and, per fit key, what `FitResult.to_dict` gives (name, params,
    intervals, level, objective, flags, n_points), the reasons it is not identified, and its data selection:
    the ids of the runs it was fitted to (when the input has run ids) and the numbers the fit saw
    (columns + rows of FitResult.data)."""
    from . import __version__

    fits = {}
    for key, fit in ctx.fits.items():
        rows = ctx.selections.get(key)
        run_ids = (pd.unique(rows["run_id"].astype(str)).tolist() if rows is not None and "run_id" in rows
                   else None)
        data = fit.data.reset_index(drop=True)
        fits[key] = {"key": key, **fit.to_dict(),
                     "not_identified": [{"problem": p, "fix": f} for p, f in not_identified(fit)],
                     "data": {"run_ids": run_ids, "columns": [str(c) for c in data.columns],
                              "rows": json.loads(data.to_json(orient="values", double_precision=15))}}
    return _finite({"title": title, "source": str(ctx.source.where), "scalinglaws": __version__,
                    "settings": {"bootstrap_n": ctx.bootstrap_n, "seed": ctx.seed, "level": ctx.level,
                                 "grid": ctx.grid},
                    "fits": fits})


def build_report(source, out_dir, bootstrap_n: int = 1000, seed: int = 0, level: float = 0.95,
                 grid: str = "chinchilla", columns: dict | None = None, progress: bool = True,
                 title: str = "Scaling-law report", name: str = "report", commentary=None,
                 fig_format: str = "png", jobs: int = 1) -> Path:
    """Fit everything the data supports and write <name>.md, <name>.html, figures and fits.json into out_dir.

    Parameters
    ----------
    source : str, Path or DataFrame
        A .csv/.parquet table, a DataFrame, or a scalinglab runs directory (`source.load_source`).
    out_dir : str or Path
        Where the report and its figures go (created; nothing is written before the input is validated).
    bootstrap_n : int
        Bootstrap resamples per fit for the intervals (0: none).
    seed, level : int, float
        Bootstrap seed and interval coverage.
    grid : {"chinchilla", "small"}
        Approach 3's grid of starts.
    columns : dict, optional
        Canonical name -> column of the table (`table.read_table`).
    progress : bool
        Show a progress bar.
    title, name : str
        The report's heading, and its file name without .md/.html.
    commentary : str or Path, optional
        A markdown file whose paragraphs become a final "Commentary" section (a person's reading of the numbers).
    fig_format : {"png", "svg", "pdf"}
        The figures' file format (`plots.FORMATS`; PNG at `plots.FIGURE_DPI` dpi). PDF figures are linked from
        the report rather than shown inline.
    jobs : int
        Processes for the bootstrap refits; the report is the same for any number (every draw is made first).

    Returns
    -------
    Path
        The markdown file.
    """
    if int(bootstrap_n) < 0:
        raise InputError("bootstrap_n", f"must be >= 0, got {bootstrap_n}", "pass 0 to skip intervals, or e.g. 1000")
    if int(jobs) < 1:
        raise InputError("jobs", f"must be >= 1, got {jobs}", "pass 1 (one process) or the number of CPU cores")
    if fig_format not in FORMATS:
        raise InputError("format", f"unknown figure format {fig_format!r}", f"use one of {', '.join(FORMATS)}")
    check_file_name(name, "name")  # <name>.md stays in out_dir
    check_out_dir(out_dir, "out_dir")
    src = load_source(source, columns, skip_damaged=True)  # damaged runs are listed, not fitted
    notes = None
    if commentary is not None:
        path = Path(commentary)
        if not path.is_file():
            raise InputError(str(path), "commentary file not found", "pass an existing markdown file, or leave it out")
        notes = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    final = Path(out_dir)
    texts = (FITS_JSON, f"{name}.md", f"{name}.html")
    protect = [Path(source)] if isinstance(source, (str, Path)) else []
    with replaced_together(final, owned_by=texts[1:], protect=protect, last=texts) as out:  # all files at once
        _write_report(src, out, notes, title, name, bootstrap_n, seed, level, grid, progress, fig_format,
                      int(jobs))
    return final / f"{name}.md"


def _write_report(src, out: Path, notes, title, name, bootstrap_n, seed, level, grid, progress, fig_format,
                  jobs: int):
    """Every section, its figures, fits.json and the text of the report, into `out`."""
    roles = assign_roles(src.table)
    curves = src.curves
    if curves is not None and "run_id" in roles.chinchilla:
        curves = curves[curves["run_id"].isin(roles.chinchilla["run_id"])]
    sections = []
    with Progress(progress, total=len(SECTIONS)) as bar:
        ctx = Context(source=src, roles=roles, isoflop=roles.chinchilla, curves=curves, out=out,
                      bootstrap_n=int(bootstrap_n), seed=seed, level=level, grid=grid, progress=bar,
                      fig_format=fig_format, jobs=jobs)
        for section_title, build in SECTIONS:
            section = _run_section(ctx, section_title, build)
            if section is not None:
                sections.append(section)
    if notes:
        sections.append(Section("Commentary", text=notes))
    write_text(out / FITS_JSON, json.dumps(fits_document(ctx, title), indent=1, allow_nan=False) + "\n")
    write_text(out / f"{name}.md", render_markdown(title, sections))
    write_text(out / f"{name}.html", render_html(title, sections))
