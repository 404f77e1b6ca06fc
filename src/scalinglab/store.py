"""The results store: run directory layout, atomic writes, and reading a whole sweep (docs/DESIGN.md section 4).

    <runs>/<sweep>/<run_id>/config.yaml        resolved config
                            metrics.parquet    one row per eval point
                            summary.parquet    one row; the run is complete only when status == "complete"
                            checkpoints/last.ckpt   (and step-<k>.ckpt kept for WSD cooldowns)
                            .lock              flock'ed while a process trains the run

Every file is written to a temporary name in its own directory and moved into place with os.replace, so a reader
never sees a half-written file: a killed writer leaves at most a `.tmp-*` file, which readers ignore (and train.py
removes under the run's lock). A write the file system refuses (read-only, permission denied, disk full) raises
StoreError, a ConfigError naming the directory and the fix. This module imports no torch, so the analysis side and
quick status commands stay light.

Damaged state is found, never trusted: `check_run` lists every file of a run directory that does not read back
(a summary or metrics file that is not parquet, a complete run without its curve, a config that is not YAML, a
checkpoint that is not torch's zip layout, a `.lock` that is not a file). Under the run's lock, `repair_run` moves
each such file aside (`<name>.damaged-<time>`, named in a warning; readers never open those names) and, for a
complete run, its summary too, so the run is trained again.

Test hook (chaos tests only): with SCALINGLAB_FAULT=write:<file name> set, the first writer of that file SIGKILLs
its own process group after the temporary file is complete and before os.replace (see `fault_point`).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import signal
import stat
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scalinglaws import _files as files

from scalinglab import schema
from scalinglab.errors import ConfigError

SCHEMA_VERSION = 1
SUMMARY = "summary.parquet"
METRICS = "metrics.parquet"
CONFIG = "config.yaml"
CHECKPOINT = "checkpoints/last.ckpt"
LOCK = ".lock"
TMP_PREFIX = files.TMP_PREFIX
FAULT_ENV = "SCALINGLAB_FAULT"
DAMAGED_TAG = ".damaged-"  # <name>.damaged-<time>: a damaged file moved aside (kept for a person to look at)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=,+-]*$")
log = logging.getLogger(__name__)


class StoreError(ConfigError):
    """The file system refused a write to the results store (read-only, permission denied, disk full)."""


# What a full disk or an unwritable folder raises: a user's problem with a clear fix, not a bug.
REFUSED = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR)


def storage_error(path: Path | str, exc: OSError) -> OSError | StoreError:
    """A StoreError naming the directory that could not be written and the fix; `exc` itself for other errors."""
    if exc.errno not in REFUSED:
        return exc
    where = Path(path)
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = f"free disk space on the file system of {where}, or set paths.runs to a directory with room"
    else:
        fix = f"make {where} writable (e.g. chmod u+w {where}), or set paths.runs to a writable directory"
    return StoreError(str(where), f"cannot write results here ({reason}); earlier results in it are unchanged", fix)


def fault_point(name: str) -> None:
    """Chaos-test hook: SIGKILL this process group when SCALINGLAB_FAULT == name; a no-op otherwise."""
    if os.environ.get(FAULT_ENV) == name:
        os.killpg(os.getpgrp(), signal.SIGKILL)


def atomic_write(path: Path | str, write: Callable[[str], None]) -> Path:
    """scalinglaws._files.atomic_write (temporary file, fsync, os.replace; mode from the umask) with the store's
    errors: a refused write is a StoreError naming the directory."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(_existing_parent(path.parent), exc) from None
    try:
        return files.atomic_write(path, write, before_replace=lambda: fault_point(f"write:{path.name}"))
    except OSError as exc:
        raise storage_error(path.parent, exc) from None


def _existing_parent(path: Path) -> Path:
    """`path` or its nearest ancestor that exists (what a failed mkdir should name)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate if candidate.is_dir() else candidate.parent
    return path


def remove_temporaries(directory: Path | str) -> list[Path]:
    """Delete `.tmp-*` files killed writers left in `directory` and its subfolders; the caller holds the lock."""
    removed = []
    for file in Path(directory).rglob(f"{TMP_PREFIX}*"):
        if file.is_file():
            file.unlink(missing_ok=True)
            removed.append(file)
    return removed


def write_text(path: Path | str, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# The files of a run directory that have one explicit schema (scalinglab.schema, docs/SCHEMA.md).
SCHEMAS = {SUMMARY: schema.SUMMARY, METRICS: schema.METRICS}


def write_parquet(path: Path | str, rows: pd.DataFrame | list[dict]) -> Path:
    """Write rows atomically; summary.parquet and metrics.parquet with their explicit schema."""
    known = SCHEMAS.get(Path(path).name)
    if known is not None:
        table = schema.to_table(rows.to_dict("records") if isinstance(rows, pd.DataFrame) else list(rows), known)
    else:
        table = pa.Table.from_pandas(rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows),
                                     preserve_index=False)
    return atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def write_metrics(run_dir: Path | str, rows: list[dict]) -> Path:
    """A run's metrics.parquet: its eval rows, each with the run's id (the run directory's name)."""
    return write_parquet(Path(run_dir) / METRICS, [{"run_id": Path(run_dir).name, **row} for row in rows])


def check_name(value: str, field: str) -> str:
    """Refuse names that could escape the runs directory (path traversal) or are awkward on disk."""
    if not isinstance(value, str) or not _NAME.match(value) or ".." in value:
        raise ConfigError(field, f"{value!r} is not a safe directory name",
                          "use letters, digits and _ . = , + - only (no '/', no '..', not starting with '.')")
    return value


def sweep_dir(runs_root: Path | str, sweep: str) -> Path:
    """<runs>/<sweep>, refusing any sweep name that would land outside the runs directory."""
    root = Path(runs_root).resolve()
    path = (root / check_name(sweep, "sweep")).resolve()
    if path.parent != root:
        raise ConfigError("sweep", f"sweep directory {path} is outside paths.runs={root}", "use a plain sweep name")
    return path


def run_dir(runs_root: Path | str, sweep: str, rid: str) -> Path:
    """<runs>/<sweep>/<run_id>, refusing names that would land outside it."""
    parent = sweep_dir(runs_root, sweep)
    path = (parent / check_name(rid, "run_id")).resolve()
    if path.parent != parent:
        raise ConfigError("run_id", f"run directory {path} is outside {parent}", "use a plain run id")
    return path


@contextmanager
def file_lock(path: Path | str, wait: bool = True):
    """Hold an exclusive lock on the file `path` (created if missing); yields True, or False at once when `wait` is
    False and another process holds it.

    flock is released by the kernel when its process dies (even by SIGKILL), so no stale lock survives a crash.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")
    except OSError as exc:
        raise storage_error(_existing_parent(path.parent), exc) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_lock(path: Path | str):
    """Hold the exclusive lock of a run directory; yields False if another process holds it (see file_lock).

    A `.lock` that is not a regular file (a folder, a FIFO that would block the open) is moved aside first."""
    lock = Path(path) / LOCK
    problem = _lock_problem(lock)
    if problem is not None:
        try:
            move_aside(lock, problem)
        except FileNotFoundError:  # another process moved it first
            pass
    return file_lock(lock, wait=False)


def _lock_problem(lock: Path) -> str | None:
    try:
        mode = os.stat(lock).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:  # a dangling or looping link, ...: a lock nobody can take
        return f"cannot be opened ({exc.strerror or exc})"
    return None if stat.S_ISREG(mode) else "is not a regular file (flock needs one)"


def is_locked(path: Path | str) -> bool:
    """True while some process holds the run's lock (sweep status reports it as running)."""
    file = Path(path) / LOCK
    if not file.exists() or _lock_problem(file) is not None:
        return False
    with open(file) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class DamagedFile(ConfigError):
    """A results file that does not read back (cut short, overwritten, not what its name says)."""


def _read_table(file: Path) -> pa.Table:
    """A run's parquet file; a damaged or cut-short one is a DamagedFile naming the file and the run to redo."""
    try:
        return pq.read_table(file)
    except (pa.ArrowException, OSError):  # ArrowInvalid (bad magic bytes, cut short), ArrowIOError, a folder ...
        raise damaged(file) from None


def damaged(file: Path, problem: str = "cannot be read (damaged or cut short)") -> DamagedFile:
    return DamagedFile(str(file), problem, f"relaunch the run (its damaged files are moved aside and it is trained "
                       f"again), or delete {file.parent} and run that run again")


def read_summary(path: Path | str) -> dict | None:
    """The summary row of a run directory, or None when the run has none yet (never a partial one)."""
    file = Path(path) / SUMMARY
    if not file.exists():
        return None
    rows = _read_table(file).to_pylist()
    if not rows:
        raise damaged(file)
    row = rows[0]
    if (row.get("schema_version") or SCHEMA_VERSION) > SCHEMA_VERSION:
        raise ConfigError(str(file), f"written by a newer scalinglab (schema {row['schema_version']})",
                          "upgrade scalinglab to read it")
    return row


def run_status(path: Path | str) -> str:
    """complete | diverged | failed from the summary; damaged when it does not read back; otherwise
    running-or-interrupted | pending."""
    try:
        summary = read_summary(path)
    except DamagedFile:
        return "damaged"
    if summary is not None:
        return summary["status"]
    return "interrupted" if (Path(path) / CHECKPOINT).exists() else "pending"


# ------------------------------------------------------------------------------------------ damaged state

ENDED = ("complete", "diverged", "failed")


@dataclass(frozen=True)
class Damage:
    """One file of a run directory that does not read back, and why."""

    file: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.problem}"


def zip_checkpoint_problem(path: Path) -> str | None:
    """Why `path` is not a checkpoint torch.save wrote (its zip layout with a data.pkl), or None; reads only the
    zip directory (torch-free; train.py also loads a checkpoint before resuming from it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f"does not load ({type(exc).__name__}: {exc})"
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        return "does not load (no data.pkl: not a torch checkpoint)"
    return None


def checkpoint_files(path: Path | str) -> list[Path]:
    """The run's checkpoints: last.ckpt and the kept step-<k>.ckpt files (damaged ones moved aside excluded)."""
    folder = Path(path) / CHECKPOINT.split("/")[0]
    return sorted(folder.glob("*.ckpt")) if folder.is_dir() else []


def _yaml_problem(file: Path) -> str | None:
    import yaml

    try:
        value = yaml.safe_load(file.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return f"is not readable YAML ({type(exc).__name__})"
    return None if isinstance(value, dict) else "is not a YAML mapping (a resolved config)"


def check_run(path: Path | str, checkpoint_problem: Callable[[Path], str | None] = zip_checkpoint_problem
              ) -> list[Damage]:
    """Every file of the run directory `path` that does not read back, in one pass (empty for a healthy run).

    summary.parquet and metrics.parquet must read as parquet (the summary: one row with a known status; a complete
    run's metrics: present, with a row); config.yaml must be a YAML mapping; each checkpoint must pass
    `checkpoint_problem` (zip layout here; train.py passes one that loads it); `.lock` must be a regular file.
    A summary written by a newer scalinglab raises ConfigError (an upgrade, not damage).
    """
    path = Path(path)
    found: list[Damage] = []
    status = None
    try:
        summary = read_summary(path)
        status = None if summary is None else summary.get("status")
        if summary is not None and status not in ENDED:
            found.append(Damage(path / SUMMARY, f"has status {status!r}, not one of {list(ENDED)}"))
    except DamagedFile as exc:
        found.append(Damage(path / SUMMARY, exc.problem))
    metrics = path / METRICS
    if metrics.exists() or status == "complete":
        try:
            if not metrics.exists():
                found.append(Damage(metrics, "is missing (a complete run keeps its curve)"))
            elif _read_table(metrics).num_rows == 0 and status == "complete":
                found.append(Damage(metrics, "has no rows (a complete run has at least one eval point)"))
        except DamagedFile as exc:
            found.append(Damage(metrics, exc.problem))
    if (path / CONFIG).exists():
        problem = _yaml_problem(path / CONFIG)
        if problem:
            found.append(Damage(path / CONFIG, problem))
    for ckpt in checkpoint_files(path):
        problem = checkpoint_problem(ckpt)
        if problem:
            found.append(Damage(ckpt, problem))
    problem = _lock_problem(path / LOCK)
    if problem:
        found.append(Damage(path / LOCK, problem))
    return found


def move_aside(file: Path, problem: str) -> Path:
    """Rename a damaged `file` to `<name>.damaged-<UTC time>` beside it (never read again) and warn, naming both."""
    file = Path(file)
    aside = file.with_name(f"{file.name}{DAMAGED_TAG}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}")
    os.rename(file, aside)
    log.warning("%s %s: moved aside to %s", file, problem, aside.name)
    return aside


def repair_run(path: Path | str, checkpoint_problem: Callable[[Path], str | None] = zip_checkpoint_problem
               ) -> list[Damage]:
    """Move every damaged file of a run aside (check_run, move_aside); the caller holds the run's lock.

    A run whose summary says complete but whose other files do not read back loses its summary as well, so it is
    trained again (a resume point that still loads is kept). Returns what was found."""
    path = Path(path)
    found = check_run(path, checkpoint_problem)
    for damage in found:
        if damage.file.name == LOCK:  # run_lock moves a bad lock aside itself, before taking it
            continue
        if damage.file.exists():
            move_aside(damage.file, damage.problem)
        else:
            log.warning("%s %s", damage.file, damage.problem)
    if found and (path / SUMMARY).exists() and read_summary(path)["status"] == "complete":
        move_aside(path / SUMMARY, "belongs to a complete run whose other files do not read back (trained again)")
    return found


def _summary_files(path: Path) -> Iterable[Path]:
    return sorted(p for p in path.rglob(SUMMARY) if not p.name.startswith(TMP_PREFIX))


def read_run_file(file: Path) -> pa.Table:
    """A run's summary or metrics parquet with today's schema (scalinglab.schema), also one an older scalinglab
    wrote (null-typed columns; metrics without run_id, which is the run directory's name)."""
    file = Path(file)
    t = _read_table(file)
    if file.name not in SCHEMAS:
        return t
    t = schema.conform(t, SCHEMAS[file.name])
    if t["run_id"].null_count == t.num_rows:
        t = t.set_column(t.schema.get_field_index("run_id"), "run_id",
                         pa.array([file.parent.name] * t.num_rows, pa.string()))
    return t


def _concat(files: Iterable[Path]) -> pd.DataFrame:
    tables = [read_run_file(f) for f in files]
    if not tables:
        return pd.DataFrame()
    # Unified schema: a column only some runs have is kept (null elsewhere), never dropped.
    return pa.concat_tables(tables, promote_options="permissive").to_pandas()


def read_sweep(path: Path | str, complete_only: bool = False) -> pd.DataFrame:
    """Every run summary under `path` (a sweep directory or a whole runs root), one row per run."""
    frame = _concat(_summary_files(Path(path)))
    if complete_only and len(frame):
        frame = frame[frame["status"] == "complete"].reset_index(drop=True)
    return frame


def read_metrics(path: Path | str) -> pd.DataFrame:
    """Every run's eval-point curve under `path`, with a run_id column."""
    files = sorted(p for p in Path(path).rglob(METRICS) if not p.name.startswith(TMP_PREFIX))
    return _concat(files)
