"""Where a run restarts from, and what a process does first with a run directory it holds (docs/DESIGN.md
section 4): temporaries of killed writers removed, damaged files moved aside (store.repair_run), and the newest
checkpoint that really loads into the run's model chosen as the resume point.
"""
from __future__ import annotations

from pathlib import Path

from scalinglab.store import checkpoint_files, move_aside, remove_temporaries, repair_run, zip_checkpoint_problem


def checkpoint_problem(path: Path, expected: dict | None = None) -> str | None:
    """Why the checkpoint `path` cannot be resumed from, or None: it must load (torch.load, weights only, memory
    mapped, so no tensor is read) as a training checkpoint, with the parameter names and shapes of `expected` (a
    module's state_dict) and what Lightning restores (optimizer and loop state) when given."""
    import torch

    problem = zip_checkpoint_problem(path)
    if problem is not None:
        return problem
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # pickle, zip or storage errors of a damaged file
        return f"does not load ({type(exc).__name__}: {exc})"
    if not isinstance(state, dict) or not {"state_dict", "global_step", "scalinglab"} <= set(state):
        return "does not load as a training checkpoint (no state_dict, global_step or scalinglab state)"
    if expected is not None:
        def shapes(tensors: dict) -> dict:  # torch.compile's wrapper adds _orig_mod. to the names
            return {k.replace("_orig_mod.", ""): tuple(getattr(v, "shape", ())) for k, v in tensors.items()}

        if shapes(state["state_dict"]) != shapes(expected):
            return "holds other parameters than this run's model (names or shapes differ)"
        if not {"optimizer_states", "loops"} <= set(state):
            return "does not load as a Lightning checkpoint (no optimizer_states / loops to resume)"
    return None


def claim_run_dir(rdir: Path) -> None:
    """What a process does first with a run directory whose lock it holds: remove the temporaries killed writers
    left, and move damaged files aside (store.repair_run, with checkpoints loaded by torch)."""
    remove_temporaries(rdir)  # half-written files of a killed writer; we hold the lock, so none is live
    repair_run(rdir, checkpoint_problem)


def resume_point(rdir: Path, module) -> Path | None:
    """The newest checkpoint of the run that loads into `module`: last.ckpt, else the kept step-<k>.ckpt with the
    highest k below the run's steps; one that does not load is moved aside (a warning names it) and the next is
    tried. None: train from the start (or from the branch point of a WSD cooldown)."""
    def order(path: Path):
        step = path.stem.removeprefix("step-")
        return (path.name == "last.ckpt", int(step) if step.isdigit() else -1)

    expected = module.state_dict()
    for path in sorted(checkpoint_files(rdir), key=order, reverse=True):
        if path.name != "last.ckpt" and not (order(path)[1] < module.total_steps):
            continue
        problem = checkpoint_problem(path, expected)
        if problem is None:
            return path
        try:
            move_aside(path, problem + "; resuming from the previous good checkpoint, or from the start")
        except FileNotFoundError:  # another rank of a multi-process run moved it first
            pass
    return None
