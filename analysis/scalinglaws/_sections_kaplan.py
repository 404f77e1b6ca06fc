"""Report sections for the rest of Kaplan et al. 2020 (arXiv:2001.08361); see `_context` for what a section gets.

- `critical_batch`: B_crit(L) measured from a batch-size sweep (sec 5.1, eq 5.1-5.3; critical_batch.py), with
  Kaplan's B* = 2e8 tokens and alpha_B = 0.21 beside it, and the gradient noise scale recorded during training
  (McCandlish et al. 2018, arXiv:1812.06162). The fit is also written as bcrit.json for `scalinglaws bcrit --law`.
- `kaplan_ns`: L(N, S_min) (eq 1.6) on the learning curves, with S_min from that B_crit (or the published one, said
  so), and the compute-efficient frontier N_opt ~ C_min^(alpha_C_min/alpha_N) it implies (eq 1.7-1.8;
  kaplan_frontier.py), under non-embedding N (as Kaplan counts) and under total N.
- `generalization`: loss on each data source against the training loss across sizes (sec 3.2.2, Figure 8;
  generalization.py).

Each says in one line what the input lacks when it cannot be made. `KAPLAN_EXPONENTS` are the rows these
sections add to (or fill in) the report's "Fitted vs published" table.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import _plots_kaplan as kplots
from ._context import Context, Section, flags_text, holds
from ._format import fmt
from .critical_batch import ALPHA_B, B_STAR, MIN_BATCH_SIZES, batch_size_sweeps, fit_critical_batch
from .errors import InputError
from .generalization import SOURCE_PREFIX, fit_generalization
from .identify import not_identified
from .kaplan_frontier import N_COLUMNS, PUBLISHED_FRONTIER_EXPONENT, fit_L_NS_curves, frontier_point, kaplan_frontier
from .laws import save_B_crit

BCRIT_FILE = "bcrit.json"
# (label, fit key, parameter, published value, source); a label already in _sections.PUBLISHED_EXPONENTS is
# replaced there, the others are appended.
KAPLAN_EXPONENTS = [
    ("N_opt ~ C^a, Kaplan", "Kaplan frontier", "a", PUBLISHED_FRONTIER_EXPONENT, "Kaplan 2020 eq 1.7 (non-embedding N)"),
    ("N_opt ~ C^a, Kaplan, total N", "Kaplan frontier, total N", "a", PUBLISHED_FRONTIER_EXPONENT,
     "Kaplan 2020 eq 1.7 (counts non-embedding N)"),
    ("Kaplan eq 1.6: alpha_S", "L(N, S_min)", "alpha_S", 0.76, "Kaplan 2020 eq 1.6"),
    ("Kaplan B_crit(L): alpha_B", "B_crit(L)", "alpha_B", ALPHA_B, "Kaplan 2020 eq 5.3"),
]
NEEDS_SWEEP = (f"Needs the learning curves of one model shape trained at {MIN_BATCH_SIZES} or more batch sizes (a "
               "batch-size sweep, plan kind `batch_size`)")


def _interval(fit, name, digits=3) -> str:
    iv = fit.intervals.get(name)
    return f"[{fmt(iv[0], digits)}, {fmt(iv[1], digits)}]" if iv else "-"


def _inputs(ctx: Context):
    """(curves of the fitted runs or None, runs table with n_params) for the sections of this module."""
    runs = ctx.roles.all
    if "n_params" not in runs and "N" in runs:
        runs = runs.assign(n_params=runs["N"])
    curves = ctx.source.curves
    if curves is not None and "run_id" in runs:
        curves = curves[curves["run_id"].isin(runs["run_id"])]
    return (curves if curves is not None and len(curves) else None), runs


def _has_noise_scale(curves) -> bool:
    return curves is not None and "grad_noise_scale" in curves and bool(curves["grad_noise_scale"].notna().any())


def critical_batch(ctx: Context, s: Section) -> None:
    """B_crit(L) from the batch-size sweeps, Kaplan's values beside it, and the gradient noise scale."""
    curves, runs = _inputs(ctx)
    published = (B_STAR, ALPHA_B)
    noise_laws = {}
    if curves is None or "batch_size" not in runs or "n_ctx" not in runs or "run_id" not in runs:
        s.text.append(f"{NEEDS_SWEEP}; this input has no learning curves with batch sizes.")
        return
    labels = batch_size_sweeps(runs)
    if not labels.notna().any():
        s.text.append(f"{NEEDS_SWEEP}; this input has none.")
    else:
        ctx.progress.step("critical batch size")
        try:
            fit = fit_critical_batch(curves, runs, n_boot=ctx.bootstrap_n, seed=ctx.seed, level=ctx.level)
        except InputError as e:
            s.text.append(f"B_crit(L) could not be measured: {e}")
            fit = None
        if fit is not None:
            ctx.keep("B_crit(L)", fit, runs[labels.notna()])
            _critical_batch_text(ctx, s, fit, runs, labels, published, curves)
            if not not_identified(fit):
                L = fit.extra["points"]["L"]
                noise_laws[f"fit: B* = {fit.params['B_star']:.3g}, alpha_B = {fit.params['alpha_B']:.3f} (over the "
                           "losses measured)"] = (fit.params["B_star"], fit.params["alpha_B"], (L.min(), L.max()))
    if _has_noise_scale(curves):
        s.text.append("The gradient noise scale B_simple = tr(Sigma) / |G|^2 (tokens; McCandlish et al. 2018, "
                      "App. A), recorded at the eval points of each run: McCandlish et al. predict B_crit ~ B_noise, "
                      "of which B_simple is the simpler estimate.")
        ctx.figure(s, kplots.noise_scale(curves, runs, noise_laws, published), "noise_scale.png",
                   "Gradient noise scale against the validation loss, one line per run, with B_crit(L).")


def _noise_at(curves: pd.DataFrame, steps: pd.DataFrame, points: pd.DataFrame) -> pd.Series:
    """Per measured point: the median over its sweep's runs of grad_noise_scale at each run's first eval point
    whose val_loss is at or below the point's loss (NaN where no run recorded one)."""
    out = []
    for r in points.itertuples():
        values = []
        for run_id in steps.loc[(steps["sweep"] == r.sweep) & np.isclose(steps["L"], r.L), "run_id"].unique():
            g = curves[curves["run_id"] == run_id].sort_values("step")
            hit = g.loc[g["val_loss"].le(r.L) & g["grad_noise_scale"].gt(0), "grad_noise_scale"]
            if len(hit):
                values.append(float(hit.iloc[0]))
        out.append(float(np.median(values)) if values else np.nan)
    return pd.Series(out, index=points.index)


def _critical_batch_text(ctx: Context, s: Section, fit, runs, labels, published, curves) -> None:
    points = fit.extra["points"]
    held = points[points["flags"] == ""]
    B = (pd.to_numeric(runs["batch_size"], errors="coerce") * pd.to_numeric(runs["n_ctx"], errors="coerce"))[labels.notna()]
    s.text.append(f"Batch-size sweeps: {', '.join(fit.extra['sweeps'])} ({int(labels.notna().sum())} runs, "
                  f"{fmt(float(B.min()))} to {fmt(float(B.max()))} tokens per step). At {len(points)} target "
                  f"losses that every batch size reaches, the steps S and tokens E = B S each batch size needed "
                  "(the first crossing of the running minimum of its learning curve, interpolated) were fitted "
                  "with (S/S_min - 1)(E/E_min - 1) = 1, giving B_crit = E_min / S_min (Kaplan et al. 2020, eq "
                  f"5.1-5.2); {len(held)} of the {len(points)} fits hold"
                  + (" (the others are flagged in the table and left out below)." if len(held) < len(points) else "."))
    if holds(ctx, s, "B_crit(L)"):
        s.text.append(f"B_crit(L) = B* / L^(1/alpha_B) (eq 5.3) fitted to them: B* = {fmt(fit.params['B_star'])} "
                      f"tokens {_interval(fit, 'B_star')}, alpha_B = {fit.params['alpha_B']:.3f} "
                      f"{_interval(fit, 'alpha_B')}. Kaplan et al. 2020 found B* = {published[0]:.0e} tokens and "
                      f"alpha_B = {published[1]} on their (larger) models and data.")
        s.text.append(f"Written to {BCRIT_FILE}: `scalinglaws bcrit --loss L --law {BCRIT_FILE}` uses it.")
        save_B_crit(fit, ctx.out / BCRIT_FILE)
        s.tables.append(("B_crit(L): fitted vs Kaplan 2020", pd.DataFrame([
            {"parameter": "B* (tokens)", "fitted": fit.params["B_star"],
             f"{fit.level:.0%} interval": _interval(fit, "B_star"), "Kaplan 2020 eq 5.3": published[0]},
            {"parameter": "alpha_B", "fitted": fit.params["alpha_B"],
             f"{fit.level:.0%} interval": _interval(fit, "alpha_B"), "Kaplan 2020 eq 5.3": published[1]}])))
    s.text += flags_text(fit)
    iv = fit.extra.get("point_intervals")
    table = points.assign(B_crit_interval=[f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in iv.to_numpy()]
                          if iv is not None else "-")
    columns = ["sweep", "L", "S_min", "E_min", "B_crit", "B_crit_interval", "batch_sizes", "flags"]
    if _has_noise_scale(curves):
        table["B_simple"] = _noise_at(curves, fit.extra["steps"], points)
        columns.insert(6, "B_simple")
        ratio = (table["B_simple"] / table["B_crit"])[points["flags"] == ""].dropna()
        if len(ratio):
            s.text.append(f"At the same losses the gradient noise scale (B_simple, median over each sweep's runs) "
                          f"is {ratio.median():.3g} times the measured B_crit (median over {len(ratio)} points; "
                          f"range {ratio.min():.3g}-{ratio.max():.3g}).")
    table = table[columns]
    s.tables.append(("Measured B_crit at each target loss (eq 5.1; B_crit in tokens)",
                     table.rename(columns={"B_crit_interval": f"{fit.level:.0%} interval"}).replace({"flags": {"": "-"}})))
    ctx.figure(s, kplots.bcrit_vs_loss(fit, published), "bcrit.png",
               "Measured B_crit(L) with bootstrap intervals, the fitted B* / L^(1/alpha_B), and Kaplan's law.")
    ctx.figure(s, kplots.steps_vs_tokens(fit), "bcrit_steps_tokens.png",
               "Steps and tokens each batch size needed to reach each target loss, and the fitted eq 5.1.")


def _ns_row(n_col: str, bcrit_from: str, fit, frontier) -> dict:
    """One row of the L(N, S_min) table: the eq 1.6 fit and its frontier, estimate [interval]."""
    return {"N counted as": N_COLUMNS[n_col], "B_crit(L) from": bcrit_from,
            "runs": int(fit.data["run_id"].nunique()), "sizes": int(fit.data["N"].nunique()), "points": len(fit.data),
            "alpha_N": f"{fit.params['alpha_N']:.4f} {_interval(fit, 'alpha_N', 4)}", "N_c": fmt(fit.params["N_c"]),
            "alpha_S": f"{fit.params['alpha_S']:.4f} {_interval(fit, 'alpha_S', 4)}", "S_c": fmt(fit.params["S_c"]),
            "alpha_B": f"{fit.extra['alpha_B']:.3f}",
            "alpha_C_min": f"{frontier.params['alpha_C_min']:.4f} {_interval(frontier, 'alpha_C_min', 4)}",
            "a (N_opt ~ C_min^a)": f"{frontier.params['a']:.3f} {_interval(frontier, 'a')}",
            "flags": "; ".join(fit.flags) or "-"}


def kaplan_ns(ctx: Context, s: Section) -> None:
    """L(N, S_min) on the learning curves and the compute-efficient frontier, non-embedding and total N."""
    curves, runs = _inputs(ctx)
    if curves is None or not {"batch_size", "n_ctx", "run_id"} <= set(runs.columns):
        s.text.append("Needs the learning curves of 2 or more model sizes with their batch sizes (batch_size, "
                      "n_ctx: a runs directory); this input has none.")
        return
    measured = ctx.fits.get("B_crit(L)")
    bcrit = None if measured is None or not_identified(measured) else measured
    how = (f"B_crit(L) fitted above (B* = {fmt(bcrit.params['B_star'])} tokens, alpha_B = "
           f"{bcrit.params['alpha_B']:.3f}; bootstrap draws paired with it)" if bcrit is not None else
           f"Kaplan's published B_crit(L) (B* = {B_STAR:.0e} tokens, alpha_B = {ALPHA_B}): "
           + ("the B_crit(L) fitted above is not identified" if measured is not None else
              "this input has no batch-size sweep whose fit holds"))
    # where the batch-size sweep's B_crit(L) is not identified, its point fit gives a second row per N count: how
    # much the frontier depends on which B_crit(L) is used (not a result: its rows feed no other table)
    sensitivity = measured if bcrit is None and measured is not None else None
    rows = []
    for n_col, suffix in (("n_params_nonembed", ""), ("n_params", ", total N")):
        if n_col not in runs:
            continue
        ctx.progress.step(f"L(N, S_min), {N_COLUMNS[n_col]}")
        try:
            fit = fit_L_NS_curves(curves, runs, n_col=n_col, B_crit=bcrit, n_boot=ctx.bootstrap_n, seed=ctx.seed,
                                  level=ctx.level)
        except InputError as e:
            s.text.append(f"L(N, S_min) with {N_COLUMNS[n_col]} could not be fitted: {e}")
            continue
        key = f"L(N, S_min){suffix}"
        used = runs[runs["run_id"].isin(fit.data["run_id"])]
        ctx.keep(key, fit, used)
        try:  # kept when not identified too, so that the comparison table says so
            frontier = ctx.keep(f"Kaplan frontier{suffix}", kaplan_frontier(fit), used)
        except InputError:
            frontier = None
        if not holds(ctx, s, key) or frontier is None:
            continue
        rows.append(_ns_row(n_col, "fitted above" if bcrit is not None else "Kaplan 2020", fit, frontier))
        if sensitivity is not None:
            try:
                alt = fit_L_NS_curves(curves, runs, n_col=n_col, B_crit=sensitivity)  # point estimates only
                rows.append(_ns_row(n_col, "this input's point fit (not identified)", alt, kaplan_frontier(alt)))
            except InputError as e:
                s.text.append(f"L(N, S_min) with {N_COLUMNS[n_col]} and this input's B_crit(L) point fit could "
                              f"not be fitted: {e}")
        if not suffix:
            ctx.figure(s, kplots.loss_vs_s_min(fit), "loss_vs_s_min.png",
                       "Validation loss against S_min at every eval point, with L(N, S_min) at each size.")
    s.text.insert(0, "L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S (Kaplan et al. 2020, eq 1.6) fitted by "
                  "least squares on log L to every eval point after the LR warmup, with S_min = S / (1 + "
                  f"B_crit(L)/B) (eq 5.4) from {how}. Minimising L at fixed C_min = 6 N B_crit S_min gives "
                  "N_opt ~ C_min^a with a = alpha_C_min / alpha_N, alpha_C_min = 1 / (1/alpha_S + 1/alpha_B + "
                  "1/alpha_N) (eq 1.8, sec 6.1). Intervals: bootstrap over whole learning curves.")
    if rows:
        a_published = frontier_point({"N_c": 1.0, "S_c": 1.0, "B_star": 1.0, "alpha_N": 0.076, "alpha_S": 0.76,
                                      "alpha_B": ALPHA_B}, 1.0)["a"]
        s.text.append(f"Kaplan et al. 2020 report N_opt ~ C_min^{PUBLISHED_FRONTIER_EXPONENT} (eq 1.7, fitted to "
                      f"their compute-efficient frontier); their exponents alpha_N = 0.076, alpha_S = 0.76, "
                      f"alpha_B = {ALPHA_B} give a = {a_published:.3f} in the formula above.")
        if sensitivity is not None and len(rows) > 1:
            s.text.append("The rows with B_crit(L) from this input's point fit use the batch-size sweep's own eq 5.3 "
                          f"point estimate (B* = {fmt(sensitivity.params['B_star'])} tokens, alpha_B = "
                          f"{sensitivity.params['alpha_B']:.3f}) instead, without intervals: not a result, since that "
                          "fit is not identified (see 'Not identified, and why'), but how far the frontier moves "
                          "with the B_crit(L) it assumes.")
        s.tables.append(("L(N, S_min) and the compute-efficient frontier (estimate [interval])", pd.DataFrame(rows)))


def generalization(ctx: Context, s: Section) -> None:
    """Loss on each data source against the training loss across model sizes (Kaplan Figure 8)."""
    runs = pd.concat([ctx.roles.all, ctx.roles.transfer]) if len(ctx.roles.transfer) else ctx.roles.all
    if not any(str(c).startswith(SOURCE_PREFIX) for c in runs.columns):
        s.text.append(f"Needs the validation loss per data source ({SOURCE_PREFIX}<source> columns of the run "
                      "summaries); this input has none.")
        return
    try:
        fits = fit_generalization(runs, n_boot=ctx.bootstrap_n, seed=ctx.seed, level=ctx.level)
    except InputError as e:
        s.text.append(f"Not measured: {e}")
        return
    s.text.append("Each run's final validation loss on every data source against its validation loss on the "
                  "training distribution (`loss`, which leaves a held-out source out), across model sizes; a line L_source = slope L_train + offset per "
                  "source, with bootstrap intervals over sizes. Kaplan et al. 2020 (sec 3.2.2, Figure 8) find the "
                  "loss on other distributions follows the training loss with a roughly constant offset (slope "
                  "about 1). A source the runs held out of training (holdout_source) measures transfer and is "
                  "fitted apart.")
    rows = []
    for (source, held), fit in sorted(fits.items()):
        rows.append({"source": source, "held out of training": "yes" if held else "no",
                     "runs": len(fit.extra["points"]), "sizes": fit.extra["sizes"],
                     "slope": f"{fit.params['slope']:.3f} {_interval(fit, 'slope')}",
                     "offset": f"{fit.params['offset']:.3f} {_interval(fit, 'offset')}",
                     "mean gap L_source - L_train": f"{fit.params['mean_gap']:.3f} {_interval(fit, 'mean_gap')}"})
    s.tables.append(("Loss per source vs training loss (estimate [interval], nats/token)", pd.DataFrame(rows)))
    ctx.figure(s, kplots.generalization(fits), "generalization.png",
               "Loss on each data source against the training-distribution loss; squares: held out of training.")
