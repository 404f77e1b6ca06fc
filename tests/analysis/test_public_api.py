"""The package's public face: `import scalinglaws as sl` gives the fits, bootstrap, backtest and table reader,
torch-free, each documented with its parameters, what it returns and (for a law) the paper it comes from."""
from __future__ import annotations

import inspect
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import scalinglaws as sl

FITS = ("fit_approach1", "fit_approach2", "fit_approach3", "fit_L_N", "fit_L_D", "fit_L_C", "fit_L_ND", "fit_L_NS",
        "fit_S_E", "fit_B_crit", "fit_critical_batch", "fit_L_NS_curves")
CITED = (*FITS, "chinchilla_loss", "compute_optimal", "b_crit", "bootstrap", "fit_power_law", "fit_loglinear",
         "steps_to_loss", "measure_critical_batch", "kaplan_frontier", "frontier_point",
         "fit_generalization", "fit_transfer", "source_losses")


def test_import_does_not_pull_torch_or_matplotlib():
    code = ("import scalinglaws, sys; "
            "print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_all_lists_the_public_fits():
    assert set(FITS) | {"bootstrap", "backtest", "read_table"} <= set(sl.__all__)
    assert len(sl.__all__) == len(set(sl.__all__))
    for name in sl.__all__:
        assert getattr(sl, name) is not None, name


@pytest.mark.parametrize("name", [n for n in sl.__all__ if inspect.isfunction(getattr(sl, n))])
def test_public_functions_have_numpydoc(name):
    doc = inspect.getdoc(getattr(sl, name)) or ""
    assert "see module docstring" not in doc
    assert re.search(r"^Parameters\n-+$", doc, flags=re.M), name
    assert re.search(r"^Returns\n-+$", doc, flags=re.M), name
    if name in CITED:  # the formula's source: author and year
        assert re.search(r"[A-Z][a-z]+ (et al\. |& [A-Z][a-z]+ )?(19|20)\d\d", doc), name


def test_top_level_fit_is_the_module_fit():
    rng = np.random.default_rng(0)
    N = np.geomspace(1e6, 1e9, 9)
    df = pd.DataFrame({"N": N, "loss": (8.8e13 / N) ** 0.076 * np.exp(rng.normal(0, 0.005, 9))})
    fit = sl.fit_table(sl.fit_L_N, df)
    assert fit.params["alpha_N"] == pytest.approx(0.076, abs=0.01)
    boot = sl.bootstrap(sl.fit_L_N, df, n=50, seed=0)
    lo, hi = boot.intervals["alpha_N"]
    assert lo < fit.params["alpha_N"] < hi
