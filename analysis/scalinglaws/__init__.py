"""scalinglaws: fit, backtest and plot neural scaling laws (no torch).

    import scalinglaws as sl
    df = sl.read_table("sweep.csv")                 # one row per run: N, D, C, loss
    fit = sl.fit_table(sl.fit_approach3, df)        # L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022)
    fit = sl.bootstrap(sl.fit_approach3, df, n=1000)  # ... with 95% percentile intervals
    bt = sl.backtest(sl.fit_approach3, df)          # fit on C <= C_max/8, predict the rest
    fit = sl.fit_law("overtrain", df, n_boot=200)   # any law of sl.LAWS (sl.describe_laws())
    sel = sl.backtest_laws(df)                      # every law below the cutoff, scored above it
    epoch = sl.datasets.chinchilla_epoch(5)         # Chinchilla's Figure 4 points (Besiroglu et al. 2024)

Every fit returns a `FitResult` (params, intervals, flags, predict). Bad input raises `InputError`, naming the
column or file and the fix. Modules: chinchilla (the Chinchilla law, Approach 3), frontier (Approaches 1 and 2),
kaplan and powerlaw (Kaplan et al. 2020), critical_batch (Kaplan's B_crit(L) from a batch-size sweep), kaplan_frontier (eq 1.6 on learning curves and
Kaplan's compute-efficient frontier), generalization (loss on other distributions, Kaplan sec 3.2.2), registry (laws fitted by one machinery), isoflop (robust Approach 2),
selection (choosing a law by held-out error), lr_tuning (LR_opt per size and LR_opt(N)), noise (seeds, prediction intervals), identify (what a report may
print), datasets (published run tables), bootstrap, backtest, table (reading tables), laws and calculator
(published laws and what they predict), plots, report (the markdown/HTML report), cli.
"""
from . import datasets
from .backtest import Backtest, backtest
from .bootstrap import bootstrap
from .chinchilla import chinchilla_loss, compute_optimal, fit_approach3
from .critical_batch import (batch_size_sweeps, fit_B_crit, fit_critical_batch, fit_S_E, measure_critical_batch,
                             steps_to_loss)
from .errors import InputError
from .frontier import budget_groups, fit_approach1, fit_approach2
from .generalization import fit_generalization, fit_transfer, source_losses
from .identify import not_identified
from .isoflop import fit_approach2_robust
from .kaplan import b_crit, fit_L_C, fit_L_D, fit_L_N, fit_L_ND, fit_L_NS
from .kaplan_frontier import fit_L_NS_curves, frontier_point, kaplan_frontier
from .laws import Law, load_B_crit, load_law, save_B_crit, save_law
from .lr_tuning import LRLaw, fit_lr_law, lr_optima, lr_optimum, read_lr_law
from .noise import Noise, estimate_noise, prediction_interval
from .powerlaw import fit_loglinear, fit_power_law
from .registry import LAWS, describe_laws, fit_law, optimal_N, predict_run
from .result import FitResult
from .selection import LawBacktest, backtest_laws
from .table import fit_table, load_curves, load_runs_dir, read_table

__version__ = "0.1.0"
__all__ = [
    "Backtest", "FitResult", "InputError", "Law",
    "b_crit", "backtest", "bootstrap", "budget_groups", "chinchilla_loss", "compute_optimal",
    "fit_L_C", "fit_L_D", "fit_L_N", "fit_L_ND", "fit_L_NS", "fit_approach1", "fit_approach2", "fit_approach3",
    "fit_loglinear", "fit_power_law", "fit_table", "load_curves", "load_law", "load_runs_dir", "read_table",
    "save_law",
    "LAWS", "LawBacktest", "Noise", "backtest_laws", "datasets", "describe_laws", "estimate_noise", "fit_approach2_robust",
    "fit_law", "not_identified", "optimal_N", "predict_run", "prediction_interval",
    "batch_size_sweeps", "fit_B_crit", "fit_S_E", "fit_critical_batch", "load_B_crit", "measure_critical_batch",
    "save_B_crit", "steps_to_loss", "fit_L_NS_curves", "frontier_point", "kaplan_frontier",
    "fit_generalization", "fit_transfer", "source_losses",
    "LRLaw", "fit_lr_law", "lr_optima", "lr_optimum", "read_lr_law",
]
