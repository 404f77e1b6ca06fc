"""Sweeps: plan, launch and check a whole sweep of runs (docs/DESIGN.md section 4; docs/SWEEPS.md).

    python -m scalinglab.sweep plan isoflop [overrides]     # the table of runs (N, D, C, est. time); trains nothing
    python -m scalinglab.sweep run isoflop [overrides]      # = python -m scalinglab.train -m --config-dir sweeps
                                                            #     --config-name isoflop [overrides]
    python -m scalinglab.sweep status runs/isoflop          # complete / running / failed / diverged / pending
    python -m scalinglab.sweep ladder family=llama n_min=1e4 n_max=1e6 per_decade=4   # sizes of a ladder
    python -m scalinglab.sweep presets                      # the named sizes (scalinglab/presets.py) and their N

A sweep file (scalinglab/sweeps/<name>.yaml, or a path to your own .yaml) is a primary Hydra config:
`defaults: [config, override hydra/sweeper: scalinglab]` plus a `plan:` section. The scalinglab sweeper
(hydra_plugins/scalinglab_sweeper) composes each candidate run's config, expands the plan (scalinglab.sweep_plan),
writes the plan to `<runs>/<sweep>/plan.parquet` and hands the overrides to whatever launcher is configured (basic,
joblib, submitit_local, submitit_slurm). Each finished run of a launched sweep prints `k/n done, ETA ...`.
Training, skipping complete runs and resuming interrupted ones is train.py's job; `store.run_lock` guarantees that
two launches of one sweep never train the same run at once.
"""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from scalinglab import resources
from scalinglab.config import CONFIG_DIR, TrainConfig, did_you_mean
from scalinglab.errors import ConfigError, report_user_error
from scalinglab.runs import run_id, run_identity, tokens_per_epoch
from scalinglab.store import (CONFIG, LOCK, SUMMARY, DamagedFile, check_run, is_locked, read_summary, run_status,
                              write_parquet)
from scalinglab.sweep_plan import DEFAULT_FLOPS_PER_SECOND, DEFAULT_STARTUP_SECONDS, ModelFacts, Plan, estimate, expand
from scalinglab.validate import check_sweep_file, check_sweep_overrides

SWEEPS_DIR = resources.SWEEPS_DIR
PLAN_FILE = "plan.parquet"
STATES = ("complete", "running", "interrupted", "failed", "diverged", "damaged", "pending")


# ------------------------------------------------------------------------------------------------ planning

def cli_combinations(arguments: list[str]) -> list[list[str]]:
    """The command line's overrides as a cartesian product (`train.seed=0,1` gives two lists), like Hydra's basic
    sweeper; plain overrides appear in every list."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(arguments)
    choices = []
    for override in parsed:
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(combo) for combo in itertools.product(*choices)]


def _epoch_tokens(cfg, prepare: bool) -> int | None:
    """Tokens one epoch of the run's corpus holds (runs.tokens_per_epoch); None if the cache is not built and
    `prepare` is False."""
    from scalinglab.build import build_datamodule
    from scalinglab.token_cache import read_manifest

    if not prepare and not any((Path(cfg.paths.cache) / "tokens").glob("*/manifest.json")):
        return None  # no cache at all: no need to import the data module (torch, Lightning) to name one
    dm = build_datamodule(cfg, progress=False)
    if prepare:
        manifest = dm.prepare()
    elif (dm.cache_path / "manifest.json").exists():
        manifest = read_manifest(dm.cache_path)
    else:
        return None
    return tokens_per_epoch(int(manifest["tokens_train"]), dm.n_ctx)


def model_facts(cfg, prepare_data: bool, _epochs: dict | None = None, _models: dict | None = None) -> ModelFacts:
    """Parameter counts (scalinglab.config.param_counts: no torch), FLOPs per token and sizes of `cfg` (a composed
    config or its resolved container); `_epochs` and `_models` memoise the corpus and the model facts."""
    import json

    from omegaconf import OmegaConf

    from scalinglab.build import build_plain
    from scalinglab.config import param_counts
    from scalinglab.flops import flops_per_token

    c = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
    models = {} if _models is None else _models
    model_key = json.dumps(c["model"], sort_keys=True, default=str)
    if model_key not in models:
        model_cfg = build_plain(c["model"], "model")
        counts = param_counts(model_cfg)
        models[model_key] = (model_cfg, counts, flops_per_token(model_cfg, counts))
    model_cfg, counts, per_token = models[model_key]
    train = TrainConfig.from_dict(c["train"])
    key = (json.dumps(c["data"], sort_keys=True, default=str), model_cfg.n_ctx, str(c["paths"]["cache"]))
    epochs = {} if _epochs is None else _epochs
    if key not in epochs:
        epochs[key] = _epoch_tokens(OmegaConf.create(c), prepare_data)
    return ModelFacts(n_params=counts["n_params"], n_params_nonembed=counts["n_params_nonembed"],
                      flops_per_token={k.removeprefix("flops_"): v for k, v in per_token.items()},
                      tokens_per_step=train.batch_size * model_cfg.n_ctx, tokens=train.tokens,
                      epoch_tokens=epochs[key])


def build_plan(config, arguments: list[str], compose: Callable[[list[str]], object], prepare_data: bool,
               flops_per_second: float = DEFAULT_FLOPS_PER_SECOND,
               startup_seconds: float = DEFAULT_STARTUP_SECONDS) -> Plan:
    """Expand `config.plan` for every combination of the command line's overrides; fill in run ids.

    `compose(overrides)` returns the job config a launcher would build from those overrides (the sweeper uses
    Hydra's config loader, so run ids match what train.py computes).
    """
    from omegaconf import OmegaConf

    from scalinglab.build import instantiate
    from scalinglab.validate import validate

    if OmegaConf.select(config, "plan") is None:
        raise ConfigError("plan", "the config has no plan: section", "launch a sweep file: --config-dir sweeps "
                          "--config-name <name>, or add plan: {kind: ..., sizes: ...}")
    from scalinglab.fastcompose import Composer

    plan_section = OmegaConf.to_container(config.plan, resolve=True)
    epochs: dict = {}
    models: dict = {}
    fast = Composer(compose)  # one Hydra composition per distinct group choice, not one per run
    known: dict = {}  # the facts of each override list (an isoflop plan asks twice per run)
    total = Plan()
    for cli in cli_combinations(arguments):
        base = compose(cli)
        validate(base)  # a bad train.* or trainer.* setting is named here, not met mid-plan
        fast.add(cli, base)

        def facts_of(overrides: list[str], cli=cli, known=known) -> ModelFacts:
            key = (*cli, "--", *overrides)
            if key not in known:
                known[key] = model_facts(fast([*cli, *overrides]), prepare_data, epochs, models)
            return known[key]

        part = expand(plan_section, facts_of, base_model=instantiate(base.model) if "ladder" in plan_section else None)
        offset = len(total.runs)
        for run in part.runs:
            run.overrides = [*cli, *run.overrides]
            if run.branch_of is not None:
                run.branch_of += offset
        total.runs.extend(part.runs)
        total.skipped.extend(part.skipped)
        total.notes.extend(n for n in part.notes if n not in total.notes)
        total.misses.update(part.misses)
    for run in total.runs:  # long runs precede their cooldowns, so their ids are known when a cooldown needs one
        if run.branch_of is not None:
            run.overrides += [f"++train.branch_from={total.runs[run.branch_of].run_id}",
                              f"++train.branch_step={run.branch_step}"]
        run.run_id = run_id(run_identity(fast(run.overrides)))  # the device kind as train.py resolves it
    return estimate(total, flops_per_second, startup_seconds)


def launch_waves(plan: Plan) -> list[list[int]]:
    """Run indices in launch waves, each launched once the one before it has finished: every run that branches
    from nothing first, then the cooldowns (they start from the long runs' checkpoints)."""
    first = [i for i, r in enumerate(plan.runs) if r.branch_of is None]
    second = [i for i, r in enumerate(plan.runs) if r.branch_of is not None]
    return [wave for wave in (first, second) if wave]


def launch_outcome(sweep: str, job_rows: list[list[dict] | None], sweep_dir: Path | str, started: float,
                   waiting: int = 0) -> tuple[str, int]:
    """What a launch did and left, and its exit status: (one line, 0 or 1). `job_rows`: per job, the rows
    train.sweep_job returned (None for a job that raised). A run another launch held (`running`) counts as still
    running elsewhere while its lock is held, else as finished there; `waiting`: WSD cooldowns not started (their
    long run is not complete). The status is 1 when a run this launch trained failed or a job raised, else 0: runs
    elsewhere, diverged runs (a result) and runs that ended before this launch do not make it fail."""
    counts = dict.fromkeys(("complete", "failed", "diverged", "skipped", "ended_before", "elsewhere",
                            "finished_elsewhere", "crashed"), 0)
    for rows in job_rows:
        if rows is None:
            counts["crashed"] += 1
            continue
        for row in rows:
            status, finished_at = row.get("status"), row.get("finished_at") or 0.0
            if status == "running":
                locked = row.get("run_id") is not None and is_locked(Path(sweep_dir) / row["run_id"])
                counts["elsewhere" if locked else "finished_elsewhere"] += 1
            elif finished_at < started:
                counts["skipped" if status == "complete" else "ended_before"] += 1
            elif status in counts:
                counts[status] += 1
    trained = counts["complete"] + counts["failed"] + counts["diverged"]
    parts = [f"{trained} trained here ({counts['complete']} complete, {counts['failed']} failed, "
             f"{counts['diverged']} diverged)", f"{counts['skipped']} already complete"]
    if counts["ended_before"]:
        parts.append(f"{counts['ended_before']} failed or diverged before (rerun with rerun_failed=true)")
    if counts["crashed"]:
        parts.append(f"{counts['crashed']} jobs crashed (see the errors above)")
    if counts["elsewhere"] or counts["finished_elsewhere"]:
        parts.append(f"{counts['elsewhere']} still running in another launch"
                     + (f", {counts['finished_elsewhere']} finished there" if counts["finished_elsewhere"] else ""))
    if waiting:
        parts.append(f"{waiting} cooldowns not started (their long run is not complete; relaunch when it is)")
    status = 1 if counts["failed"] or counts["crashed"] else 0
    return f"sweep {sweep}: launch done: " + "; ".join(parts) + f" (exit status {status})", status


def threads_per_run(launcher_target: str, n_jobs: int | None, n_runs: int, cores: int | None = None) -> int | None:
    """torch threads per run so that parallel runs x threads <= cores (joblib launcher); None: leave as is."""
    if "joblib" not in launcher_target.lower():
        return None
    cores = cores or len(os.sched_getaffinity(0))
    if n_jobs is None or n_jobs == 0:
        n_jobs = 1
    parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores
    return max(1, cores // max(1, min(parallel, n_runs)))


def plan_frame(plan: Plan, sweep: str) -> pd.DataFrame:
    return pd.DataFrame([{"sweep": sweep, "index": i, "run_id": r.run_id, "size": r.size, "role": r.role,
                          "n_params": r.n_params, "n_params_nonembed": r.n_params_nonembed, "tokens": r.tokens,
                          "flops": r.flops, "flops_6nd": r.flops_6nd, "budget": r.budget,
                          "estimated_seconds": r.seconds, "overrides": " ".join(r.overrides)}
                         for i, r in enumerate(plan.runs)])


def write_plan(plan: Plan, sweep_dir: Path | str, sweep: str) -> Path:
    """`<runs>/<sweep>/plan.parquet`: what status compares the run directories against (written atomically)."""
    return write_parquet(Path(sweep_dir) / PLAN_FILE, plan_frame(plan, sweep))


# ------------------------------------------------------------------------------------------------ status

def _summary_or_none(rdir: Path) -> dict | None:
    try:
        return read_summary(rdir)
    except DamagedFile:
        return None


def read_plan(sweep_dir: Path) -> tuple[pd.DataFrame, str | None]:
    """The sweep's plan.parquet (empty without one) and, when it does not read back, why (then it is empty too:
    the next launch writes it again)."""
    file = Path(sweep_dir) / PLAN_FILE
    if not file.exists():
        return pd.DataFrame(), None
    try:
        planned = pd.read_parquet(file)
        planned["run_id"]
    except Exception as exc:  # pyarrow raises many kinds; a plan without run ids is no plan either
        return pd.DataFrame(), f"{file} cannot be read ({type(exc).__name__})"
    return planned, None


def sweep_status(sweep_dir: Path | str) -> pd.DataFrame:
    """One row per run (planned or found on disk): run_id, state, and the summary's N, D, loss where known.

    Every run is checked (store.check_run) in the same pass: a run with a file that does not read back has state
    `damaged` and a `problem` naming each such file, so one look lists them all."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(str(sweep_dir), "is not a sweep directory", "give runs/<sweep> (paths.runs/<sweep name>)")
    planned, plan_problem = read_plan(sweep_dir)
    on_disk = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and ((p / CONFIG).exists() or (p / SUMMARY).exists() or (p / LOCK).exists()))
    ids = list(planned["run_id"]) if len(planned) else []
    ids += [p.name for p in on_disk if p.name not in set(ids)]
    rows = []
    for rid in ids:
        rdir = sweep_dir / rid
        damage = check_run(rdir) if rdir.is_dir() else []
        state = "damaged" if damage else run_status(rdir) if rdir.is_dir() else "pending"
        if state in ("interrupted", "pending") and rdir.is_dir() and is_locked(rdir):
            state = "running"
        summary = _summary_or_none(rdir) if rdir.is_dir() else None
        row = {"run_id": rid, "state": state}
        if damage:
            row["problem"] = "; ".join(f"{d.file.relative_to(rdir)} {d.problem}" for d in damage)
        if len(planned) and rid in set(planned["run_id"]):
            p = planned[planned["run_id"] == rid].iloc[0]
            row.update(size=p["size"], role=p["role"], N=p["n_params"], D=p["tokens"], C=p["flops"])
        if summary:
            row.update(N=summary.get("n_params"), D=summary.get("tokens"), loss=summary.get("loss"),
                       wall_time=summary.get("wall_time"))
        rows.append(row)
    table = pd.DataFrame(rows, columns=None if rows else ["run_id", "state"])
    table.attrs["plan_problem"] = plan_problem
    return table


def progress_line(sweep_dir: Path | str) -> str | None:
    """`sweep <name>: k/n done, ETA <time>` for a launched sweep (None without a plan): k of the n planned runs
    have a summary; the ETA extrapolates the runs finished since the plan was written (the launch)."""
    import time

    from scalinglab.units import duration

    sweep_dir = Path(sweep_dir)
    plan_file = sweep_dir / PLAN_FILE
    planned, problem = read_plan(sweep_dir)
    if problem is not None or not len(planned):
        return None
    started, planned = plan_file.stat().st_mtime, planned["run_id"]
    summaries = (_summary_or_none(sweep_dir / rid) for rid in planned)
    finished = [summary["finished_at"] for summary in summaries if summary is not None]
    n, new = len(planned), sum(t >= started for t in finished)
    left = n - len(finished)
    eta = "0s" if not left else duration((time.time() - started) / new * left) if new else "unknown"
    return f"sweep {sweep_dir.name}: {len(finished)}/{n} done, ETA {eta}"


def format_status(table: pd.DataFrame, sweep_dir: Path | str | None = None) -> str:
    """The counts line, the table (without the problem column) and, when some runs are damaged, one line per
    damaged run naming its files and a Fix line."""
    counts = table["state"].value_counts().to_dict() if len(table) else {}
    line = ", ".join(f"{counts.get(s, 0)} {s}" for s in STATES)
    shown = table.drop(columns=["problem"]) if "problem" in table else table
    with pd.option_context("display.max_rows", 500, "display.width", 160):
        text = f"{len(table)} runs: {line}\n" + (shown.to_string(index=False) if len(table) else "")
    damaged = table[table["state"] == "damaged"] if len(table) else table
    if len(damaged):
        where = Path(sweep_dir) if sweep_dir is not None else Path(".")
        text += f"\n{len(damaged)} damaged run{'s' if len(damaged) > 1 else ''}:\n" + "".join(
            f"  {where / rid}: {problem}\n" for rid, problem in zip(damaged["run_id"], damaged["problem"]))
        text += ("Fix: relaunch the sweep: each damaged file is moved aside (<name>.damaged-<time>) and those runs "
                 "are trained again; no other run is")
    if table.attrs.get("plan_problem"):
        text += (f"\nplan: {table.attrs['plan_problem']}; runs not started are not listed. Fix: relaunch the sweep "
                 "(it writes the plan again), or `sweep plan` to see it")
    return text


# ------------------------------------------------------------------------------------------------ command line

USAGE = """usage:
  scalinglab-sweep plan <name> [overrides]        expand sweeps/<name>.yaml, print runs (N, D, C, est. time)
  scalinglab-sweep run <name> [overrides]         launch it (e.g. hydra/launcher=joblib)
  scalinglab-sweep status <runs/sweep dir> [--json]  complete / running / failed / diverged / pending
  scalinglab-sweep ladder key=value ...           sizes of a ladder: family, n_min, n_max, per_decade,
                                                  aspect_ratio, head_dim, tolerance (plan.ladder's keys),
                                                  flops (default kaplan), vocab_size (4096), n_ctx (256)
  scalinglab-sweep presets [vocab_size=V n_ctx=T flops=C]   the named sizes and their N

<name> is a sweep shipped with scalinglab or a path to your own .yaml sweep file; overrides are Hydra's
(key=value, or key=a,b for one run per value). `python -m scalinglab.sweep` is the same command.
"""


def _sweep_file(name: str) -> tuple[Path, str]:
    """(config dir, config name) of a sweep: a name in sweeps/ or a path to a .yaml file (check_sweep_file)."""
    file = Path(name)
    if file.suffix in (".yaml", ".yml") or "/" in name:
        if file.suffix != ".yaml" or not file.is_file():
            what = "is a directory" if file.is_dir() else "does not exist" if not file.exists() else "is not a .yaml file"
            raise ConfigError("sweep", f"the sweep file {file} {what}",
                              "give a sweep name (scalinglab-sweep plan quickstart) or the path of a .yaml sweep file")
        check_sweep_file(file)
        return file.resolve().parent, file.stem
    if not (SWEEPS_DIR / f"{name}.yaml").exists():
        known = sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
        raise ConfigError("sweep", f"no sweep file sweeps/{name}.yaml{did_you_mean(name, known)}",
                          f"use one of {known} or a path to a .yaml")
    return SWEEPS_DIR, name


def _env_with_plugin() -> dict:
    """The environment for the Hydra process: src/ on PYTHONPATH when an editable install made before
    src/hydra_plugins existed does not map the sweeper plugin (re-running `pip install -e .` fixes it for good)."""
    import importlib.util

    env = dict(os.environ)
    src = resources.PACKAGE_DIR.parent  # src/ of a checkout (site-packages of an install, which maps it anyway)
    if importlib.util.find_spec("hydra_plugins.scalinglab_sweeper") is None and (
            src / "hydra_plugins" / "scalinglab_sweeper").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(arg in ("-h", "--help") for arg in argv[:2]):
        print(USAGE)
        return 0
    if argv[:1] in (["ladder"], ["presets"]):
        from scalinglab import ladder
        try:
            print(ladder.main(argv[0], argv[1:]))
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if len(argv) < 2 or argv[0] not in ("plan", "run", "status"):
        print(USAGE, file=sys.stderr)
        return 2
    command, target, rest = argv[0], argv[1], argv[2:]
    try:
        if command == "status":
            if set(rest) - {"--json"}:
                raise ConfigError("status", f"unknown arguments {rest}", "give a sweep directory and optionally --json")
            table = sweep_status(target)
            print(table.to_json(orient="records") if rest else format_status(table, target))
            return 0
        config_dir, config_name = _sweep_file(target)
        check_sweep_overrides(config_dir, config_name, rest)
        args = [sys.executable, "-m", "scalinglab.train", "-m", "--config-dir", str(config_dir),
                "--config-name", config_name, *rest]
        if command == "plan":
            args.append("hydra.sweeper.dry_run=true")
    except Exception as exc:  # a user mistake: one line and status 2 (anything else is re-raised)
        return report_user_error(exc)
    sys.stdout.flush()
    os.execve(sys.executable, args, _env_with_plugin())  # Hydra owns the command line from here (multirun, launchers, overrides)


if __name__ == "__main__":
    sys.exit(main())
