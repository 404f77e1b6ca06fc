"""Power laws fitted in log space: y = (x_c / x)^alpha (+ y_inf) (Kaplan et al. 2020's form), and y = k x^p
(compute-optimal frontiers, N_opt = k C^a)."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from .errors import InputError
from .result import FitResult
from .table import check_enough


LOG_FLOAT_MAX = math.log(np.finfo(float).max)  # ~709.78: exp of anything larger is not a float64


def exp_or_inf(z) -> float:
    """exp(z) of a fitted log-parameter, or inf when it lies beyond the float64 range (no overflow warning).

    A fit whose exponent tends to 0 has a scale exp(intercept / alpha) that no float holds (e.g. x_c of a
    power law with alpha ~ 0.004); it is reported as inf, and the fit says why (a flag), instead of numpy
    printing "overflow encountered in exp" to the user.
    """
    z = float(z)
    return math.exp(z) if z < LOG_FLOAT_MAX else float("inf")


def as_positive_array(values, what: str) -> np.ndarray:
    """1-D float array, all finite and > 0, else InputError naming `what` and the first bad index."""
    arr = np.asarray(values, dtype=float).ravel()
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{what}[{i}]", f"value {arr[i]} must be finite and > 0", "clean the input")
    return arr


def predictor(fn: Callable, names: Sequence[str]) -> Callable:
    """Wrap fn(*arrays) so it can be called positionally or with keywords named `names`."""
    def predict(*args, **kwargs):
        values = list(args) + [kwargs.pop(n) for n in names[len(args):] if n in kwargs]
        if kwargs or len(values) != len(names):
            raise TypeError(f"predict takes {', '.join(names)}")
        return fn(*[np.asarray(v, dtype=float) for v in values])
    return predict


def _loglinear(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and R^2 of ly = intercept + slope * lx."""
    slope, intercept = np.polyfit(lx, ly, 1)
    resid = ly - (intercept + slope * lx)
    ss = np.sum((ly - ly.mean()) ** 2)
    return float(slope), float(intercept), float(1 - np.sum(resid ** 2) / ss) if ss > 0 else 1.0


def fit_loglinear(x, y, name: str = "") -> FitResult:
    """y = k x^p by ordinary least squares on log y = log k + p log x (Hoffmann et al. 2022 fit their frontiers
    N_opt = k C^a this way, sec 3.1-3.2).

    Parameters
    ----------
    x, y : array_like
        Positive values, at least 2.
    name : str
        Name of the fit (messages, FitResult.name).

    Returns
    -------
    FitResult
        params k, p; predict(x); objective 1 - R^2 and extra["r2"] the R^2 in log space. Flags 2 points (no spare
        degree of freedom).
    """
    x, y = as_positive_array(x, "x"), as_positive_array(y, "y")
    check_enough(len(x), 2, f"points for {name or 'fit_loglinear'}")
    p, logk, r2 = _loglinear(np.log(x), np.log(y))
    flags = ("only 2 points: the exponent has no spare degree of freedom",) if len(x) == 2 else ()
    k = float(np.exp(logk))
    return FitResult(name=name or "y = k x^p", params={"k": k, "p": p},
                     predict=predictor(lambda x: k * x ** p, ["x"]),
                     data=pd.DataFrame({"x": x, "y": y}), objective=float(1 - r2), flags=flags, extra={"r2": r2})


def fit_power_law(x, y, offset: bool = False, name: str = "", init=None) -> FitResult:
    """y = (x_c/x)^alpha (+ y_inf) by least squares on log y: the form of Kaplan et al. 2020, eqs 1.1-1.3.

    Without offset this is the exact log-log linear regression. With offset, starts come from log-log fits of
    y - y_inf for y_inf in {0, .3, .5, .7, .8, .9, .95, .99} min(y), and the best is refined with
    scipy.optimize.least_squares (alpha >= 0, y_inf >= 0).

    Parameters
    ----------
    x, y : array_like
        Positive values of one length.
    offset : bool
        Add an irreducible y_inf.
    name : str
        Name of the fit.
    init : mapping, optional
        Start the offset fit from these params (x_c, alpha, y_inf) instead.

    Returns
    -------
    FitResult
        params x_c, alpha (, y_inf); predict(x) (positional or keyword x). Flags alpha or y_inf on a bound,
        y_inf >= min(y), no convergence, no spare degree of freedom.
    """
    return power_law(x, y, offset=offset, name=name, init=init)


def power_law(x, y, offset=False, name="", init=None, var="x", names=("x_c", "alpha", "y_inf")) -> FitResult:
    """fit_power_law with the variable and parameter names chosen by the caller (used by kaplan.py)."""
    x, y = as_positive_array(x, var), as_positive_array(y, "loss")
    if len(x) != len(y):
        raise InputError(var, f"{len(x)} values but {len(y)} losses", "pass arrays of the same length")
    n_par = 3 if offset else 2
    check_enough(len(np.unique(x)), n_par + 1 if offset else n_par, f"distinct {var} values for {name or 'fit'}")
    lx, ly = np.log(x), np.log(y)
    flags = []
    data = pd.DataFrame({var: x, "loss": y})
    xc_name, a_name, inf_name = names

    if not offset:
        slope, intercept, r2 = _loglinear(lx, ly)
        alpha = -slope
        params = {xc_name: exp_or_inf(intercept / alpha) if alpha != 0 else float("inf"), a_name: alpha}
        objective = float(np.sum((intercept + slope * lx - ly) ** 2))
        if alpha <= 0:
            flags.append(f"{a_name} = {alpha:.3g} <= 0: y does not fall with {var}")
        elif math.isinf(params[xc_name]):
            flags.append(f"{xc_name} = exp({intercept / alpha:.4g}) is beyond the float range: {a_name} = "
                         f"{alpha:.3g} is too close to 0 for a power law")
        if len(np.unique(x)) == 2:
            flags.append("only 2 distinct points: no spare degree of freedom")
        predict = predictor(lambda v: np.exp(intercept + slope * np.log(v)), [var])
        return FitResult(name=name or f"L({var})", params=params, predict=predict, data=data,
                         objective=objective, flags=tuple(flags), extra={"r2": r2})

    def residual(theta):
        log_xc, alpha, y_inf = theta
        return np.log(np.exp(np.minimum(alpha * (log_xc - lx), LOG_FLOAT_MAX)) + y_inf) - ly

    starts = []
    if init is not None:
        starts.append([np.log(init[xc_name]), init[a_name], init[inf_name]])
    else:
        for frac in (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99):
            y_inf = frac * y.min()
            slope, intercept, _ = _loglinear(lx, np.log(y - y_inf))
            if slope < 0:
                starts.append([intercept / -slope, -slope, y_inf])
    if not starts:
        raise InputError(name or "fit_power_law", "y does not fall with x at any offset", "check the data")
    best = None
    for s in starts:
        with np.errstate(invalid="ignore", over="ignore"):  # a start that overflows just scores worse
            fit = least_squares(residual, s, bounds=([-np.inf, 0.0, 0.0], [np.inf, np.inf, np.inf]), x_scale="jac")
        if best is None or fit.cost < best.cost:
            best = fit
    log_xc, alpha, y_inf = (float(v) for v in best.x)
    if best.status <= 0:
        flags.append(f"not converged: {best.message}")
    if alpha <= 1e-8:
        flags.append(f"{a_name} on its lower bound 0")
    if y_inf <= 1e-12:
        flags.append(f"{inf_name} on its lower bound 0 (no offset needed; fit without offset)")
    elif y_inf >= y.min():
        flags.append(f"{inf_name} = {y_inf:.4g} >= smallest loss {y.min():.4g}")
    if len(np.unique(x)) == 3:
        flags.append("only 3 distinct points for 3 parameters: no spare degree of freedom")
    if log_xc >= LOG_FLOAT_MAX:
        flags.append(f"{xc_name} = exp({log_xc:.4g}) is beyond the float range: no power law in {var}")
    params = {xc_name: exp_or_inf(log_xc), a_name: alpha, inf_name: y_inf}
    predict = predictor(lambda v: np.exp(alpha * (log_xc - np.log(v))) + y_inf, [var])
    return FitResult(name=name or f"L({var})", params=params, predict=predict, data=data,
                     objective=float(2 * best.cost), flags=tuple(flags))
