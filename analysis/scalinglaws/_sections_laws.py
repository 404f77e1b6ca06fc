"""Report sections for the law registry and for identifiability (see `_context` for what a section receives).

- `robust_approach2`: Chinchilla Approach 2 with minima uncertainties (isoflop.fit_approach2_robust) as the
  result; the classic parabola fit alongside for comparison.
- `seed_noise`: the run-to-run noise of configs repeated with other seeds, per budget (noise.estimate_noise).
- `law_selection`: every law backtested below the cutoff, the winner, leave-one-budget-out CV, and the
  winner's headline prediction with an interval of parameter uncertainty + run-to-run noise (report_laws).
- `not_identified`: every fit of the report whose parameters the data do not identify (identify.not_identified),
  with the reason and the fix; such fits are not printed as results in their own sections (`holds`).
"""
from __future__ import annotations

import pandas as pd

from . import frontier, identify, plots
from ._context import NOT_IDENTIFIED_TITLE, Context, Section, flags_text, holds, params_table
from ._sections import APPROACH2_WINDOW
from .errors import InputError
from .isoflop import fit_approach2_robust
from .noise import estimate_noise, seed_groups
from .report_laws import law_selection as select_law
from .report_laws import not_identified_rows
from .table import fit_table



def robust_approach2(ctx: Context, s: Section) -> None:
    n = max(ctx.bootstrap_n, 200)
    fit = fit_table(fit_approach2_robust, ctx.isoflop, n_resamples=n, seed=ctx.seed,
                    level=ctx.level)
    ctx.keep("Approach 2", fit, ctx.isoflop)
    minima, noise = fit.extra["minima"], fit.extra["noise"]
    s.text.append("Per budget, a parabola in log N fitted by weighted least squares to all its sizes; each "
                  f"minimum's uncertainty from {n} resamples of the losses with the run-to-run noise "
                  f"({noise.describe() if noise else 'not estimable: budgets weighted equally'}); then "
                  "log N_opt = a log C + k by least squares weighted by 1/sigma^2 (method: isoflop.py, after "
                  "Hoffmann et al. 2022 Approach 2 and Porian et al. 2024). Budgets whose minimum sits near an "
                  "edge are kept, with little weight, instead of refused.")
    if holds(ctx, s, "Approach 2"):
        iv = fit.intervals.get("a")
        s.text.append(f"N_opt ~ C^{fit.params['a']:.3f}" + (f" ({ctx.level:.0%} interval [{iv[0]:.3f}, "
                                                              f"{iv[1]:.3f}])" if iv else "")
                      + f", D_opt ~ C^{fit.params['b']:.3f} over {len(minima)} budgets.")
        s.tables.append(("Parameters", params_table(fit, ["a", "b", "k_N", "k_D"])))
    try:
        classic = fit_table(frontier.fit_approach2, ctx.isoflop, window=APPROACH2_WINDOW)
        ctx.keep("Approach 2 (classic)", classic, ctx.isoflop)
        if identify.not_identified(fit) or identify.not_identified(classic):
            s.text.append("Classic Approach 2 (unweighted, refusing every budget whose vertex is outside its sizes): "
                          "not shown, as these data do not identify Approach 2.")
        else:
            s.text.append(f"Classic Approach 2 (unweighted, refusing every budget whose vertex is outside its sizes): "
                          f"a = {classic.params['a']:.3f} over {len(classic.extra['minima'])} budgets "
                          f"({len(classic.extra['refused'])} refused).")
    except InputError as e:
        s.text.append(f"Classic Approach 2: not fitted ({e}).")
    refused = fit.extra.get("refused", {})
    if refused:
        s.tables.append(("Budgets refused (no information about N_opt)",
                         pd.DataFrame({"budget (FLOPs)": list(refused), "reason": list(refused.values())})))
    s.text += [t for t in flags_text(fit) if "not identified" not in t]
    if not identify.not_identified(fit):  # the minima are the fit's own estimates
        s.tables.append(("Minimum of each budget (sigma_logN: uncertainty of log N_opt; weight: share in the fit)",
                         minima))
    ctx.figure(s, plots.isoflop_curves(fit), "isoflop.png",
               "Loss vs N per budget; stars mark the minima; refused budgets grey and dashed.")


def seed_noise(ctx: Context, s: Section) -> None:
    """Run-to-run noise of the isoFLOP runs: configs repeated with other seeds (noise.estimate_noise)."""
    iso = ctx.isoflop
    groups = seed_groups(iso)
    repeated = pd.Series(groups).duplicated(keep=False).to_numpy()
    if not repeated.any():
        s.text.append("No isoFLOP config (N, D) is trained with more than one seed, so the run-to-run noise is "
                      "not measured; the fits use their residual scatter instead. Add `plan.seeds: [0, 1]` to "
                      "measure it.")
        return
    ctx.noise = noise = estimate_noise(iso)
    s.text.append("Configs trained with several seeds (train.seed: other initial weights and data order, same N "
                  "and D): the pooled within-config std of log loss per budget, and the mean spread of the final "
                  f"loss between a config's seeds. Over all budgets: {noise.describe()}. The fits' intervals "
                  "resample whole seed groups and the prediction intervals add this noise.")
    frame = iso.assign(group=groups)[repeated]
    spread = frame.groupby("group").agg(C=("C", "first"), spread=("loss", lambda v: v.max() - v.min()))
    spread["budget"] = frontier.budget_groups(spread["C"].to_numpy(float))
    labels = frontier.budget_groups(iso["C"].to_numpy(float))
    table = noise.per_budget.copy()
    table.insert(0, "C", [float(iso["C"][labels == b].median()) for b in table["budget"]])
    table["mean spread (nats)"] = [float(spread.loc[spread["budget"] == b, "spread"].mean()) for b in table["budget"]]
    s.tables.append(("Seed-to-seed noise per budget (sigma: std of log loss of one run)",
                     table.drop(columns="budget").rename(columns={"configs": "configs repeated",
                                                                  "seeds": "runs"})))


def law_selection(ctx: Context, s: Section) -> None:
    ctx.progress.step("backtest of every law")
    sel = select_law(ctx.isoflop, grid=ctx.grid, n_boot=ctx.bootstrap_n, seed=ctx.seed, level=ctx.level)
    ctx.law_backtest = sel.backtest
    for name, fit in sel.all_runs.items():
        if not isinstance(fit, str):
            ctx.keep(f"law {name}", fit, ctx.isoflop)
    s.text += sel.text(ctx.level)
    s.tables.append(("Held-out error per law (|predicted - actual| / actual)", sel.scores_table()))
    if sel.winner is not None and identify.not_identified(sel.winner):
        s.text.append("The winner refitted on every run is not identified (see 'Not identified, and why'): its "
                      "parameters are not printed, and no headline prediction is made from it.")
    elif sel.winner is not None:
        s.tables.append((f"The winner ({sel.backtest.winner}) refitted on every run", params_table(sel.winner)))


def not_identified(ctx: Context, s: Section) -> None:
    rows = not_identified_rows(ctx.fits, ctx.law_backtest)
    if rows.empty:
        s.text.append("Every fit of this report is identified by its data: no exponent <= 0 or known only within "
                      "more than a factor 10, no parameter outside its grid of starts, no fit with fewer distinct "
                      "inputs than parameters, no bootstrap with more than 10% failed refits.")
        return
    s.text.append(f"{rows['fit'].nunique()} fit(s) are not identified by these data and are not printed as results "
                  f"(rules: identify.py); the table has one row per reason ({len(rows)}).")
    s.tables.append(("Fits not identified, why, and the fix", rows))
