"""The report's law-selection content: every law backtested, the winner's headline prediction, and the list of
fits the data do not identify. Pure functions returning text and tables; report.py lays them out.

Public API
- `law_selection(table, grid="chinchilla", n_boot=1000, seed=0, level=0.95) -> LawSelection`: backtest_laws on
  the table, then the winner (selection.WINNER_RULE) refitted on every run with `n_boot`
  bootstrap resamples of seed groups, and its headline prediction: one new run at C = HEADLINE_FACTOR x C_max
  and the N its law makes optimal, with a prediction interval of parameter uncertainty + run-to-run noise.
  Every law is also fitted on every run (no bootstrap) so `LawSelection.all_runs` can say which hold.
- `not_identified_rows(fits, backtest=None) -> DataFrame`: one row (fit, problem, fix) per reason a fit, or a law
  the backtest fitted below its cutoff, is not identified.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .errors import InputError
from .identify import not_identified
from .registry import LAWS, fit_law, optimal_N, predict_run, repeats_data
from .result import FitResult
from .selection import WINNER_RULE, LawBacktest, backtest_laws

__all__ = ["LawSelection", "law_selection", "not_identified_rows", "HEADLINE_FACTOR"]

HEADLINE_FACTOR = 4  # the headline predicts a run at 4x the largest budget


@dataclass(frozen=True)
class LawSelection:
    """The backtest, the winner refitted on every run, its headline prediction, and every law on every run."""

    backtest: LawBacktest
    winner: FitResult | None
    headline: dict | None
    all_runs: dict = field(default_factory=dict)  # law -> FitResult on every run (or an error string)

    def text(self, level: float) -> list[str]:
        bt = self.backtest
        out = [f"Every law of the registry (`scalinglaws laws`) fitted on the {bt.n_fit} runs with {bt.cutoff_rule}, "
               f"then used to predict the {bt.n_held} larger runs. A law whose fit is not identified (see 'Not "
               "identified, and why') cannot win."]
        if bt.scores["cv_mape"].notna().any():
            out.append("CV: leave-one-budget-out cross-validation, each budget predicted by the law fitted on the "
                       "others.")
        else:
            out.append("CV: not run (leave-one-budget-out needs >= 4 budgets).")
        if bt.winner is None:
            out.append("Winner: none (no law is identified on the runs below the cutoff); no headline prediction.")
            return out
        mape = float(bt.scores.set_index("law").loc[bt.winner, "mape"])
        out.append(f"Winner: {bt.winner} (held-out MAPE {mape:.2f}%). The winner is, {WINNER_RULE}.")
        h = self.headline
        if h is not None:
            out.append(f"Headline prediction, by the winner ({bt.winner}, refitted on all runs): a run at C = "
                       f"{h['C']:.3g} FLOPs ({HEADLINE_FACTOR}x the largest budget) with the N its law makes optimal, "
                       f"N = {h['N']:.3g}, D = {h['D']:.3g}, would reach loss {h['loss']:.4f} "
                       f"({level:.0%} prediction interval [{h['low']:.4f}, {h['high']:.4f}]: parameter uncertainty "
                       f"from {h['n_boot']} bootstrap resamples of {h['unit']} plus run-to-run noise; "
                       f"{h['noise']}).")
        return out

    def scores_table(self) -> pd.DataFrame:
        """One row per law; a law not identified below the cutoff shows no scores (they are no result)."""
        s = self.backtest.scores
        table = pd.DataFrame({"law": s["law"], "parameters": s["n_params"].astype("Int64"),
                             "held-out MAPE %": s["mape"].round(3), "se %": s["mape_se"].round(3),
                             "worst %": s["worst"].round(3), "CV MAPE %": s["cv_mape"].round(3),
                             "CV worst %": s["cv_worst"].round(3),
                             "identified": ["yes" if i else "no" for i in s["identified"]]})
        scores = [c for c in table.columns if c.endswith("%")]
        held = s["identified"].to_numpy(bool)
        for column in scores:
            table[column] = [v if ok else "-" for v, ok in zip(table[column], held)]
        return table


def law_selection(table: pd.DataFrame, grid: str = "chinchilla", n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> LawSelection:
    """Backtest every law, refit the winner with a bootstrap, and predict one larger run (module docstring)."""
    bt = backtest_laws(table, grid=grid)
    all_runs = {}
    for name in LAWS:
        if "lU" in LAWS[name].inputs and not repeats_data(table):
            continue  # the law reduces to chinchilla; the backtest already says why
        try:
            all_runs[name] = fit_law(name, table, grid=grid, n_boot=n_boot if name == bt.winner else 0, seed=seed,
                                     level=level)
        except (InputError, ArithmeticError) as e:
            all_runs[name] = f"{type(e).__name__}: {e}"
    winner = all_runs.get(bt.winner) if bt.winner else None
    headline = None
    if isinstance(winner, FitResult) and not not_identified(winner):  # no prediction from an unidentified fit
        C = HEADLINE_FACTOR * float(table["C"].max())
        N = optimal_N(winner, C)
        low, loss, high = predict_run(winner, N, C / (6 * N), level=level)
        headline = {"C": C, "N": N, "D": C / (6 * N), "loss": loss, "low": low, "high": high,
                    "n_boot": winner.extra["n_boot"], "noise": winner.extra["noise"].describe(),
                    "unit": "whole seed groups" if winner.extra["noise"].source == "seeds" else "runs"}
    return LawSelection(backtest=bt, winner=winner if isinstance(winner, FitResult) else None, headline=headline,
                        all_runs=all_runs)


def not_identified_rows(fits: dict, backtest: LawBacktest | None = None) -> pd.DataFrame:
    """(fit, problem, fix) for every reason each fit in `fits` (name -> FitResult) is not identified, and for
    every law `backtest` marks not identified on the runs below its cutoff (those fits are what it scores)."""
    rows = [{"fit": name, "problem": p, "fix": f} for name, fit in fits.items() if isinstance(fit, FitResult)
            for p, f in not_identified(fit)]
    if backtest is not None:
        where = f"law {{}}, backtest fit on the {backtest.n_fit} runs with C <= {backtest.cutoff_C:.3g} FLOPs"
        rows += [{"fit": where.format(law), "problem": p, "fix": f}
                 for law, reasons in backtest.problems.items() for p, f in reasons]
    return pd.DataFrame(rows, columns=["fit", "problem", "fix"])
