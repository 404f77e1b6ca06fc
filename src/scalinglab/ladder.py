"""Size ladders from a rule: N evenly spaced in log N, one shape rule for every size (torch-free).

    plan.ladder: {family: llama, n_min: 1e4, n_max: 1e6, per_decade: 4, shape: {aspect_ratio: 32, head_dim: 16}}

Targets N_i = n_min 10^(i / per_decade) for i = 0, 1, ... while N_i <= n_max (n_max itself when it lies on the
grid). For each target N*, the shape rule: over n_layer >= 1 and d_model a multiple of head_dim (n_head = d_model /
head_dim, n_kv_head = n_head, d_ff the family's default), take the shape of least

    (ln(N / N*) / ln(1 + tolerance))^2 + (ln((d_model / n_layer) / aspect_ratio) / ln 2)^2

(`shape_cost`: missing N by `tolerance` costs as much as missing the aspect ratio by a factor of 2) among the shapes
whose N is within `tolerance` (default 5%) of N*. Whole heads and layers leave gaps in N below ~2e5, which
would force extreme aspect ratios there, so d_ff may also leave the family's default (`shape.d_ff: vary`, the
default), as a multiple of ff_multiple_of within a factor FF_RANGE = 2 of it, at an extra cost
(ln(d_ff / default) / ln 2)^2: Kaplan et al. 2020 (Figure 5) find the loss at fixed N within a few percent over
feed-forward ratios d_ff / d_model of ~1-4, a smaller effect than a depth far from the aspect ratio.
`shape.d_ff: default` keeps the family's width at every size. Where nothing lands within the tolerance the least
costly shape of all is taken, and `misses` names each such rung.
Kaplan et al. 2020 (section 3.1, Figure 5) find loss nearly independent of shape at fixed N for aspect ratios
~10-200, so holding the aspect ratio keeps shape noise out of L(N). Where whole heads and layers are fine enough
(N above ~1e5 at head_dim 16) N lands within the tolerance at an aspect ratio near the target; below, the two trade
off, and the printed table shows the N and aspect ratio really used.

N is the parameter count of the sweep's FLOP convention: n_params for 6nd and chinchilla, n_params_nonembed for
kaplan (scalinglab.config.param_counts; the other fields, vocab_size and n_ctx included, come from the sweep's model
config). A setting that gives no such ladder is a ConfigError naming the plan.ladder field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scalinglab.config import FAMILIES, GPTConfig, did_you_mean, param_counts, positive_number
from scalinglab.errors import ConfigError

KEYS = ("family", "n_min", "n_max", "per_decade", "shape", "tolerance")
SHAPE_DEFAULTS = {"aspect_ratio": 32.0, "head_dim": 16, "d_ff": "vary"}
D_FF_RULES = ("vary", "default")  # shape.d_ff: may leave the family's default width (at a cost), or never
TOLERANCE = 0.05
FF_RANGE = 2.0  # d_ff may leave the family's default by up to this factor, only to bring N within the tolerance
COUNT_OF = {"6nd": "n_params", "chinchilla": "n_params", "kaplan": "n_params_nonembed"}
MAX_RUNGS = 100


@dataclass(frozen=True)
class Rung:
    """One size of a ladder: its config, the target N and the N it achieves (under the ladder's count)."""
    config: GPTConfig
    target: float
    n: int

    @property
    def label(self) -> str:
        c = self.config
        return f"{c.family}-L{c.n_layer}-d{c.d_model}" + ("" if c.d_ff is None else f"-ff{c.d_ff}")

    @property
    def overrides(self) -> tuple[str, ...]:
        c = self.config
        return (f"model.family={c.family}", f"model.n_layer={c.n_layer}", f"model.d_model={c.d_model}",
                f"model.n_head={c.n_head}", "model.n_kv_head=null",
                f"model.d_ff={'null' if c.d_ff is None else c.d_ff}")

    @property
    def miss(self) -> float:
        """N / target - 1."""
        return self.n / self.target - 1


def targets(n_min: float, n_max: float, per_decade: float) -> list[float]:
    """n_min 10^(i / per_decade), i = 0, 1, ..., up to n_max (within 1e-9 in log10)."""
    count = math.floor(per_decade * math.log10(n_max / n_min) + 1e-9) + 1
    return [n_min * 10 ** (i / per_decade) for i in range(count)]


def _shape(base: GPTConfig, family: str, n_layer: int, d_model: int, head_dim: int) -> GPTConfig:
    return replace(base, family=family, n_layer=n_layer, d_model=d_model, n_head=d_model // head_dim,
                   n_kv_head=None, d_ff=None)


def _candidates(base: GPTConfig, family: str, n_layer: int, head_dim: int, lo: float, hi: float, count: str):
    """(d_model, N) at this depth for d_model = k head_dim: the k just below lo, and every k up to the first N > hi
    (N grows with k; the first k with N >= lo is found by bisection)."""
    def n_of(k: int) -> int:
        return param_counts(_shape(base, family, n_layer, k * head_dim, head_dim))[count]

    top = 1
    while n_of(top) < lo:
        top *= 2
    bottom = top // 2 + 1 if top > 1 else 1
    while bottom < top:  # smallest k with N >= lo
        mid = (bottom + top) // 2
        bottom, top = (mid + 1, top) if n_of(mid) < lo else (bottom, mid)
    k = max(1, bottom - 1)
    while True:
        n = n_of(k)
        yield k * head_dim, n
        if n > hi:
            return
        k += 1


def shape_cost(n: float, target: float, aspect: float, aspect_ratio: float, tolerance: float = TOLERANCE) -> float:
    """(ln(N / N*) / ln(1 + tolerance))^2 + (ln(aspect / aspect_ratio) / ln 2)^2: missing N by the tolerance costs
    as much as missing the aspect ratio by a factor of 2."""
    return (math.log(n / target) / math.log1p(tolerance)) ** 2 + (math.log(aspect / aspect_ratio) / math.log(2)) ** 2


def _mlp_widths(base: GPTConfig, family: str, n_layer: int, d_model: int, head_dim: int, target: float, count: str):
    """(d_ff, N) for the MLP widths, multiples of ff_multiple_of within a factor FF_RANGE of the family's default,
    that bracket N = target at this depth and width (N is linear in d_ff)."""
    shape = _shape(base, family, n_layer, d_model, head_dim)
    default, m = shape.ff, shape.ff_multiple_of
    n0 = param_counts(shape)[count]
    slope = param_counts(replace(shape, d_ff=default + m))[count] - n0  # per step of m
    if slope <= 0:
        return
    k = (target - n0) / slope
    for step in {math.floor(k), math.ceil(k)}:
        width = default + step * m
        if step and default / FF_RANGE <= width <= default * FF_RANGE:
            yield width, n0 + step * slope


def rung(base: GPTConfig, family: str, target: float, aspect_ratio: float, head_dim: int, count: str,
         tolerance: float = TOLERANCE, d_ff: str = "vary") -> Rung:
    """The shape of least `shape_cost` for one target N, within the tolerance where any is (the module's rule)."""
    spread = 1 + 4 * tolerance  # candidates further off in N cost more than a factor 2^4 in aspect ratio
    smallest = param_counts(_shape(base, family, 1, head_dim, head_dim))[count]
    if smallest > target * (1 + tolerance):
        raise ConfigError("plan.ladder.n_min", f"N={target:.3g} is below the smallest {family} model at "
                          f"head_dim {head_dim} (1 layer, d_model {head_dim}: {count}={smallest:,})",
                          f"raise plan.ladder.n_min to at least {smallest:.3g}, or lower plan.ladder.shape.head_dim")
    # Depth at which d_model = aspect_ratio n_layer gives ~12 n_layer d^2 = N (Kaplan's N), with room both ways.
    depth = (target / (12 * aspect_ratio ** 2)) ** (1 / 3)
    shapes = [(n_layer, d_model, n) for n_layer in range(1, max(8, math.ceil(4 * depth)) + 1)
              for d_model, n in _candidates(base, family, n_layer, head_dim, target / spread, target * spread, count)]

    def outside(n):
        return abs(math.log(n / target)) > math.log1p(tolerance)

    found = [(outside(n), shape_cost(n, target, d / layers, aspect_ratio, tolerance), layers, d, None, n)
             for layers, d, n in shapes]
    if d_ff == "vary":
        default = {(layers, d): _shape(base, family, layers, d, head_dim).ff for layers, d, _ in shapes}
        found += [(outside(n), shape_cost(n, target, d / layers, aspect_ratio, tolerance)
                   + (math.log(width / default[layers, d]) / math.log(2)) ** 2, layers, d, width, n)
                  for layers, d, _ in shapes
                  for width, n in _mlp_widths(base, family, layers, d, head_dim, target, count)]
    *_, n_layer, d_model, width, n = min(found)
    return Rung(replace(_shape(base, family, n_layer, d_model, head_dim), d_ff=width), target, n)


EXAMPLES = {"n_min": "1e4", "n_max": "1e6", "per_decade": "4", "tolerance": "0.05", "aspect_ratio": "32",
            "head_dim": "16"}


def _number(section: dict, key: str, default=None) -> float:
    field = f"plan.ladder.{'shape.' if key in SHAPE_DEFAULTS else ''}{key}"
    return positive_number(section.get(key, default), field, EXAMPLES[key])


def _keys(given: dict, allowed, where: str) -> None:
    for key in given:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}", f"is not a ladder setting{did_you_mean(key, allowed)}",
                              f"use only {', '.join(allowed)}")


def ladder(section, base: GPTConfig, convention: str = "6nd") -> list[Rung]:
    """The sizes of `plan.ladder` (validated; see the module docstring), smallest first."""
    if not isinstance(section, dict):
        raise ConfigError("plan.ladder", f"must be a mapping, got {section!r}",
                          "set plan.ladder={family: llama, n_min: 1e4, n_max: 1e6, per_decade: 4}")
    _keys(section, KEYS, "plan.ladder")
    family = section.get("family", base.family)
    if family not in FAMILIES:
        raise ConfigError("plan.ladder.family", f"unknown family {family!r}{did_you_mean(family, FAMILIES)}",
                          f"use one of {', '.join(FAMILIES)}")
    for key in ("n_min", "n_max", "per_decade"):
        if key not in section:
            raise ConfigError(f"plan.ladder.{key}", "is required", f"set plan.ladder.{key} (e.g. n_min: 1e4, "
                              "n_max: 1e6, per_decade: 4)")
    n_min, n_max, per_decade = (_number(section, k) for k in ("n_min", "n_max", "per_decade"))
    if n_min > n_max:
        raise ConfigError("plan.ladder.n_max", f"is below n_min ({n_max:.3g} < {n_min:.3g})",
                          "set plan.ladder.n_max >= plan.ladder.n_min")
    tolerance = _number(section, "tolerance", TOLERANCE)
    if tolerance >= 1:
        raise ConfigError("plan.ladder.tolerance", f"must be below 1, got {tolerance:g}", "set e.g. 0.05 (5%)")
    shape = section.get("shape") or {}
    if not isinstance(shape, dict):
        raise ConfigError("plan.ladder.shape", f"must be a mapping, got {shape!r}",
                          "set plan.ladder.shape={aspect_ratio: 32, head_dim: 16}")
    _keys(shape, tuple(SHAPE_DEFAULTS), "plan.ladder.shape")
    d_ff = shape.get("d_ff", SHAPE_DEFAULTS["d_ff"])
    if d_ff not in D_FF_RULES:
        raise ConfigError("plan.ladder.shape.d_ff", f"must be vary or default, got {d_ff!r}",
                          "set plan.ladder.shape.d_ff=vary (d_ff may move within 2x of the default) or default")
    aspect = _number(shape, "aspect_ratio", SHAPE_DEFAULTS["aspect_ratio"])
    head_dim = _number(shape, "head_dim", SHAPE_DEFAULTS["head_dim"])
    if not head_dim.is_integer() or (family == "llama" and head_dim % 2):
        rotary = ", even for llama's rotary embeddings" if family == "llama" else ""
        raise ConfigError("plan.ladder.shape.head_dim", f"must be a whole number{rotary}, got {head_dim:g}",
                          "set plan.ladder.shape.head_dim=16")
    if convention not in COUNT_OF:
        raise ConfigError("plan.flops", f"unknown convention {convention!r}", f"use one of {', '.join(COUNT_OF)}")
    goals = targets(n_min, n_max, per_decade)
    if len(goals) > MAX_RUNGS:
        raise ConfigError("plan.ladder.per_decade", f"gives {len(goals)} sizes (more than {MAX_RUNGS})",
                          "lower plan.ladder.per_decade or narrow [n_min, n_max]")
    rungs = [rung(base, family, t, aspect, int(head_dim), COUNT_OF[convention], tolerance, d_ff)
             for t in goals]
    for a, b in zip(rungs, rungs[1:]):
        if a.config == b.config:
            raise ConfigError("plan.ladder.per_decade", f"targets {a.target:.3g} and {b.target:.3g} get the same "
                              f"shape ({a.label})", "lower plan.ladder.per_decade or plan.ladder.tolerance")
    return rungs


# ------------------------------------------------------------------------------------------------ printing

def summary(rungs) -> str:
    """'ladder: N of its 9 sizes within -1.9%..+2.5% of the log-even targets', naming each rung (anything with
    label, target, miss) more than TOLERANCE off and what to change."""
    misses = [r.miss for r in rungs]
    text = (f"ladder: N of its {len(rungs)} sizes within {min(misses):+.1%}..{max(misses):+.1%} of the log-even "
            "targets")
    far = [f"{r.label} {r.miss:+.1%} (target {r.target:.3g})" for r in rungs if abs(r.miss) > TOLERANCE]
    if far:
        text += (f"; more than {TOLERANCE:.0%} off: {', '.join(far)}. Fix: keep plan.ladder.tolerance at "
                 f"{TOLERANCE:g} and shape.d_ff at vary (the defaults), or lower shape.head_dim for finer steps in N")
    return text


def format_sizes(sizes: list[tuple[str, GPTConfig]], convention: str = "6nd",
                 targets_: list[float] | None = None) -> str:
    """One line per size: shape, N (total and non-embedding), FLOPs per token under `convention`
    (and, for a ladder, the target N and the miss of the achieved N under the convention's count)."""
    from scalinglab.flops import flops_per_token

    head = ["size", "family", "n_layer", "d_model", "n_head", "n_kv_head", "d_ff", "d/L", "N", "N_nonembed",
            f"FLOPs/token ({convention})"] + (["target", "miss"] if targets_ else [])
    rows = []
    for i, (label, c) in enumerate(sizes):
        counts = param_counts(c)
        row = [label, c.family, str(c.n_layer), str(c.d_model), str(c.n_head), str(c.kv_heads), str(c.ff),
               f"{c.d_model / c.n_layer:.1f}", f"{counts['n_params']:,}", f"{counts['n_params_nonembed']:,}",
               f"{flops_per_token(c, counts)[f'flops_{convention}']:.4g}"]
        if targets_:
            n = counts[COUNT_OF[convention]]
            row += [f"{targets_[i]:.4g}", f"{n / targets_[i] - 1:+.1%}"]
        rows.append(row)
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in [head, *rows])


CLI_DEFAULTS = {"flops": "kaplan", "vocab_size": 4096, "n_ctx": 256}  # configs/data/builtin, configs/model/_preset


def main(command: str, args: list[str]) -> str:
    """`sweep ladder key=value ...` (plan.ladder's keys, shape's keys at top level, flops, vocab_size, n_ctx) or
    `sweep presets [vocab_size=V n_ctx=T flops=C]`: the table of sizes."""
    given = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            raise ConfigError(arg, "is not key=value", "write e.g. n_min=1e4")
        given[key.removeprefix("shape.") if command == "ladder" else key] = value  # as in the yaml: shape.head_dim
    allowed = (*KEYS[:-2], "tolerance", *SHAPE_DEFAULTS, *CLI_DEFAULTS) if command == "ladder" else tuple(CLI_DEFAULTS)
    _keys(given, tuple(k for k in allowed if k != "shape"), command)
    settings = {**CLI_DEFAULTS, **given}
    for key in ("vocab_size", "n_ctx"):
        value = settings[key]
        if not str(value).isdigit() or int(value) <= 0:
            raise ConfigError(key, f"must be a whole number > 0, got {value!r}", f"set {key}={CLI_DEFAULTS[key]}")
    convention = settings["flops"]
    if convention not in COUNT_OF:
        raise ConfigError("flops", f"unknown convention {convention!r}{did_you_mean(convention, COUNT_OF)}",
                          f"use one of {', '.join(COUNT_OF)}")
    if command == "presets":
        from scalinglab.presets import PRESETS
        return format_sizes([(name, GPTConfig.from_name(name, vocab_size=int(settings["vocab_size"]),
                                                        n_ctx=int(settings["n_ctx"]))) for name in PRESETS],
                            convention)
    family = given.get("family", "llama")
    base = GPTConfig(1, 16, 1, int(settings["n_ctx"]), int(settings["vocab_size"]),
                     family=family if family in FAMILIES else "gpt2")
    section = {k: v for k, v in given.items() if k in KEYS}
    section["shape"] = {k: v for k, v in given.items() if k in SHAPE_DEFAULTS}
    rungs = ladder({**section, "family": family}, base, convention)
    return format_sizes([(r.label, r.config) for r in rungs], convention, [r.target for r in rungs]) + \
        "\n" + summary(rungs)
