"""Fits whose exponent tends to 0 report an infinite scale and say why, without a numpy RuntimeWarning."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from scalinglaws.chinchilla import approach3_params
from scalinglaws.kaplan import fit_L_N

# The envelope of one bootstrap resample of the quickstart report: loss barely falls with N (alpha_N ~ 0.004),
# so N_c = exp(intercept / alpha_N) ~ exp(333) is beyond float64.
FLAT_N = np.array([137000.0, 84300.0, 31200.0, 21100.0, 21100.0])
FLAT_LOSS = np.array([4.15184624, 4.00971351, 4.09506413, 4.10229844, 4.10229844])


def test_flat_power_law_reports_an_infinite_scale_with_a_reason_and_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fit_L_N(FLAT_N, FLAT_LOSS)
        predicted = fit.predict(N=FLAT_N)
    slope, intercept = np.polyfit(np.log(FLAT_N), np.log(FLAT_LOSS), 1)
    assert fit.params["alpha_N"] == pytest.approx(-slope) and 0 < fit.params["alpha_N"] < 0.01
    assert intercept / -slope > math.log(np.finfo(float).max)  # the scale really is beyond the float range
    assert math.isinf(fit.params["N_c"])
    assert any("N_c = exp(" in f and "beyond the float range" in f for f in fit.flags)
    assert predicted == pytest.approx(np.exp(intercept + slope * np.log(FLAT_N)))  # the fitted line is finite


def test_approach3_frontier_coefficient_beyond_float_range_is_inf_without_overflow():
    # alpha + beta = 0.002: G = (alpha A / (beta B))^(1/0.002) is ~ 10^(304 * 500)
    theta = (700.0, 0.0, 0.0, 0.001, 0.001)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = approach3_params(theta)
    assert math.isinf(p["G"]) and p["A"] == pytest.approx(math.exp(700.0)) and p["a"] == pytest.approx(0.5)
    finite = approach3_params((np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28))  # Hoffmann 2022 eq 10
    assert finite["G"] == pytest.approx((0.34 * 406.4 / (0.28 * 410.7)) ** (1 / 0.62))
