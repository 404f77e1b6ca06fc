"""Scaling laws as data: the published ones, and any fit a user saved to `fit.json`.

A `Law` is a functional form plus its parameters:

- form "chinchilla": L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022, Approach 3, eq. 2),
  with the compute-optimal frontier N_opt(C) = G (C/6)^(beta/(alpha+beta)),
  D_opt(C) = G^-1 (C/6)^(alpha/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta)).
- form "kaplan_nd": L(N, D) = [(N_c/N)^(a_N/a_D) + D_c/D]^a_D (Kaplan et al. 2020, eq. 1.5; N non-embedding).

A fitted critical batch size B_crit(L) = B_star / L^(1/alpha_B) (Kaplan et al. 2020, eq 5.3;
critical_batch.fit_critical_batch) is saved the same way by `save_B_crit` and read by `load_B_crit`
(`scalinglaws bcrit --law`).

Each published law cites its paper and table.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ._files import write_text
from .chinchilla import chinchilla_loss, compute_optimal
from .errors import InputError
from .powerlaw import predictor
from .result import FitResult

CHINCHILLA_PARAMS = ("E", "A", "B", "alpha", "beta")
KAPLAN_ND_PARAMS = ("N_c", "D_c", "a_N", "a_D")
FORMS = {"chinchilla": CHINCHILLA_PARAMS, "kaplan_nd": KAPLAN_ND_PARAMS}

# Other spellings a fit may use for the eq 1.5 parameters, mapped to ours.
_ALIASES = {"alpha_N": "a_N", "alpha_D": "a_D", "Nc": "N_c", "Dc": "D_c", "aN": "a_N", "aD": "a_D"}

BCRIT_FORM = "bcrit_kaplan_eq_5_3"  # the "form" of a saved B_crit(L) fit
PF_DAY = 8.64e19  # FLOPs in one petaflop/s-day
KAPLAN_C_C_PF_DAYS = 3.1e8  # Kaplan 2020, L(C_min) = (C_c / C_min)^0.050, C_c in PF-days
KAPLAN_A_C = 0.050


def kaplan_nd_loss(N, D, N_c, D_c, a_N, a_D):
    """L(N, D) = [(N_c/N)^(a_N/a_D) + D_c/D]^a_D (Kaplan et al. 2020, eq. 1.5)."""
    N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
    return ((N_c / N) ** (a_N / a_D) + D_c / D) ** a_D


def kaplan_compute_loss(C):
    """L(C_min) = (C_c / C_min)^0.050 with C_c = 3.1e8 PF-days (Kaplan et al. 2020); C in FLOPs."""
    return (KAPLAN_C_C_PF_DAYS / (np.asarray(C, dtype=float) / PF_DAY)) ** KAPLAN_A_C


@dataclass(frozen=True)
class Law:
    """A named scaling law L(N, D). `samples` holds bootstrap parameter draws (one dict per draw), if any."""

    name: str
    form: str
    params: Mapping[str, float]
    source: str = ""
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    level: float = 0.95
    samples: tuple[Mapping[str, float], ...] = ()

    def __post_init__(self):
        if self.form not in FORMS:
            raise InputError(f"law {self.name!r}", f"unknown form {self.form!r}", f"use one of {sorted(FORMS)}")
        missing = [p for p in FORMS[self.form] if p not in self.params]
        if missing:
            raise InputError(f"law {self.name!r}", f"form {self.form!r} needs parameters {missing}", "add them to params")

    def core(self, params: Mapping[str, float] | None = None) -> dict[str, float]:
        """The parameters the form needs, in order (from `params` if given, e.g. a bootstrap draw)."""
        params = self.params if params is None else params
        return {p: float(params[p]) for p in FORMS[self.form]}

    def loss(self, N, D, params: Mapping[str, float] | None = None):
        """Predicted loss in nats/token at N parameters trained on D tokens."""
        if self.form == "chinchilla":
            return chinchilla_loss(N, D, **self.core(params))
        return kaplan_nd_loss(N, D, **self.core(params))

    def allocate(self, C, params: Mapping[str, float] | None = None):
        """Compute-optimal (N_opt, D_opt) at training compute C = 6 N D FLOPs (chinchilla form only)."""
        if self.form != "chinchilla":
            raise InputError(
                f"law {self.name!r}",
                f"form {self.form!r} has no compute-optimal allocation here (Kaplan's N_opt ~ C^0.73 comes from "
                "L(N, S_min), not eq 1.5)",
                "use a chinchilla-form law (chinchilla, epoch, or an Approach 3 fit.json)",
            )
        return compute_optimal(C, **self.core(params))

    @property
    def frontier_exponent(self) -> float:
        """a in N_opt ~ C^a: beta / (alpha + beta) (chinchilla form)."""
        if self.form != "chinchilla":
            raise InputError(f"law {self.name!r}", f"form {self.form!r} has no frontier exponent", "use a chinchilla-form law")
        return self.params["beta"] / (self.params["alpha"] + self.params["beta"])

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "form": self.form,
            "params": {k: float(v) for k, v in self.params.items()},
            "source": self.source,
            "intervals": {k: [float(lo), float(hi)] for k, (lo, hi) in self.intervals.items()},
            "level": float(self.level),
            "samples": [{k: float(v) for k, v in s.items()} for s in self.samples],
        }


KAPLAN = Law(
    name="kaplan",
    form="kaplan_nd",
    params={"N_c": 6.4e13, "D_c": 1.8e13, "a_N": 0.076, "a_D": 0.103},
    source="Kaplan et al. 2020 (arXiv:2001.08361), eq 1.5 with the Table 2 fit; N excludes embeddings",
)
CHINCHILLA = Law(
    name="chinchilla",
    form="chinchilla",
    params={"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28},
    source="Hoffmann et al. 2022 (arXiv:2203.15556), Approach 3 published fit",
)
EPOCH = Law(
    name="epoch",
    form="chinchilla",
    params={"E": 1.82, "A": 482.0, "B": 2085.0, "alpha": 0.348, "beta": 0.366},
    source="Besiroglu et al. 2024 (arXiv:2404.10102), Epoch AI refit of Chinchilla Approach 3",
)
PUBLISHED = {law.name: law for law in (KAPLAN, CHINCHILLA, EPOCH)}


def infer_form(params: Mapping[str, float]) -> str:
    """The form whose parameters all appear in `params`."""
    for form, names in FORMS.items():
        if all(n in params for n in names):
            return form
    raise InputError(
        "params", f"cannot tell the law's form from parameters {sorted(params)}",
        f"a chinchilla law needs {list(CHINCHILLA_PARAMS)}, a kaplan_nd law needs {list(KAPLAN_ND_PARAMS)}",
    )


def _canonical(params: Mapping[str, float]) -> dict[str, float]:
    return {_ALIASES.get(k, k): float(v) for k, v in params.items()}


def law_from_fit(fit, name: str | None = None, source: str = "") -> Law:
    """A `Law` from a FitResult (or its `to_dict()`): an Approach 3 or an eq 1.5 fit.

    Bootstrap draws are taken from `fit.extra["samples"]` when the fit carries them (a DataFrame or list of dicts).
    """
    d = fit if isinstance(fit, Mapping) else fit.to_dict()
    params = _canonical(d["params"])
    intervals = {_ALIASES.get(k, k): (float(v[0]), float(v[1])) for k, v in d.get("intervals", {}).items()}
    samples = d.get("samples", ())
    if not isinstance(fit, Mapping):
        samples = getattr(fit, "extra", {}).get("samples", ())
    if hasattr(samples, "to_dict"):
        samples = samples.to_dict("records")
    samples = tuple(_canonical(s) for s in samples)
    return Law(
        name=name or d.get("name", "fit"),
        form=d.get("form") or infer_form(params),
        params=params,
        source=source or d.get("source", "") or "fitted",
        intervals=intervals,
        level=float(d.get("level", 0.95)),
        samples=samples,
    )


def save_law(law_or_fit, path) -> Path:
    """Write a Law (or a FitResult) to `path` as JSON, atomically.

    Parameters
    ----------
    law_or_fit : Law or FitResult
        An Approach 3 (chinchilla form) or eq 1.5 (kaplan_nd form) law or fit.
    path : str or Path
        The fit.json to write (parents created).

    Returns
    -------
    Path
        `path`; `load_law(path)` reads it back.
    """
    law = law_or_fit if isinstance(law_or_fit, Law) else law_from_fit(law_or_fit)
    return write_text(path, json.dumps(law.to_dict(), indent=2) + "\n")


def load_law(spec) -> Law:
    """A published law by name, or a law saved to a JSON file.

    Parameters
    ----------
    spec : str, Path or Law
        "kaplan" (Kaplan et al. 2020, eq 1.5), "chinchilla" (Hoffmann et al. 2022, Approach 3), "epoch"
        (Besiroglu et al. 2024's refit), or the path of a file written by `save_law` or FitResult.to_dict().

    Returns
    -------
    Law
    """
    if isinstance(spec, Law):
        return spec
    key = str(spec)
    if key.lower() in PUBLISHED:
        return PUBLISHED[key.lower()]
    path = Path(key)
    if not path.is_file():
        raise InputError(f"law {key!r}", "neither a published law nor an existing file",
                         f"pass one of {', '.join(PUBLISHED)} or the path of a fit.json")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(str(path), f"not valid JSON ({e})", "pass a file written by `fit --save`") from None
    if not isinstance(d, dict) or not isinstance(d.get("params"), dict):
        raise InputError(str(path), "no 'params' object", "pass a file written by `fit --save`")
    return law_from_fit(d, name=d.get("name", path.stem))


def save_B_crit(fit: FitResult, path) -> Path:
    """Write a fitted B_crit(L) (`fit_critical_batch` or `fit_B_crit`) to `path` as JSON, atomically.

    Parameters
    ----------
    fit : FitResult
        params B_star, alpha_B (Kaplan et al. 2020, eq 5.3); bootstrap samples are kept when present.
    path : str or Path
        The file to write.

    Returns
    -------
    Path
        `path`; `load_B_crit(path)` reads it back.
    """
    d = fit.to_dict()
    d["form"] = BCRIT_FORM
    d["formula"] = "B_crit(L) = B_star / L^(1/alpha_B), tokens (Kaplan et al. 2020, eq 5.3)"
    samples = fit.extra.get("samples")
    if samples is not None and len(samples):
        d["samples"] = samples.dropna().to_dict("records")
    return write_text(path, json.dumps(d, indent=2) + "\n")


def load_B_crit(path) -> FitResult:
    """A B_crit(L) law saved by `save_B_crit` (e.g. the report's bcrit.json).

    Parameters
    ----------
    path : str or Path
        The JSON file.

    Returns
    -------
    FitResult
        params B_star, alpha_B; predict(L) -> B_crit (tokens); intervals and extra["samples"] as saved.
        InputError for a missing file or one that holds no B_crit law (Kaplan et al. 2020, eq 5.3).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), "file not found", "pass a B_crit fit written by the report (bcrit.json) or "
                         "`scalinglaws fit RUNS --approach bcrit --save FILE`")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(str(path), f"not valid JSON ({e})", "pass a file written by save_B_crit") from None
    params = d.get("params") if isinstance(d, dict) else None
    if d.get("form") != BCRIT_FORM or not isinstance(params, dict) or not {"B_star", "alpha_B"} <= set(params):
        raise InputError(str(path), "holds no B_crit(L) law (form, B_star, alpha_B)",
                         "pass a file written by `scalinglaws fit RUNS --approach bcrit --save FILE` or the "
                         "report's bcrit.json")
    B_star, alpha_B = float(params["B_star"]), float(params["alpha_B"])
    return FitResult(name=d.get("name", "B_crit(L)"), params={"B_star": B_star, "alpha_B": alpha_B},
                     predict=predictor(lambda l: B_star / l ** (1.0 / alpha_B), ["L"]),
                     intervals={k: (float(v[0]), float(v[1])) for k, v in d.get("intervals", {}).items()},
                     level=float(d.get("level", 0.95)), flags=tuple(d.get("flags", ())),
                     extra={"samples": pd.DataFrame(d.get("samples", []), columns=["B_star", "alpha_B"])})
