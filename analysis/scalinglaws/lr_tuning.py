"""Learning-rate tuning across model sizes: LR_opt per size, and the power law LR_opt(N) other sweeps train with.

At small scale the exponent of a compute-optimal law moves with how well each size is tuned (Porian et al. 2024,
arXiv:2406.19146, sec 4: tuning LR, batch and beta2 per size moves a to ~0.5); DeepSeek-AI 2024 (arXiv:2401.02954,
sec 3.1) fit the optimal LR and batch as power laws of compute. Here:

- `lr_optimum`: for one size, a parabola in x = ln LR fitted by least squares to the grid's best point and its
  neighbours (up to two on each side); its vertex is LR_opt when it lies inside the grid and the parabola opens
  upward, else the best grid point is returned and flagged.
- `fit_lr_law`: ln LR_opt = ln lr_ref + p ln(N / N_ref), least squares over the sizes, with a bootstrap over sizes.
- `LRLaw`: the fitted law as data, saved as JSON; `scalinglab` trains with it under
  `train.lr_rule=tuned train.lr_law=<file>`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._files import write_text
from .errors import InputError

__all__ = ["LROptimum", "LRLaw", "lr_optimum", "lr_optima", "fit_lr_law", "read_lr_law"]

MIN_GRID = 3  # points a size needs for a parabola
N_COLUMNS = ("n_params", "n_params_nonembed")  # what N may mean in a law (scalinglab's summary columns)


@dataclass(frozen=True)
class LROptimum:
    """The tuned LR of one size: `lr_opt` (the parabola's vertex, or the best grid LR when `flag` says why not),
    the loss the parabola predicts there, and the grid it came from."""
    N: float
    lr_opt: float
    loss_opt: float
    flag: str | None
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    curvature: float = float("nan")  # second derivative of loss in ln LR at the vertex (nats)


def lr_optimum(lr, loss, N: float = float("nan")) -> LROptimum:
    """The loss-minimising LR of one size from a grid of runs, by a parabola in ln LR.

    Parameters
    ----------
    lr, loss : array_like
        Peak learning rates and final validation losses (nats/token) of one size's runs; at least 3 distinct LRs.
        Non-finite losses (diverged runs) count as worse than every finite one.
    N : float, optional
        The size, carried into the result.

    Returns
    -------
    LROptimum
        `lr_opt = exp(-b / 2c)` of loss ~ a + b x + c x^2, x = ln LR, fitted to the best grid point and up to two
        neighbours on each side (Porian et al. 2024 sec 3.3 fit the same parabola). `flag` is set, and the best
        grid LR returned, when the best point is the grid's edge, the parabola opens downward, or its vertex leaves
        the fitted points.
    """
    frame = pd.DataFrame({"lr": np.asarray(lr, float), "loss": np.asarray(loss, float)})
    if (frame["lr"] <= 0).any() or not np.isfinite(frame["lr"]).all():
        raise InputError("lr", "has a non-positive or non-finite learning rate", "give the runs' peak LRs (> 0)")
    frame = frame.groupby("lr", as_index=False)["loss"].min().sort_values("lr")
    if len(frame) < MIN_GRID:
        raise InputError("lr", f"has {len(frame)} distinct learning rates at N={N:.3g}",
                         f"tune each size at >= {MIN_GRID} learning rates (plan.lrs)")
    lrs, losses = frame["lr"].to_numpy(), frame["loss"].to_numpy()
    worst = np.nanmax(np.where(np.isfinite(losses), losses, np.nan)) if np.isfinite(losses).any() else math.inf
    ranked = np.where(np.isfinite(losses), losses, worst + 1.0)
    best = int(np.argmin(ranked))
    result = dict(N=float(N), lrs=tuple(lrs), losses=tuple(losses))
    if best in (0, len(lrs) - 1):
        side = "smallest" if best == 0 else "largest"
        return LROptimum(lr_opt=float(lrs[best]), loss_opt=float(losses[best]), **result,
                         flag=f"the best LR is the grid's {side} ({lrs[best]:.3g}): widen plan.lrs")
    lo, hi = max(0, best - 2), min(len(lrs), best + 3)
    keep = np.isfinite(losses[lo:hi])
    x, y = np.log(lrs[lo:hi])[keep], losses[lo:hi][keep]
    c, b, a = np.polyfit(x, y, 2) if len(x) >= 3 else (math.nan, math.nan, math.nan)
    if not c > 0:
        return LROptimum(lr_opt=float(lrs[best]), loss_opt=float(losses[best]), **result,
                         flag="the parabola through the best LRs opens downward: the grid is too coarse or noisy")
    vertex = -b / (2 * c)
    if not x.min() <= vertex <= x.max():
        return LROptimum(lr_opt=float(lrs[best]), loss_opt=float(losses[best]), **result,
                         flag="the parabola's vertex leaves the fitted LRs")
    return LROptimum(lr_opt=float(math.exp(vertex)), loss_opt=float(a + b * vertex + c * vertex ** 2), **result,
                     flag=None, curvature=float(2 * c))


def lr_optima(runs: pd.DataFrame, n_column: str = "n_params") -> list[LROptimum]:
    """`lr_optimum` for every size of a tuning sweep's runs (columns `n_column`, `lr`, `loss`).

    Parameters
    ----------
    runs : DataFrame
        One row per run of a tuning sweep. Where several batch sizes were tuned (`batch_size` column), each size
        keeps the batch size whose best run has the lowest loss.
    n_column : str
        The parameter count N of a size: "n_params" (every parameter, as 6ND counts) or "n_params_nonembed".

    Returns
    -------
    list of LROptimum
        One per size, by increasing N.
    """
    missing = [c for c in (n_column, "lr", "loss") if c not in runs]
    if missing:
        raise InputError("runs", f"lack the columns {missing}", "give the summaries of a tuning sweep (plan.kind: tune)")
    out = []
    for n, group in runs.groupby(n_column, sort=True):
        if "batch_size" in group and group["batch_size"].nunique() > 1:
            best_batch = group.groupby("batch_size")["loss"].min().idxmin()
            group = group[group["batch_size"] == best_batch]
        out.append(lr_optimum(group["lr"], group["loss"], N=float(n)))
    return out


@dataclass(frozen=True)
class LRLaw:
    """LR_opt(N) = lr_ref (N / N_ref)^exponent, with N the summary column `n_column`.

    `interval` holds bootstrap percentile bounds of `exponent` and `lr_ref` at `level`; `points` the per-size
    optima it was fitted on ({N, lr_opt, flag}).
    """
    lr_ref: float
    exponent: float
    N_ref: float
    n_column: str = "n_params"
    interval: dict = field(default_factory=dict)
    level: float = 0.95
    points: tuple = ()
    source: str = ""

    @property
    def formula(self) -> str:
        """The law as text: 'LR_opt(N) = 0.00635 (N / 2.79e+04)^-0.300' (the report, the CLI and the figure)."""
        from ._format import fmt

        return f"LR_opt(N) = {fmt(self.lr_ref)} (N / {fmt(self.N_ref)})^{self.exponent:.3f}"

    def lr(self, N) -> float | np.ndarray:
        """The law's learning rate at N parameters (counted as `n_column`)."""
        return self.lr_ref * (np.asarray(N, float) / self.N_ref) ** self.exponent

    def save(self, path) -> Path:
        """Write the law as JSON (atomically); `read_lr_law` reads it back."""
        return write_text(Path(path), json.dumps({"law": "lr_opt", **asdict(self), "points": list(self.points)},
                                                 indent=2) + "\n")


def fit_lr_law(optima: list[LROptimum], n_boot: int = 1000, seed: int = 0, level: float = 0.95,
               n_column: str = "n_params", source: str = "") -> LRLaw:
    """Fit LR_opt(N) = lr_ref (N / N_ref)^p to per-size optima, by least squares in log-log space.

    Parameters
    ----------
    optima : list of LROptimum
        From `lr_optima`; flagged optima (best LR on the grid's edge) are left out when at least 2 others remain.
    n_boot, seed, level
        Bootstrap over sizes (resampled with replacement; draws with fewer than 2 distinct N are redrawn) for the
        percentile interval of `exponent` and `lr_ref`.
    n_column, source
        Recorded in the law: what N counts, and where the runs came from.

    Returns
    -------
    LRLaw
        N_ref is the geometric mean of the fitted sizes, so lr_ref is the LR at the middle of the ladder.
        (DeepSeek-AI 2024, arXiv:2401.02954, sec 3.1 fit eta_opt = 0.3118 C^-0.1250 the same way, against compute.)
    """
    good = [o for o in optima if o.flag is None]
    used = good if len(good) >= 2 else list(optima)
    if len({o.N for o in used}) < 2:
        raise InputError("optima", f"cover {len({o.N for o in used})} size(s)", "tune at least 2 sizes")
    logN = np.log([o.N for o in used])
    logLR = np.log([o.lr_opt for o in used])
    N_ref = float(np.exp(logN.mean()))

    def fit(idx):
        p, intercept = np.polyfit(logN[idx] - math.log(N_ref), logLR[idx], 1)
        return p, math.exp(intercept)

    exponent, lr_ref = fit(np.arange(len(used)))
    rng = np.random.default_rng(seed)
    draws = []
    while len(draws) < n_boot and len(used) >= 3:
        idx = rng.integers(0, len(used), len(used))
        if len(set(logN[idx])) >= 2:
            draws.append(fit(idx))
    interval = {}
    if draws:
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        arr = np.array(draws)
        interval = {"exponent": [float(v) for v in np.percentile(arr[:, 0], q)],
                    "lr_ref": [float(v) for v in np.percentile(arr[:, 1], q)]}
    points = tuple({"N": o.N, "lr_opt": o.lr_opt, "flag": o.flag, "used": o in used} for o in optima)
    return LRLaw(lr_ref=float(lr_ref), exponent=float(exponent), N_ref=N_ref, n_column=n_column, interval=interval,
                 level=level, points=points, source=source)


def read_lr_law(path) -> LRLaw:
    """The LRLaw saved in `path` (a JSON file written by `LRLaw.save` / `scalinglaws tune`).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    LRLaw
        InputError naming the file and the field when it is missing, not JSON, or not an LR law.
    """
    path = Path(path)
    fix = "write one with `scalinglaws tune <runs of a plan.kind: tune sweep> --out lr_law.json`"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(str(path), "does not exist", fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(str(path), f"is not a readable JSON file ({error})", fix) from None
    if not isinstance(data, dict) or data.get("law") != "lr_opt":
        raise InputError(str(path), "is not an LR law (no \"law\": \"lr_opt\")", fix)
    for key in ("lr_ref", "exponent", "N_ref"):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                key != "exponent" and value <= 0):
            raise InputError(f"{path}: {key}", f"must be a finite number{' > 0' if key != 'exponent' else ''}, "
                             f"got {value!r}", fix)
    if data.get("n_column", "n_params") not in N_COLUMNS:
        raise InputError(f"{path}: n_column", f"must be one of {', '.join(N_COLUMNS)}, got {data.get('n_column')!r}",
                         fix)
    known = {f for f in LRLaw.__dataclass_fields__}
    return LRLaw(**{k: (tuple(v) if k == "points" else v) for k, v in data.items() if k in known})
