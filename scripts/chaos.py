"""Chaos test: SIGKILL a joblib sweep of 12 tiny runs at many moments, relaunch each time, then check the results.

    python scripts/chaos.py                 # 20 kills (about 10 minutes on a 2-core CPU)
    python scripts/chaos.py --kills 8 --json chaos.json

1. A reference sweep runs once, uninterrupted, into its own runs and cache directories.
2. The same sweep (a fresh cache) is launched as its own process group and the whole group is SIGKILLed, then
   relaunched, once per kill. Kills target, in turn: data preparation (BPE training and token cache build),
   a random moment mid-training, checkpoint writes, metrics and summary writes, and `scalinglaws report` on the
   partly finished sweep. The narrow write phases are hit through the store's test hook: SCALINGLAB_FAULT=
   write:<file> makes the first writer of that file kill its own process group after the temporary file is
   complete and before os.replace (scalinglab.store.fault_point). The others are timed at random.
3. After every kill, every results file a reader would open must be readable. After a last relaunch without
   kills: each planned run has one directory with one summary, status complete; a run completed before some kill
   was never trained or rewritten again; no temporary file is left in a run directory; every parquet, JSON, YAML,
   checkpoint (torch.load weights_only=True) and report file is readable; each run's metrics equal the reference
   run's exactly (same config and seed); the report on the finished sweep runs to completion.

Prints kills survived / kills tried, runs lost, files corrupt and wall time; exits 1 if any check failed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SWEEP = "chaos"
FAULT_ENV = "SCALINGLAB_FAULT"  # scalinglab.store.FAULT_ENV; this script imports no scalinglab until checking

# 12 runs (2 sizes x 3 budgets x 2 seeds) of 125-250 steps on the committed test corpus, on CPU, with a
# checkpoint about every 0.1 s (so random kills often land in one) and one kept step checkpoint per run.
SWEEP_FILE = """
defaults:
  - config
  - override data: text_files
  - override model: nano
  - override hydra/sweeper: scalinglab
  - _self_
sweep: chaos
model: {n_ctx: 64}
data: {vocab_size: 512}
train: {batch_size: 8, eval_points: 5, checkpoint_minutes: 0.0015, save_at_steps: [60]}
trainer: {accelerator: cpu, progress_bar: false}
plan:
  kind: grid
  grid:
    train.tokens: [64000, 102400, 128000]
    train.seed: [0, 1]
  sizes: [nano, {n_layer: 1, d_model: 48, n_head: 2}]
"""

# The order kills cycle through after the data-preparation kills. Every write point recurs while some run is
# unfinished (config.yaml at each run's start, metrics at eval points, last.ckpt often, summary at each end).
CYCLE = ("mid_step", "write:last.ckpt", "write:summary.parquet", "report", "mid_step", "write:metrics.parquet",
         "write:config.yaml")


@dataclass
class Kill:
    number: int
    phase: str
    landed: bool = False  # the process group was alive and got SIGKILL (by the harness or the fault hook)
    seconds: float = 0.0  # launch to kill
    corrupt: list[str] = field(default_factory=list)  # unreadable results files right after this kill
    stray: int = 0  # processes of the killed session still alive afterwards


def env(fault: str | None = None) -> dict:
    out = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    out["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO / "analysis"),
                                         *filter(None, [os.environ.get("PYTHONPATH")])])
    out.pop(FAULT_ENV, None)
    if fault:
        out[FAULT_ENV] = fault
    return out


def sweep_command(sweep_file: Path, runs: Path, cache: Path, n_jobs: int) -> list[str]:
    return [sys.executable, "-m", "scalinglab.sweep", "run", str(sweep_file), f"paths.runs={runs}",
            f"paths.cache={cache}", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]


def report_command(runs: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "scalinglaws", "report", str(runs / SWEEP), "--out", str(out), "--bootstrap", "50",
            "--grid", "small", "--quiet"]


def launch(args: list[str], log: Path, fault: str | None = None) -> subprocess.Popen:
    with open(log, "ab") as out:
        out.write(f"\n$ {FAULT_ENV}={fault or ''} {' '.join(args)}\n".encode())
        return subprocess.Popen(args, cwd=REPO, env=env(fault), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def session_members(sid: int) -> dict[int, int]:
    """pid -> process group of the live (not zombie) processes in session `sid`, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[3]) == sid and stat[0] != "Z":  # fields after the name: state, ppid, pgrp, session
                    found[int(entry.name)] = int(stat[2])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                pass
    return found


def kill_group(proc: subprocess.Popen) -> tuple[bool, int]:
    """SIGKILL the process group; (whether it was alive, processes of its session that were outside the group)."""
    alive = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    escaped: set[int] = set()
    deadline = time.monotonic() + 30  # a killed process can take a moment to exit on a loaded machine
    while (members := session_members(proc.pid)) and time.monotonic() < deadline:
        for pid, group in members.items():
            if group != proc.pid:  # it left the group: a kill of the sweep would not reach it
                escaped.add(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.1)
    return alive, len(escaped) + len(members)


def wait_for(condition, proc: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.02)
    return False


def newest_mtime(pattern_root: Path, pattern: str) -> float:
    times = [p.stat().st_mtime for p in pattern_root.glob(pattern) if p.exists()]
    return max(times, default=0.0)


# ------------------------------------------------------------------------------------------------ checks

def is_temporary(path: Path) -> bool:
    return path.name.startswith(".tmp-") or ".tmp-" in path.name or path.name.endswith(".tmp")


def check_file(path: Path) -> str | None:
    """None if `path` reads as its kind of file, else the error."""
    import pyarrow.parquet as pq
    import torch
    import yaml

    try:
        if path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".yaml":
            yaml.safe_load(path.read_text())
        elif path.suffix == ".ckpt":
            torch.load(path, map_location="cpu", weights_only=True)
        elif path.suffix == ".png":
            data = path.read_bytes()
            if not (data.startswith(b"\x89PNG\r\n\x1a\n") and data[-8:-4] == b"IEND"):
                return "not a complete PNG"
        elif path.suffix in (".md", ".html"):
            if not path.read_text(encoding="utf-8").strip():
                return "empty"
        return None
    except Exception as exc:  # any failure to read is what we count
        return f"{type(exc).__name__}: {exc}"


def corrupt_files(*roots: Path) -> list[str]:
    """Every results file a reader would open (temporary names excluded) that does not read back."""
    bad = []
    for root in roots:
        if not root.exists():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file() and not is_temporary(path) and path.suffix in (
                    ".parquet", ".json", ".yaml", ".ckpt", ".png", ".md", ".html"):
                error = check_file(path)
                if error:
                    bad.append(f"{path}: {error}")
    return bad


def temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if is_temporary(p)) if root.exists() else []


def completed(runs: Path) -> dict[str, float]:
    """run_id -> finished_at of every run whose summary says complete."""
    import pyarrow.parquet as pq

    out = {}
    for file in (runs / SWEEP).glob("*/summary.parquet"):
        row = pq.read_table(file).to_pylist()[0]
        if row["status"] == "complete":
            out[row["run_id"]] = row["finished_at"]
    return out


def curves(runs: Path) -> dict[str, list[tuple]]:
    """run_id -> [(step, tokens, train_loss, val_loss), ...] from metrics.parquet."""
    import pandas as pd

    out = {}
    for file in (runs / SWEEP).glob("*/metrics.parquet"):
        frame = pd.read_parquet(file)
        out[file.parent.name] = list(frame[["step", "tokens", "train_loss", "val_loss"]].itertuples(index=False,
                                                                                                       name=None))
    return out


# ------------------------------------------------------------------------------------------------ the test

def run_to_completion(args: list[str], log: Path, timeout: float) -> None:
    proc = launch(args, log)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        raise SystemExit(f"{' '.join(args[:4])} did not finish in {timeout:.0f} s; see {log}")
    kill_group(proc)  # joblib's idle workers outlive the sweep process for a while
    if rc != 0:
        raise SystemExit(f"{' '.join(args[:4])} exited {rc}; see {log}")


def one_kill(kill: Kill, rng: random.Random, command: list[str], runs: Path, cache: Path, report_out: Path,
             log: Path) -> None:
    """Launch, kill the whole process group in `kill.phase`, wait until nothing of it is left."""
    start = time.monotonic()
    if kill.phase == "report":
        for delay in (rng.uniform(1.0, 4.0), rng.uniform(0.3, 1.0), rng.uniform(0.05, 0.3)):
            proc = launch(report_command(runs, report_out), log)
            wait_for(lambda: False, proc, delay)
            if proc.poll() is None:
                break  # still running at the chosen moment (imports, loading or fitting the partial sweep)
            proc.wait()  # it finished first: try again, sooner
    elif kill.phase.startswith("write:"):
        proc = launch(command, log, fault=kill.phase)
        try:
            proc.wait(timeout=900)  # the hook kills the group at that write (if some run reaches it)
        except subprocess.TimeoutExpired:
            pass
    else:
        proc = launch(command, log)
        tokens = cache / "tokens"
        if kill.phase == "data_prep":  # a build makes its <key>.tmp-<pid> folder (or, the first time, its lock)
            launched = time.time() - 0.05  # as it starts; the manifest comes last. Opening an existing lock does
            # not change its mtime, so a relaunch's build is seen by its folder.
            wait_for(lambda: max(newest_mtime(tokens, "*.lock"), newest_mtime(tokens, "*.tmp-*")) > launched, proc,
                     600)
            time.sleep(rng.uniform(0.0, 1.0))
        else:  # mid_step: once some run checkpoints after this launch, at a random moment
            wait_for(lambda: newest_mtime(runs / SWEEP, "*/checkpoints/*.ckpt") > time.time() - 0.5, proc, 600)
            time.sleep(rng.uniform(0.0, 1.5))
    kill.seconds = round(time.monotonic() - start, 2)
    if kill.phase.startswith("write:"):
        kill.landed = proc.returncode == -signal.SIGKILL
        _, kill.stray = kill_group(proc)
    else:
        kill.landed, kill.stray = kill_group(proc)
    kill.corrupt = corrupt_files(runs, cache, report_out)


def chaos(kills: int, seed: int, n_jobs: int, work: Path) -> dict:
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    sweep_file = work / f"{SWEEP}.yaml"
    sweep_file.write_text(SWEEP_FILE)
    log = work / "chaos.log"
    started = time.monotonic()

    ref_runs, ref_cache = work / "reference" / "runs", work / "reference" / "cache"
    run_to_completion(sweep_command(sweep_file, ref_runs, ref_cache, n_jobs), log, 1800)
    reference_seconds = time.monotonic() - started
    reference = curves(ref_runs)

    runs, cache, report_out = work / "chaos" / "runs", work / "chaos" / "cache", work / "chaos" / "report"
    command = sweep_command(sweep_file, runs, cache, n_jobs)
    phases = ["data_prep", "data_prep"] + [CYCLE[i % len(CYCLE)] for i in range(2 * kills)]
    done_before: dict[str, float] = {}
    record: list[Kill] = []
    for number, phase in enumerate(phases, 1):
        if sum(k.landed for k in record) == kills:
            break
        if phase == "data_prep" and (cache / "tokens").exists() and any((cache / "tokens").glob("*/manifest.json")):
            phase = "mid_step"  # the cache is built: nothing left to prepare
        if phase != "report" and len(completed(runs)) == len(reference):
            phase = "report"  # every run is complete: only the report is left to interrupt
        kill = Kill(number, phase)
        one_kill(kill, rng, command, runs, cache, report_out, log)
        record.append(kill)
        now = completed(runs)
        rewritten = [rid for rid, t in done_before.items() if now.get(rid) != t]
        if rewritten:
            kill.corrupt.append(f"complete runs trained or rewritten again: {rewritten}")
        done_before.update(now)
        print(f"kill {number:2d} {phase:22s} after {kill.seconds:5.1f} s: {'landed' if kill.landed else 'missed'}, "
              f"{len(now)}/{len(reference)} runs complete, {len(kill.corrupt)} corrupt, {kill.stray} stray",
              flush=True)

    run_to_completion(command, log, 1800)  # the last relaunch, without kills
    run_to_completion(report_command(runs, report_out), log, 900)
    wall = time.monotonic() - started

    # -- final checks
    import pandas as pd

    plan = pd.read_parquet(runs / SWEEP / "plan.parquet")
    planned = set(plan["run_id"])
    finished = completed(runs)
    summaries = list((runs / SWEEP).glob("*/summary.parquet"))
    run_dirs = {p.name for p in (runs / SWEEP).iterdir() if p.is_dir() and not p.name.startswith(".")}
    lost = sorted(planned - set(finished))
    extra = sorted(run_dirs - planned)
    rewritten = sorted(rid for rid, t in done_before.items() if finished.get(rid) != t)
    corrupt = corrupt_files(runs, cache, report_out)
    in_run_dirs = [str(p) for p in temporaries(runs / SWEEP) if p.parent.name != SWEEP and ".hydra" not in p.parts]
    elsewhere = [str(p) for p in temporaries(work / "chaos") if str(p) not in in_run_dirs]
    chaos_curves = curves(runs)
    mismatched = sorted(rid for rid in reference if chaos_curves.get(rid) != reference[rid])
    final_losses = {rid: (reference[rid][-1][3], chaos_curves.get(rid, [(None,) * 4])[-1][3]) for rid in reference}
    tried = sum(k.landed for k in record)  # a kill that found nothing alive (the hook's point was not reached) is
    # recorded as missed and the next phase is tried instead
    survived = sum(k.landed and not k.corrupt and not k.stray for k in record) if not (lost or corrupt or mismatched
                                                                                       or rewritten) else 0
    result = {
        "kills_tried": tried, "kills_survived": survived, "kills_missed": len(record) - tried,
        "runs_planned": len(planned), "runs_complete": len(finished), "runs_lost": len(lost), "lost": lost,
        "summaries": len(summaries), "extra_run_dirs": extra, "completed_runs_rewritten": rewritten,
        "files_corrupt": len(corrupt) + sum(len(k.corrupt) for k in record), "corrupt": corrupt,
        "temporaries_in_run_dirs": in_run_dirs, "temporaries_elsewhere": elsewhere,
        "runs_differing_from_reference": mismatched, "final_losses": final_losses,
        "wall_seconds": round(wall, 1), "reference_seconds": round(reference_seconds, 1),
        "kills": [asdict(k) for k in record], "work_dir": str(work),
    }
    result["ok"] = bool(tried == kills == survived and not lost and not extra and not rewritten
                        and result["files_corrupt"] == 0 and not in_run_dirs and not mismatched
                        and len(summaries) == len(planned) == len(reference))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill timings (default 0)")
    parser.add_argument("--n-jobs", type=int, default=2, help="joblib parallel runs (default 2)")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one, removed after)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="scalinglab-chaos-"))
    result = chaos(args.kills, args.seed, args.n_jobs, work)  # on an error, the directory is kept with its log
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nkills survived / tried: {result['kills_survived']} / {result['kills_tried']} "
          f"({result['kills_missed']} missed)")
    print(f"runs lost: {result['runs_lost']} of {result['runs_planned']}; summaries: {result['summaries']}; "
          f"complete runs rewritten: {len(result['completed_runs_rewritten'])}")
    print(f"files corrupt: {result['files_corrupt']}; temporaries left in run directories: "
          f"{len(result['temporaries_in_run_dirs'])} (elsewhere, ignored by readers: "
          f"{len(result['temporaries_elsewhere'])})")
    print(f"runs whose metrics differ from the uninterrupted reference: {len(result['runs_differing_from_reference'])}")
    print(f"wall time: {result['wall_seconds']:.0f} s (reference sweep {result['reference_seconds']:.0f} s)")
    for line in result["corrupt"]:
        print(f"  corrupt: {line}")
    if result["ok"] and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print("OK" if result["ok"] else f"FAILED (log and files kept in {work})")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
