"""Expand a sweep's `plan:` section into one list of Hydra overrides per run, with N, D, C and a time estimate.

Pure functions: each model's facts (parameter counts, FLOPs per token, batch and corpus sizes) come from a
`facts_of(overrides)` callable (the Hydra sweeper composes the job's config; tests pass a fake).

Kinds (docs/DESIGN.md section 4):
- grid:        cartesian product of `plan.grid` (config field -> list of values) and `plan.sizes`.
- isoflop:     for every budget C and size N, D = C / (FLOPs per token of that model) (Hoffmann et al. 2022,
               Approach 2: C = 6ND under the default convention), never hand-listed.
- kaplan_n / kaplan_d: sizes at a large fixed D / a large model at a range of D (Kaplan et al. 2020, L(N), L(D)).
- wsd_budgets: per size one long constant-LR run and one cooldown per D_i branched from its checkpoint at the
               step where D_i's cooldown starts (Hagele et al. 2024): many D for ~1.2 runs of compute.
- tune:        per size, a grid of peak LRs `plan.lrs` (optionally x `plan.batch_sizes`) at D = `plan.data_ratio`
               x N (20: near the compute-optimal D, Hoffmann et al. 2022), constant LR rule; `scalinglaws tune`
               reads LR_opt per size off the runs and fits LR_opt(N) for `train.lr_rule=tuned` (Porian et al. 2024).
- batch_size:  per size, one run per batch size of `plan.batch_sizes` to `plan.tokens` tokens, dense eval points:
               the steps S and tokens E to each loss give B_crit (Kaplan et al. 2020, section 5.1).

Wherever a kind takes `plan.sizes` it takes `plan.ladder` (scalinglab.ladder; `model_sizes` reads either).

`plan.role: ablation` (or `transfer`) labels every run (the `role` column: runs with role tune, ablation, transfer
or long feed no law of the report; the ablation and generalization sections read them). `plan.seeds: [0, 1]`
repeats every run per seed (`train.seed=s`, the fits' run-to-run noise); `plan.seeds_at_largest` the largest budget's.

A run with D below one batch (or `plan.min_tokens`) or above one epoch (unless `plan.allow_repeat`) is skipped with
the reason. `plan.tokens_per_param: [lo, hi]` (isoflop) keeps per budget the sizes with lo <= D/N <= hi."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Callable

from scalinglab.config import Number, positive_number
from scalinglab.errors import ConfigError
from scalinglab.ladder import ladder, summary
from scalinglab.runs import consumed_tokens, cooldown_start, steps_for_tokens
from scalinglab.units import duration, si

KINDS = ("grid", "isoflop", "kaplan_n", "kaplan_d", "wsd_budgets", "tune", "batch_size")
CONVENTIONS = ("6nd", "kaplan", "chinchilla")
SIZE_FIELDS = ("family", "n_layer", "d_model", "n_head", "n_kv_head", "d_ff", "n_ctx")
DEFAULT_FLOPS_PER_SECOND = 1.0e10  # 6ND FLOP/s of a 1-thread nano run on a 2-core CPU (docs/SWEEPS.md)
DEFAULT_STARTUP_SECONDS = 8.0  # launch to first step of one run on that CPU (docs/SWEEPS.md)


@dataclass(frozen=True)
class Size:
    """A model size: a preset of configs/model (`model=tiny`) or explicit fields (`model.n_layer=2 ...`)."""
    label: str
    overrides: tuple[str, ...]
    target: float | None = None  # a ladder's rung: the N it aims at
    miss: float | None = None  # N / target - 1


@dataclass(frozen=True)
class ModelFacts:
    """What planning needs to know about one composed run config."""
    n_params: int
    n_params_nonembed: int
    flops_per_token: dict[str, float]  # keyed by convention: 6nd, kaplan, chinchilla
    tokens_per_step: int  # train.batch_size * model.n_ctx
    tokens: int  # train.tokens of the composed config
    epoch_tokens: int | None = None  # tokens one pass over the training split holds (None: corpus not known yet)


@dataclass
class Run:
    """One planned run: the overrides that make it, and its size, data and compute."""
    overrides: list[str]
    size: str
    n_params: int
    n_params_nonembed: int
    tokens: int  # D consumed: whole batches (runs.consumed_tokens)
    flops: float  # C = flops_per_token * D under the plan's convention
    flops_6nd: float = 0.0  # 6 N D, what the time estimate's throughput is measured in
    budget: float | None = None  # isoflop: the target C
    role: str = "run"  # run | long | cooldown (wsd_budgets)
    trained_tokens: int | None = None  # tokens this run itself trains (a cooldown trains only its last part)
    seconds: float = 0.0  # estimated wall time
    branch_of: int | None = None  # cooldown: index (in the plan) of the long run it branches from
    branch_step: int | None = None  # cooldown: optimizer step of the long run it starts from
    run_id: str | None = None  # filled in by the sweeper (hash of the composed config)


@dataclass
class Skip:
    """A (size, budget/tokens) pair the plan refuses, and why."""
    size: str
    tokens: float
    reason: str
    budget: float | None = None


@dataclass
class Plan:
    runs: list[Run] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    misses: dict = field(default_factory=dict)  # a ladder's size label -> N / target - 1


# ------------------------------------------------------------------------------------------------ pure math

def tokens_for_budget(budget: float, flops_per_token: float) -> float:
    """D = C / (FLOPs per token): C = 6ND gives D = C / 6N (Hoffmann et al. 2022, section 3.2)."""
    return budget / flops_per_token


def skip_reason(tokens: float, facts: ModelFacts, min_tokens: float | None, allow_repeat: bool) -> str | None:
    """Why a run of `tokens` should not be trained (None: train it): below one batch (or `min_tokens`) it measures
    nothing; above one epoch the data repeat, which changes the law (Muennighoff et al. 2023), unless allowed."""
    floor = facts.tokens_per_step if min_tokens is None else max(float(min_tokens), 1.0)
    if tokens < floor:
        what = "one batch" if min_tokens is None else "plan.min_tokens"
        return f"D={tokens:.3g} tokens is below {what} ({floor:.3g} tokens)"
    if not allow_repeat and facts.epoch_tokens is not None:
        used = consumed_tokens(tokens, facts.tokens_per_step)
        if used > facts.epoch_tokens:
            return (f"D={used:.3g} tokens is {used / facts.epoch_tokens:.2f} epochs of the corpus "
                    f"({facts.epoch_tokens:.3g} tokens); set plan.allow_repeat=true to train it anyway")
    return None


def estimate_seconds(flops: float, flops_per_second: float, startup_seconds: float) -> float:
    """Wall time ~ startup + C / throughput, with throughput in 6ND FLOP/s measured on the target machine."""
    return startup_seconds + flops / flops_per_second


# ------------------------------------------------------------------------------------------------ plan section

def _number(value, name: str) -> float:
    return positive_number(value, name)


def _numbers(values, name: str) -> list[float]:
    if isinstance(values, (int, float, str)):
        values = [values]
    if not isinstance(values, (list, tuple)) or not values:
        raise ConfigError(name, f"must be a non-empty list of numbers, got {values!r}", f"set {name}=[1e12,1e13]")
    return [_number(v, f"{name}[{i}]") for i, v in enumerate(values)]


def parse_sizes(sizes) -> list[Size]:
    """`plan.sizes`: preset names of configs/model, or dicts of model fields ({n_layer, d_model, n_head, ...},
    optionally family, n_kv_head, d_ff, n_ctx)."""
    if not isinstance(sizes, (list, tuple)) or not sizes:
        raise ConfigError("plan.sizes", f"must be a non-empty list, got {sizes!r}",
                          "list model presets (e.g. [nano, micro, tiny]) or {n_layer, d_model, n_head} dicts")
    out = []
    for i, size in enumerate(sizes):
        if isinstance(size, str) and size:
            out.append(Size(size, (f"model={size}",)))
        elif isinstance(size, dict):
            unknown = sorted(set(size) - set(SIZE_FIELDS))
            missing = [k for k in ("n_layer", "d_model", "n_head") if k not in size]
            if unknown or missing:
                raise ConfigError(f"plan.sizes[{i}]", f"unknown fields {unknown}" if unknown else f"lacks {missing}",
                                  f"give n_layer, d_model, n_head (and optionally {', '.join(SIZE_FIELDS[4:])}, "
                                  f"family); got {size}")
            label = (f"{size['family']}-" if size.get("family") else "") + f"L{size['n_layer']}-d{size['d_model']}"
            label += f"-ff{size['d_ff']}" if size.get("d_ff") else ""
            out.append(Size(label, tuple(f"model.{k}={size[k]}" for k in SIZE_FIELDS if k in size)))
        else:
            raise ConfigError(f"plan.sizes[{i}]", f"{size!r} is neither a preset name nor a dict",
                              "use e.g. tiny or {n_layer: 2, d_model: 64, n_head: 2}")
    labels = [s.label for s in out]
    if len(set(labels)) != len(labels):
        raise ConfigError("plan.sizes", f"lists a size twice: {labels}", "list each size once")
    return out


def model_sizes(plan: dict, base_model=None) -> list[Size] | None:
    """The plan's sizes: `plan.sizes` (parse_sizes), or `plan.ladder` generated from the sweep's model config
    `base_model` (a scalinglab.config.GPTConfig) under the plan's FLOP convention; None when the plan has neither."""
    if plan.get("sizes") is not None and plan.get("ladder") is not None:
        raise ConfigError("plan.ladder", "is given together with plan.sizes", "keep one of plan.sizes and plan.ladder")
    if plan.get("ladder") is not None:
        if base_model is None:
            raise ConfigError("plan.ladder", "needs the sweep's model config to count parameters",
                              "plan through `python -m scalinglab.sweep plan <name>`")
        return [Size(r.label, r.overrides, r.target, r.miss)
                for r in ladder(plan["ladder"], base_model, plan.get("flops", "6nd"))]
    return parse_sizes(plan["sizes"]) if plan.get("sizes") is not None else None


def _require_sizes(sizes, kind: str) -> list[Size]:
    if sizes is None:
        raise ConfigError("plan.sizes", f"is required for kind {kind}",
                          "list the model sizes, or give plan.ladder: {family, n_min, n_max, per_decade}")
    return sizes


def _value_string(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return str(value)


def _ratio_range(value) -> tuple[float, float] | None:
    """`plan.tokens_per_param`: null, or [lo, hi] with 0 < lo < hi (tokens per parameter, D/N)."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError("plan.tokens_per_param", f"must be [lo, hi], got {value!r}",
                          "set e.g. plan.tokens_per_param=[5,500], or null to keep every size")
    lo, hi = (_number(v, "plan.tokens_per_param") for v in value)
    if not 0 < lo < hi:
        raise ConfigError("plan.tokens_per_param", f"needs 0 < lo < hi, got [{lo:g}, {hi:g}]",
                          "set e.g. plan.tokens_per_param=[5,500]")
    return lo, hi


def _run(size: Size, extra: list[str], facts: ModelFacts, tokens: int, convention: str, **kw) -> Run:
    return Run(overrides=[*size.overrides, *extra], size=size.label, n_params=facts.n_params,
               n_params_nonembed=facts.n_params_nonembed, tokens=tokens,
               flops=facts.flops_per_token[convention] * tokens, flops_6nd=facts.flops_per_token["6nd"] * tokens,
               **kw)


def _note_unknown_corpus(facts: ModelFacts, allow_repeat: bool, out: Plan) -> None:
    note = "corpus not prepared yet: the one-epoch check was skipped (hydra.sweeper.prepare_data=true builds it)"
    if facts.epoch_tokens is None and not allow_repeat and note not in out.notes:
        out.notes.append(note)


def expand(plan: dict, facts_of: Callable[[list[str]], ModelFacts], base_model=None) -> Plan:
    """Every run of the `plan:` section (see the module docstring), in launch order. `base_model` (the sweep's
    GPTConfig) is what a `plan.ladder` varies."""
    from scalinglab.validate import plan_settings

    kind, convention, min_tokens, allow_repeat = plan_settings(plan)
    given = model_sizes(plan, base_model)
    sizes = given if given is not None else [Size("", ())]
    out = Plan()
    if given and given[0].target is not None:  # a ladder: say how far each size's N is from its target
        out.notes.append(summary(given))
        out.misses = {size.label: size.miss for size in given}

    def admit(size: Size, extra: list[str], tokens: float, **kw) -> None:
        facts = facts_of([*size.overrides, *extra])
        _note_unknown_corpus(facts, allow_repeat, out)
        reason = skip_reason(tokens, facts, min_tokens, allow_repeat)
        if reason:
            out.skipped.append(Skip(size.label, tokens, reason, kw.get("budget")))
            return
        used = consumed_tokens(tokens, facts.tokens_per_step)
        out.runs.append(_run(size, [*extra, f"train.tokens={used}"], facts, used, convention, **kw))

    if kind == "isoflop":
        _require_sizes(given, kind)
        ratio = _ratio_range(plan.get("tokens_per_param"))
        for budget in _numbers(plan.get("budgets"), "plan.budgets"):
            for size in sizes:
                facts = facts_of(list(size.overrides))
                tokens = tokens_for_budget(budget, facts.flops_per_token[convention])
                if ratio and not ratio[0] <= tokens / facts.n_params <= ratio[1]:
                    out.skipped.append(Skip(size.label, tokens, f"D/N = {tokens / facts.n_params:.3g} is outside "
                                            f"plan.tokens_per_param [{ratio[0]:g}, {ratio[1]:g}]", budget))
                    continue
                admit(size, [], tokens, budget=budget)
    elif kind in ("kaplan_n", "kaplan_d"):
        _require_sizes(given, kind)
        for tokens in _numbers(plan.get("tokens"), "plan.tokens"):
            for size in sizes:
                admit(size, [], tokens)
    elif kind == "grid":
        grid = plan.get("grid") or {}
        if not isinstance(grid, dict):
            raise ConfigError("plan.grid", f"must map config fields to lists, got {grid!r}",
                              "set e.g. plan.grid={model.n_layer: [1, 2], train.tokens: [1e5, 2e5]}")
        keys = list(grid)
        values = [v if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
        for combo in itertools.product(*values):
            extra = [f"{k}={_value_string(v)}" for k, v in zip(keys, combo) if k != "train.tokens"]
            for size in sizes:
                facts = facts_of([*size.overrides, *extra])
                tokens = dict(zip(keys, combo)).get("train.tokens", facts.tokens)
                admit(size, extra, _number(tokens, "plan.grid[train.tokens]"))
    elif kind == "tune":
        _require_sizes(given, kind)
        lrs = _numbers(plan.get("lrs"), "plan.lrs")
        if len(set(lrs)) < 3:
            raise ConfigError("plan.lrs", f"lists {len(set(lrs))} distinct learning rates",
                              "give >= 3 (5 or more, a factor ~2 apart: e.g. plan.lrs=[1e-3,2e-3,4e-3,8e-3,1.6e-2])")
        batches = plan.get("batch_sizes")
        batches = [None] if batches is None else [int(_number(b, f"plan.batch_sizes[{i}]"))
                                                  for i, b in enumerate(_numbers(batches, "plan.batch_sizes"))]
        ratio = _number(plan.get("data_ratio", 20), "plan.data_ratio")
        for size in sizes:
            n_params = facts_of(list(size.overrides)).n_params
            for batch in batches:
                for lr in sorted(set(lrs)):
                    extra = ["train.lr_rule=constant", f"train.lr={lr:g}"]
                    extra += [] if batch is None else [f"train.batch_size={batch}"]
                    admit(size, extra, ratio * n_params, role="tune")
    elif kind == "batch_size":
        _expand_batch_size(plan, _require_sizes(given, kind), facts_of, admit, out)
    else:
        _expand_wsd(plan, _require_sizes(given, kind), facts_of, convention, min_tokens, allow_repeat, out)
    return _with_role(plan, kind, _with_seeds(plan, kind, out))


def _expand_batch_size(plan: dict, sizes: list[Size], facts_of, admit, out: Plan) -> None:
    """batch_size: every size at every batch size of `plan.batch_sizes` (>= 3 distinct), to `plan.tokens` tokens,
    `train.eval_points=plan.eval_points` (default 32) and `train.grad_noise_scale=true`; a batch size whose run
    would take fewer steps than eval points is skipped with the reason."""
    batches = plan.get("batch_sizes")
    listed = batches if isinstance(batches, (list, tuple)) else []
    batches = sorted({Number(integer=True)(b, f"plan.batch_sizes[{i}]", "8") for i, b in enumerate(listed)})
    if len(batches) < 3:
        raise ConfigError("plan.batch_sizes", f"must list >= 3 distinct batch sizes (sequences per step), got "
                          f"{plan.get('batch_sizes')!r}", "give e.g. plan.batch_sizes=[4,8,16,32] (x ~2.5 apart)")
    tokens = plan.get("tokens")
    if isinstance(tokens, (list, tuple)):
        raise ConfigError("plan.tokens", f"is a list ({tokens!r}); every batch size trains to one budget",
                          "give one number, e.g. plan.tokens=2e6")
    tokens = _number(tokens, "plan.tokens")
    points = Number(integer=True)(plan.get("eval_points", 32), "plan.eval_points", "32")
    for size in sizes:
        for batch in batches:
            extra = [f"train.batch_size={batch}", f"train.eval_points={points}", "train.grad_noise_scale=true"]
            steps = steps_for_tokens(tokens, facts_of([*size.overrides, *extra]).tokens_per_step)
            if steps < points:
                out.skipped.append(Skip(size.label, tokens, f"batch size {batch} takes {steps} steps, fewer than "
                                        f"plan.eval_points={points}: raise plan.tokens or drop the batch size"))
                continue
            admit(size, extra, tokens, role="batch_size")


ROLES = ("run", "tune", "ablation", "transfer")  # what plan.role may set (long/cooldown belong to wsd_budgets)


def _with_role(plan: dict, kind: str, out: Plan) -> Plan:
    role = plan.get("role")
    if role is None:
        return out
    if kind == "wsd_budgets" or role not in ROLES:
        raise ConfigError("plan.role", f"cannot be {role!r} for kind {kind}" if role in ROLES
                          else f"unknown role {role!r}", f"use one of {', '.join(ROLES)} (not with wsd_budgets)")
    out.runs = [replace(run, role=role) for run in out.runs]
    return out


def _seed_list(value, name: str) -> list[int] | None:
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in values) \
            or len(set(values)) != len(values):
        raise ConfigError(name, f"must be a list of distinct integers >= 0, got {value!r}", f"set {name}=[0,1]")
    return list(values)


def _with_seeds(plan: dict, kind: str, out: Plan) -> Plan:
    """Each run once per seed of `plan.seeds` (the largest isoFLOP budget: `plan.seeds_at_largest`), seeds
    adjacent in the launch order; without either key the plan is unchanged."""
    seeds = _seed_list(plan.get("seeds"), "plan.seeds")
    largest = _seed_list(plan.get("seeds_at_largest"), "plan.seeds_at_largest")
    if seeds is None and largest is None:
        return out
    if kind == "wsd_budgets":
        raise ConfigError("plan.seeds", "is not supported by kind wsd_budgets (cooldowns branch from one long run)",
                          "launch one wsd_budgets sweep per seed with train.seed=<s>")
    if largest is not None and kind != "isoflop":
        raise ConfigError("plan.seeds_at_largest", f"applies to kind isoflop only, not {kind}",
                          "use plan.seeds")
    top = max((r.budget for r in out.runs if r.budget is not None), default=None)
    runs = []
    for run in out.runs:
        these = largest if largest is not None and run.budget == top else seeds
        for seed in these if these is not None else [None]:
            extra = [] if seed is None else [f"train.seed={seed}"]
            runs.append(replace(run, overrides=[*run.overrides, *extra]))
    out.runs = runs
    return out


def _expand_wsd(plan: dict, sizes: list[Size], facts_of, convention: str, min_tokens, allow_repeat: bool,
                out: Plan) -> None:
    """wsd_budgets: per size, one constant-LR run to the last branch step, then one cooldown per D_i. Cooldown i
    trains D_i tokens with schedule wsd, the last max(1, round(cf S_i)) of its S_i steps cooling down, so it
    branches from the long run's checkpoint at step S_i - round(cf S_i) (Hagele et al. 2024, section 3). The long
    runs come first; the sweeper launches them as one batch and the cooldowns as the next."""
    budgets = sorted(set(_numbers(plan.get("tokens"), "plan.tokens")))
    cf = plan.get("cooldown_frac", 0.2)
    if isinstance(cf, bool) or not isinstance(cf, (int, float)) or not 0 < cf < 1:
        raise ConfigError("plan.cooldown_frac", f"must be in (0, 1), got {cf!r}", "set plan.cooldown_frac=0.2")
    cooldowns: list[Run] = []
    for size in sizes:
        facts = facts_of(list(size.overrides))
        _note_unknown_corpus(facts, allow_repeat, out)
        tps = facts.tokens_per_step
        kept = []
        for tokens in budgets:
            reason = skip_reason(tokens, facts, min_tokens, allow_repeat)
            if reason:
                out.skipped.append(Skip(size.label, tokens, reason))
            else:
                kept.append(steps_for_tokens(tokens, tps))
        if not kept:
            continue
        branch = {steps: cooldown_start(steps, cf) for steps in kept}
        long_steps = max(branch.values())
        long_index = len(out.runs)
        out.runs.append(_run(size, ["train.schedule=constant", f"train.tokens={long_steps * tps}",
                                    f"++train.save_at_steps=[{','.join(str(b) for b in sorted(set(branch.values())))}]"],
                             facts, long_steps * tps, convention, role="long", trained_tokens=long_steps * tps))
        for steps, start in branch.items():
            cooldowns.append(_run(size, ["train.schedule=wsd", f"train.cooldown_frac={cf}", f"train.tokens={steps * tps}"],
                                  facts, steps * tps, convention, role="cooldown", branch_of=long_index,
                                  branch_step=start, trained_tokens=(steps - start) * tps))
    out.runs.extend(cooldowns)


def estimate(plan: Plan, flops_per_second: float = DEFAULT_FLOPS_PER_SECOND,
             startup_seconds: float = DEFAULT_STARTUP_SECONDS) -> Plan:
    """Fill in each run's estimated seconds from the FLOPs it trains itself (a cooldown: only its last part)."""
    for run in plan.runs:
        trained = run.trained_tokens if run.trained_tokens is not None else run.tokens
        run.seconds = estimate_seconds(run.flops_6nd * trained / run.tokens, flops_per_second, startup_seconds)
    return plan


def format_table(plan: Plan, convention: str = "6nd") -> str:
    """The plan as a text table: one line per run (N, D, C, estimated time), then the skipped sizes and why."""
    head = ["#", "size", "role", "N", "N_nonembed", "D", f"C ({convention})", "budget", "est", "run_id"]
    rows = [[str(i), r.size or "-", r.role + (f"<-#{r.branch_of}@{r.branch_step}" if r.branch_of is not None else ""),
             si(r.n_params), si(r.n_params_nonembed), si(r.tokens), f"{r.flops:.3g}",
             "-" if r.budget is None else f"{r.budget:.3g}", duration(r.seconds), r.run_id or "-"]
            for i, r in enumerate(plan.runs)]
    if plan.misses:  # a ladder: how far each size's N is from its log-even target
        head.insert(5, "N vs target")
        for row, r in zip(rows, plan.runs):
            row.insert(5, f"{plan.misses[r.size]:+.1%}" if r.size in plan.misses else "-")
    settings = [[o for o in r.overrides if not o.startswith(("model.", "++train.branch", "train.tokens="))]
                for r in plan.runs]  # beyond size and D, what tells runs apart: lr, batch size, seed ...
    shared = set.intersection(*map(set, settings)) if settings else set()
    if any(set(s) - shared for s in settings):
        head.append("varies")
        for row, s in zip(rows, settings):
            row.append(" ".join(o.removeprefix("train.") for o in s if o not in shared) or "-")
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in [head, *rows]]
    lines.append(f"{len(plan.runs)} runs, C total {sum(r.flops for r in plan.runs):.3g} FLOPs, "
                 f"estimated {duration(sum(r.seconds for r in plan.runs))} run one after another")
    lines += [f"note: {n}" for n in plan.notes]
    for s in plan.skipped:
        budget = "" if s.budget is None else f" at C={s.budget:.3g}"
        lines.append(f"skipped {s.size or 'run'}{budget}: {s.reason}")
    return "\n".join(lines)
