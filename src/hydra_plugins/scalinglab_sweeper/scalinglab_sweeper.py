"""`hydra/sweeper=scalinglab`: plan: section -> one override list per run -> the configured Hydra launcher.

Selected by every sweep file (scalinglab/sweeps/*.yaml) (`override hydra/sweeper: scalinglab`). Like Hydra's basic sweeper it combines the
command line's overrides (sweep syntax `a=1,2` expands), but the runs themselves come from `plan:` (isoFLOP token
budgets computed per size, skips with reasons; see scalinglab.sweep_plan). Launchers are Hydra's own, unchanged:
basic (sequential), joblib (parallel; torch threads set so runs x threads <= cores), submitit_local,
submitit_slurm.
"""
# No `from __future__ import annotations` here: Hydra loads plugin modules without registering them in sys.modules,
# and dataclasses cannot resolve string annotations of such a module.
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


@dataclass
class ScalinglabSweeperConf:
    _target_: str = "hydra_plugins.scalinglab_sweeper.scalinglab_sweeper.ScalinglabSweeper"
    dry_run: bool = False  # print the plan (N, D, C, estimated time) and launch nothing
    prepare_data: Optional[bool] = None  # build the token cache before planning (null: when launching, not dry)
    flops_per_second: float = 1.0e10  # 6ND FLOP/s of one run on this machine, for the time estimate
    startup_seconds: float = 8.0  # launch to first step of one run, for the time estimate
    stack: int = 1  # train up to this many same-shape runs as one stacked job (scalinglab.stacked); 1: off


ConfigStore.instance().store(group="hydra/sweeper", name="scalinglab", node=ScalinglabSweeperConf,
                             provider="scalinglab")


class ScalinglabSweeper(Sweeper):
    def __init__(self, dry_run: bool = False, prepare_data: Optional[bool] = None, flops_per_second: float = 1.0e10,
                 startup_seconds: float = 8.0, stack: int = 1) -> None:
        self.dry_run, self.prepare_data, self.stack = dry_run, prepare_data, stack
        self.flops_per_second, self.startup_seconds = flops_per_second, startup_seconds
        self.config: Optional[DictConfig] = None
        self.hydra_context: Optional[HydraContext] = None
        self.launcher = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context,
                                                                task_function=task_function, config=config)

    def _compose(self, overrides: List[str]) -> DictConfig:
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            del cfg["hydra"]
        return cfg

    def _plan(self, arguments: List[str]):
        """Expand, print and (unless a dry run) write the plan; None when there is nothing to launch."""
        from scalinglab.store import check_name, sweep_dir, write_text
        from scalinglab.sweep import build_plan, write_plan
        from scalinglab.sweep_plan import format_table

        cfg = self.config
        sweep = check_name(str(cfg.sweep), "sweep")
        if isinstance(self.stack, bool) or not isinstance(self.stack, int) or self.stack < 1:
            from scalinglab.errors import ConfigError
            raise ConfigError("hydra.sweeper.stack", f"must be a whole number >= 1, got {self.stack!r}",
                              "set hydra.sweeper.stack=1 (off) or e.g. 8 on a GPU")
        prepare = (not self.dry_run) if self.prepare_data is None else bool(self.prepare_data)
        plan = build_plan(cfg, arguments, self._compose, prepare, self.flops_per_second, self.startup_seconds)
        convention = OmegaConf.select(cfg, "plan.flops", default="6nd")
        print(f"sweep {sweep} ({OmegaConf.select(cfg, 'plan.kind')}):\n{format_table(plan, convention)}", flush=True)
        if self.dry_run or not plan.runs:
            return None
        write_plan(plan, sweep_dir(cfg.paths.runs, sweep), sweep)
        write_text(Path(cfg.hydra.sweep.dir) / "multirun.yaml", OmegaConf.to_yaml(cfg))
        return plan

    def sweep(self, arguments: List[str]) -> Any:
        """Launch the plan wave by wave, then print what the launch did and left (sweep.launch_outcome) and exit
        with status 1 if a run it trained failed; runs another launch holds are counted, not waited for."""
        import sys
        import time

        from hydra.core.utils import JobStatus

        from scalinglab.errors import exit_on_user_error
        from scalinglab.store import sweep_dir
        from scalinglab.sweep import launch_outcome, launch_waves, threads_per_run

        started = time.time()
        plan = exit_on_user_error(self._plan)(arguments)  # a user mistake: one line, exit status 2
        if plan is None:
            return []
        cfg = self.config
        launcher_target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default=""))
        user_threads = OmegaConf.select(cfg, "train.threads") is not None or any(
            a.lstrip("+").startswith("train.threads=") for a in arguments)
        returns, job_idx, job_rows, waiting = [], 0, [], 0
        for wave in launch_waves(plan):
            ready = self._ready(plan, wave)
            waiting += len(wave) - len(ready)
            if not ready:
                continue
            groups = self._stack_groups(plan, ready)
            threads = None if user_threads else threads_per_run(
                launcher_target, OmegaConf.select(cfg, "hydra.launcher.n_jobs"), len(groups))
            extra = [f"train.threads={threads}"] if threads else []
            overrides = [self._job(plan, group, extra) for group in groups]
            results = self.launcher.launch(overrides, initial_job_idx=job_idx)
            job_idx += len(overrides)
            returns.append(results)
            for result in results:
                if result.status == JobStatus.COMPLETED:
                    value = result.return_value
                    job_rows.append(value if isinstance(value, list) else None)
                else:  # an exception in the job (Hydra keeps it instead of raising it)
                    error = result._return_value
                    print(f"job {' '.join(result.overrides or [])} raised {type(error).__name__}: {error}",
                          file=sys.stderr, flush=True)
                    job_rows.append(None)
        line, status = launch_outcome(str(cfg.sweep), job_rows, sweep_dir(cfg.paths.runs, str(cfg.sweep)), started,
                                      waiting)
        print(line, flush=True)
        if status:
            sys.exit(status)
        return returns

    def _ready(self, plan, wave: List[int]) -> List[int]:
        """The runs of `wave` that can start: all of them, except WSD cooldowns whose long run is not complete
        (still running in another launch, or failed): those would fail on the missing branch checkpoint."""
        from scalinglab.store import run_dir, run_status

        cfg = self.config

        def long_run_complete(i: int) -> bool:
            long = plan.runs[plan.runs[i].branch_of].run_id
            return run_status(run_dir(cfg.paths.runs, str(cfg.sweep), long)) == "complete"

        return [i for i in wave if plan.runs[i].branch_of is None or long_run_complete(i)]

    def _stack_groups(self, plan, wave: List[int]) -> List[List[int]]:
        """The runs of launch wave `wave` as jobs: one run each, or (hydra.sweeper.stack=K > 1) up to K runs that can
        train stacked (same scalinglab.stacked.stack_key); complete runs stay single (their job only skips)."""
        if self.stack == 1:
            return [[i] for i in wave]
        from scalinglab.stacked import stack_groups, stack_key
        from scalinglab.store import run_dir, run_status

        cfg = self.config
        keys = []
        for i in wave:
            done = run_status(run_dir(cfg.paths.runs, str(cfg.sweep), plan.runs[i].run_id)) == "complete"
            keys.append(None if done else stack_key(self._compose(plan.runs[i].overrides)))
        return [[wave[j] for j in group] for group in stack_groups(keys, self.stack)]

    def _job(self, plan, group: List[int], extra: List[str]) -> List[str]:
        """One job's overrides; a stacked group's job gets its members' configs through a group file."""
        first = plan.runs[group[0]].overrides + extra
        if len(group) == 1:
            return first
        from scalinglab.stacked import STACK_ENV, write_group_file
        from scalinglab.store import sweep_dir

        cfg = self.config
        members = [self._compose(plan.runs[i].overrides + extra) for i in group]
        file = write_group_file(sweep_dir(cfg.paths.runs, str(cfg.sweep)), members,
                                [plan.runs[i].run_id for i in group])
        return first + [f"++hydra.job.env_set.{STACK_ENV}={file}"]
