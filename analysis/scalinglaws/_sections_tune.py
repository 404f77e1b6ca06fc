"""The report's learning-rate sections (see `_context` for what a section receives).

- `lr_tuning`: for the runs of a tuning sweep (plan.kind: tune), LR_opt per size from a parabola in ln LR and the
  power law LR_opt(N) fitted to them (lr_tuning.py; Porian et al. 2024, arXiv:2406.19146), saved as lr_law.json
  beside the report for `train.lr_rule=tuned`.
- `lr_ablation`: an isoFLOP sweep labelled `plan.role: ablation` (the same plan under another LR rule) against the
  report's isoFLOP runs at the same budgets: the robust Approach 2 exponent a under each (Porian et al. 2024 sec 4
  attribute much of the Kaplan-Chinchilla gap to tuning).
"""
from __future__ import annotations

import pandas as pd

from . import plots
from ._context import Context, NotApplicable, Section
from ._format import fmt
from .errors import InputError
from .identify import not_identified
from .isoflop import fit_approach2_robust
from .lr_tuning import fit_lr_law, lr_optima
from .table import fit_table

LR_LAW_FILE = "lr_law.json"


def lr_tuning(ctx: Context, s: Section) -> None:
    runs = ctx.source.tune_runs
    if runs is None or runs.empty:
        raise NotApplicable
    ctx.progress.step("LR_opt per size")
    optima = lr_optima(runs)
    law = fit_lr_law(optima, n_boot=max(ctx.bootstrap_n, 200), seed=ctx.seed, level=ctx.level,
                     source=ctx.source.where)
    law.save(ctx.out / LR_LAW_FILE)
    diverged = int((runs["loss"] == float("inf")).sum())
    s.text.append(f"{len(runs)} runs of a tuning sweep ({diverged} diverged), {len(optima)} sizes. Per size, LR_opt "
                  "is the vertex of a parabola in ln LR through the best LR and up to two neighbours on each side "
                  "(Porian et al. 2024 sec 3.3); a size whose best LR is the grid's edge keeps that LR, flagged, and "
                  "is left out of the law when two or more others remain.")
    iv = law.interval.get("exponent")
    s.text.append(law.formula
                  + (f" ({law.level:.0%} interval of the exponent [{iv[0]:.3f}, {iv[1]:.3f}], bootstrap over sizes)"
                     if iv else "") + f", N counted as {law.n_column}. Saved as `{LR_LAW_FILE}`: train with it "
                  f"through `train.lr_rule=tuned train.lr_law={LR_LAW_FILE}`.")
    s.tables.append(("LR_opt per size", pd.DataFrame([
        {"N": o.N, "LRs tried": len(o.lrs), "best grid LR": o.lrs[min(range(len(o.losses)), key=lambda i: o.losses[i])],
         "LR_opt": o.lr_opt, "loss at LR_opt": o.loss_opt, "law LR": float(law.lr(o.N)), "flag": o.flag or "-"}
        for o in optima])))
    ctx.figure(s, plots.lr_curves(optima, law), "lr_tuning.png",
               "Left: final loss vs peak LR per size (stars: LR_opt). Right: LR_opt vs N and the fitted law.")


def _rule(runs: pd.DataFrame) -> str:
    rules = sorted(runs["lr_rule"].dropna().unique()) if "lr_rule" in runs else []
    return ", ".join(f"lr_rule {r}" for r in rules) or "LR rule not recorded"


def lr_ablation(ctx: Context, s: Section) -> None:
    table = ctx.source.table
    if "role" not in table or not table["role"].eq("ablation").any():
        raise NotApplicable
    ablation = table[table["role"].eq("ablation")]
    budgets = sorted(ablation["budget"].dropna().unique())
    main = ctx.isoflop[ctx.isoflop["budget"].isin(budgets)] if "budget" in ctx.isoflop else ctx.isoflop.iloc[0:0]
    n = max(ctx.bootstrap_n, 200)
    rows = []
    for label, runs in (("the report's isoFLOP runs", main), ("the ablation sweep", ablation)):
        row = {"runs": label, "LR rule": _rule(runs), "budgets": runs["budget"].nunique() if len(runs) else 0,
               "n runs": len(runs)}
        try:
            fit = fit_table(fit_approach2_robust, runs, n_resamples=n, seed=ctx.seed,
                            level=ctx.level)
            iv, problems = fit.intervals.get("a"), not_identified(fit)
            if problems:  # listed under 'Not identified, and why', not printed as a result
                row.update({"a": "not identified", f"{ctx.level:.0%} interval": "-", "flags": problems[0][0]})
            else:
                row.update({"a": fit.params["a"], f"{ctx.level:.0%} interval": f"[{iv[0]:.3f}, {iv[1]:.3f}]"
                            if iv else "-", "flags": "; ".join(fit.flags) or "-"})
            ctx.fits[f"Approach 2 ({label})"] = fit
        except InputError as e:
            row.update({"a": float("nan"), f"{ctx.level:.0%} interval": "-", "flags": f"not fitted: {e}"})
        rows.append(row)
    s.text.append(f"The same isoFLOP plan at {len(budgets)} budgets ({', '.join(fmt(b) for b in budgets)} FLOPs) under "
                  "two LR rules; robust Approach 2 (as above) on each. Porian et al. 2024 (sec 4) find that tuning "
                  "the LR (with batch and beta2) per size moves a towards Chinchilla's ~0.5 at small scale.")
    s.tables.append(("N_opt ~ C^a under each LR rule", pd.DataFrame(rows)))
