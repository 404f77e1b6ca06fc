"""Stacked training: K runs of one shape in one process, each written as the ordinary run it is.

    from scalinglab.stacked import train_group
    train_group([cfg_seed0, cfg_seed1, cfg_lr_1e-3])   # composed run configs; one summary row each

The sweeper does this by itself with `hydra.sweeper.stack=K` (docs/SWEEPS.md). Members may differ in anything
but the shape and the optimizer settings they share (`stack_key`): seed, learning rate and its rule, schedule,
token budget, eval points, early stopping. Each member is a LanguageModel (module.py) whose steps a Stack
(stacked_step.py) takes, so its run directory is a single run's: the same run_id, config.yaml, metrics rows
(module.record), summary (train.summary_row), lock, atomic writes and status. A member checkpoints where a single
run does (at its eval points and every train.checkpoint_minutes), as its own checkpoints/last.ckpt, and leaves the
stack when it ends (its budget, early stopping, divergence) while the others go on. A relaunch resumes each member
from its checkpoint, stacked or alone, and from a single run's checkpoint too.

Losses are read from the device every SYNC_EVERY steps (or when a member evaluates, checkpoints or ends), not at
every step: a diverged member is found within SYNC_EVERY steps and reported at the step its loss first failed.
"""
from __future__ import annotations

import math
import time
from contextlib import ExitStack
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from scalinglab.errors import ConfigError
from scalinglab.module import Diverged, LanguageModel
from scalinglab.optim import decay_groups
from scalinglab.runs import resolve_device_kind, resolve_precision
from scalinglab.stacked_step import OptimizerSettings, Stack
from scalinglab.store import CHECKPOINT, StoreError, atomic_write, run_lock, write_metrics

__all__ = ["stack_key", "train_group", "train_members", "is_member_checkpoint", "build_stack", "stack_groups",
           "write_group_file", "train_group_file", "STACK_ENV", "SYNC_EVERY"]

SYNC_EVERY = 8
STACK_ENV = "SCALINGLAB_STACK_GROUP"  # set (hydra.job.env_set) for the job that trains a group file
FORMAT = "scalinglab_stacked_member"  # the key that marks a member's checkpoint (a single run's has "loops")
PRECISIONS = {"32-true": None, "32": None, 32: None, "bf16-mixed": torch.bfloat16}
SHARED = ("batch_size", "beta1", "beta2", "eps", "weight_decay", "grad_clip", "threads")


def _device(cfg: DictConfig) -> torch.device:
    """The device a single run of `cfg` would train on (runs.resolve_device_kind; cpu unless that is cuda)."""
    return torch.device("cuda" if resolve_device_kind(str(cfg.trainer.accelerator)) == "cuda" else "cpu")


def _autocast(cfg: DictConfig) -> torch.dtype | None:
    return PRECISIONS[resolve_precision(cfg.trainer.precision, _device(cfg).type, cfg.model.d_model)]


def stack_key(cfg: DictConfig) -> tuple | None:
    """What members of one stack must share (shape, batch, optimizer settings, device, precision), or None for
    a run that trains alone: one that branches or keeps step checkpoints (WSD), compiles, uses dropout, measures
    the gradient noise scale (train.grad_noise_scale), logs to
    a Lightning logger, keeps its final weights, passes other lightning.Trainer arguments, needs several devices or
    a precision other than fp32 and bf16-mixed."""
    from scalinglab.validate import TRAINER_NOT_IDENTITY, trainer_passthrough

    t, trainer = cfg.train, cfg.trainer
    alone = (t.branch_from is not None or list(t.save_at_steps) or t.compile or cfg.model.get("dropout", 0.0)
             or t.get("grad_noise_scale")  # measured from the step's own gradients (module.measure_noise_scale)
             or any(v is not None for v in cfg.logger.values()) or t.get("save_final")
             or set(trainer_passthrough(cfg)) - set(TRAINER_NOT_IDENTITY)
             or trainer.precision not in (*PRECISIONS, "auto")
             or str(trainer.devices) != "1" or int(trainer.num_nodes) != 1 or trainer.strategy != "auto")
    if alone:
        return None
    model = OmegaConf.to_container(cfg.model, resolve=True)
    return (repr(sorted(model.items())), int(cfg.data.vocab_size), *(repr(t[name]) for name in SHARED),
            str(trainer.accelerator), str(trainer.precision))


def is_member_checkpoint(path: Path | str) -> bool:
    """True when `path` is a resume point a stacked member wrote (train.py resumes such a run stacked)."""
    try:
        return FORMAT in torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # none, or unreadable: the single-run path reports a damaged one (status failed)
        return False


class Member(LanguageModel):
    """One run of a stack: its LanguageModel state (rows, tokens, early stopping, LR schedule) at its own step."""

    step = 0

    @property
    def global_step(self) -> int:
        return self.step


class _Run:
    """A member with what its run directory needs: config, paths, counts and how it ended."""

    def __init__(self, cfg: DictConfig, model_cfg, dm, rid: str, rdir: Path, device: torch.device):
        from scalinglab.train import build_module, run_facts

        self.cfg, self.dm, self.rid, self.rdir = cfg, dm, rid, Path(rdir)
        self.model_cfg, self.counts, self.per_token, lr, tokens_per_epoch = run_facts(cfg, model_cfg, dm, rdir)
        self.module = build_module(cfg, self.model_cfg, dm, self.per_token, lr, tokens_per_epoch, cls=Member)
        self.module.to(device)
        self.module.set_validation(dm)  # per-source losses as alone (the noise scale trains alone: stack_key)
        self.optimizer = None  # AdamW state to load once the stack exists (a resumed member)
        self.status, self.error, self.stopped, self.started = "running", None, False, time.time()
        self.checkpoint_seconds = 60.0 * float(cfg.train.checkpoint_minutes)
        self.t_checkpoint = time.monotonic()
        self.issued = 0  # steps handed to the stack; module.step counts the ones whose loss was read
        self.summary: dict | None = None

    @property
    def ended(self) -> bool:
        return self.status != "running" or self.stopped or self.module.step >= self.module.total_steps

    def due(self) -> bool:
        """Whether this member must be looked at after the step just issued (eval point, end, checkpoint)."""
        m = self.module
        return (self.issued in m.eval_at or self.issued >= m.total_steps
                or time.monotonic() - self.t_checkpoint > self.checkpoint_seconds)


# ---------------------------------------------------------------------------------------------- checkpoints

def _save(run: _Run, stack: Stack, k: int) -> None:
    """checkpoints/last.ckpt of member k: its weights and AdamW state by name, step and LanguageModel state."""
    module = run.module
    stack.store_weights(k, module.model)
    ckpt = {FORMAT: 1, "global_step": module.step, "state_dict": module.state_dict(),
            "optimizer": stack.optimizer_state(k)}
    module.on_save_checkpoint(ckpt)
    atomic_write(run.rdir / CHECKPOINT, lambda tmp: torch.save(ckpt, tmp))
    run.t_checkpoint = time.monotonic()


def _resume(run: _Run) -> None:
    """Load last.ckpt, a member's or a single run's (Lightning: AdamW state by position, matrices first)."""
    path = run.rdir / CHECKPOINT
    if not path.exists():
        return
    module = run.module
    ckpt = torch.load(path, map_location=module.device, weights_only=True)
    module.load_state_dict(ckpt["state_dict"])
    module.on_load_checkpoint(ckpt)
    module.step = run.issued = int(ckpt["global_step"])
    if FORMAT in ckpt:
        run.optimizer = ckpt["optimizer"]
    else:
        name_of = {id(p): n for n, p in module.model.named_parameters()}
        order = [name_of[id(p)] for group in decay_groups(module.model) for p in group]
        state = ckpt["optimizer_states"][0]["state"]
        run.optimizer = {"step": int(state[0]["step"]) if state else 0,
                         **{key: {n: state[i][key] for i, n in enumerate(order) if i in state}
                            for key in ("exp_avg", "exp_avg_sq")}}
    print(f"resuming {run.cfg.sweep}/{run.rid} from {path} (stacked)")


# ---------------------------------------------------------------------------------------------- training

def train_group(cfgs: list[DictConfig]) -> list[dict]:
    """Train the runs `cfgs` describe as one stack (skipping complete ones and ones another process holds);
    one summary row per config, in order. Every config is validated before anything trains."""
    from scalinglab.resume import claim_run_dir
    from scalinglab.train import finished, open_run, running

    opened = [open_run(cfg) for cfg in cfgs]
    keys = {stack_key(cfg) for cfg in cfgs}
    if None in keys or len(keys) > 1:
        raise ConfigError("hydra.sweeper.stack", "these runs cannot train as one stack (different shapes or "
                          "optimizer settings, or a run that trains alone)", "group runs by scalinglab.stacked."
                          "stack_key, or train them one by one")
    results: list[dict | None] = [None] * len(cfgs)
    todo = []
    with ExitStack() as locks:
        for i, (cfg, (model_cfg, dm, rid, rdir)) in enumerate(zip(cfgs, opened)):
            results[i] = finished(cfg, rdir, rid)
            if results[i] is not None:
                continue
            dm.prepare()
            if not locks.enter_context(run_lock(rdir)):
                results[i] = running(cfg, rid)
                continue
            claim_run_dir(rdir)
            results[i] = finished(cfg, rdir, rid)
            if results[i] is None:
                todo.append(i)
        for i, summary in zip(todo, train_members([(cfgs[i], *opened[i]) for i in todo])):
            results[i] = summary
    return results


def train_members(items: list[tuple]) -> list[dict]:
    """Train (cfg, model_cfg, dm, run_id, run_dir) members as one stack; the caller holds their locks. A member's
    summary is written as soon as it ends."""
    from scalinglab.train import _is_multirun

    if not items:
        return []
    device = _device(items[0][0])
    runs = [_Run(*item, device=device) for item in items]
    for run in runs:
        try:
            _resume(run)
        except Exception as exc:  # a damaged checkpoint: this member failed (as a single run would), not the rest
            run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
    stack = Stack([run.module.model for run in runs], OptimizerSettings.of(runs[0].module.train_cfg),
                  _autocast(items[0][0]))
    for k, run in enumerate(runs):
        if run.optimizer is not None:
            stack.load_optimizer_state(k, run.optimizer)
    print(f"training {len(runs)} runs stacked on {device.type}: " + ", ".join(f"{r.cfg.sweep}/{r.rid}" for r in runs))
    try:
        _loop(stack, runs, device)
    except (KeyboardInterrupt, SystemExit, StoreError):
        raise
    except Exception as exc:  # a real failure of the shared step: every member still training failed
        for run in runs:
            if run.summary is None:
                run.status, run.error = "failed", f"{type(exc).__name__}: {exc}"
                _finish(run)
    failed = [run.summary for run in runs if run.summary["status"] == "failed"]
    if failed and not _is_multirun():
        raise RuntimeError(f"run {failed[0]['run_id']} failed: {failed[0]['error']}")
    return [run.summary for run in runs]


def _finish(run: _Run) -> None:
    """Write the summary of a member that ended (train.summary_row, train.write_result: as a single run)."""
    from scalinglab.train import summary_row, write_result

    status = "complete" if run.status == "running" else run.status
    run.summary = summary_row(run.cfg, run.model_cfg, run.counts, run.per_token, run.module, run.module.step,
                              status, run.error, run.started)
    write_result(run.cfg, run.rdir, run.summary)


def _loop(stack: Stack, runs: list[_Run], device: torch.device) -> None:
    """Step every member until each has ended; one that ends leaves the stack and writes its summary."""
    active = runs
    pending: list[torch.Tensor] = []
    t_window = time.perf_counter()
    while True:
        keep = [k for k, run in enumerate(active) if not run.ended]
        for run in active:
            if run.ended:
                _finish(run)
        if len(keep) < len(active):
            active = [active[k] for k in keep]
            if not active:
                return
            stack.keep(keep)
        if not pending:  # a window of steps starts: its wall time is every active member's
            t_window = time.perf_counter()
        batches = [run.dm.batch(run.issued) for run in active]
        x = torch.stack([b[0] for b in batches]).to(device, non_blocking=True)
        y = torch.stack([b[1] for b in batches]).to(device, non_blocking=True)
        pending.append(stack.step(x, y, [run.module.lr_at(run.issued) for run in active]))
        for run in active:
            run.issued += 1
        if len(pending) < SYNC_EVERY and not any(run.due() for run in active):
            continue
        losses = torch.stack(pending).cpu().tolist()  # (steps, members): the one wait for the device
        pending, elapsed = [], time.perf_counter() - t_window
        for k, run in enumerate(active):
            _account(run, [row[k] for row in losses], elapsed)
            if run.status == "running":
                _after_step(run, stack, k)


def _account(run: _Run, losses: list[float], elapsed: float) -> None:
    """Book the steps whose losses were just read: as LanguageModel.training_step, a loss that is not finite or
    above the divergence threshold ends the run at that step (later ones are discarded)."""
    m = run.module
    for value in losses:
        if not math.isfinite(value) or value > m.diverge_above:
            run.status, run.error = "diverged", str(Diverged(m.step + 1, value))
            break
        m._loss_sum += value
        m._loss_count += 1
        m.tokens_seen += run.dm.tokens_per_step
        m.step += 1
    m.wall_time += elapsed


def _after_step(run: _Run, stack: Stack, k: int) -> None:
    """As RunRecorder.on_train_batch_end: evaluate at an eval point (metrics, early stopping, checkpoint unless
    it is the end), otherwise checkpoint when train.checkpoint_minutes have passed."""
    m = run.module
    if m.step in m.eval_at:
        stack.store_weights(k, m.model)
        m.record()
        write_metrics(run.rdir, m.rows)
        if m.train_cfg.early_stopping and m.evals_without_improvement >= m.train_cfg.patience:
            run.stopped = True
        if m.step < m.total_steps and not run.stopped:
            _save(run, stack, k)
    elif time.monotonic() - run.t_checkpoint > run.checkpoint_seconds:
        _save(run, stack, k)


# ---------------------------------------------------------------------------------------------- sweeps

def stack_groups(keys: list, k: int) -> list[list[int]]:
    """Positions grouped by equal stack key, in order, at most k per group; a None key trains alone."""
    groups: list[list[int]] = []
    open_groups: dict = {}
    for i, key in enumerate(keys):
        group = open_groups.get(key) if key is not None else None
        if group is None or len(group) >= k:
            group = []
            groups.append(group)
            if key is not None:
                open_groups[key] = group
        group.append(i)
    return groups


def write_group_file(sweep_dir: Path | str, cfgs: list[DictConfig], run_ids: list[str]) -> Path:
    """`<sweep>/.stack/<hash of the run ids>.yaml`: the members' composed configs (interpolations unresolved,
    as a job resolves its own), which the group's job (STACK_ENV) trains as one stack."""
    import hashlib

    from scalinglab.store import write_text

    name = hashlib.sha256(",".join(run_ids).encode()).hexdigest()[:12]
    members = {"members": [OmegaConf.to_container(cfg, resolve=False) for cfg in cfgs]}
    return write_text(Path(sweep_dir) / ".stack" / f"{name}.yaml", OmegaConf.to_yaml(members))


def train_group_file(path: Path | str) -> list[dict]:
    """Train the group a sweep wrote (write_group_file); each member's config is its own root again."""
    members = OmegaConf.load(path).members
    return train_group([OmegaConf.create(OmegaConf.to_container(m, resolve=False)) for m in members])


# ---------------------------------------------------------------------------------------------- benchmarks

def build_stack(model_cfg, k: int, batch_size: int, device: str | torch.device = "cpu",
                autocast: torch.dtype | None = None, seed: int = 0):
    """K freshly initialised models of `model_cfg` (a GPTConfig) as one Stack and a function taking one optimizer
    step of all K on fixed random batches (what scripts/bench_stacked.py and bench_train.py time); returns
    (stack, step). Each call of step() returns the (K,) losses on the device, unread."""
    from scalinglab.model import GPT

    device = torch.device(device)
    models = []
    for member in range(k):
        torch.manual_seed(seed + member)
        models.append(GPT(model_cfg).to(device))
    stack = Stack(models, OptimizerSettings(0.9, 0.95, 1e-8, 0.1, 1.0), autocast)
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, model_cfg.vocab_size, (k, batch_size, model_cfg.n_ctx + 1), generator=g).to(device)
    x, y = data[..., :-1], data[..., 1:]
    lrs = [1e-3] * k
    return stack, lambda: stack.step(x, y, lrs)
