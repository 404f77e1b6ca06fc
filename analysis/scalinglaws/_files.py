"""Atomic file writes: a reader never sees a half-written file, and teammates can read the finished one.

`atomic_write(path, write)` calls write(tmp) on a temporary file beside `path`, fsyncs it and moves it into place
with os.replace. The file gets the mode an ordinary open() would give (0o666 minus the process umask), not
mkstemp's private 0o600. scalinglab's results store (scalinglab.store.atomic_write) builds on this one (the analysis package cannot
import scalinglab). `replaced_together(folder)` does the same for a set of files (a report's text and figures):
they are written into a temporary folder that then takes the folder's place in one rename.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

TMP_PREFIX = ".tmp-"  # readers of a runs tree ignore files named like this


def umask() -> int:
    """The process umask (read from /proc where it can be, so no other thread sees a changed umask)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path | str, write: Callable[[str], None],
                 before_replace: Callable[[], None] | None = None) -> Path:
    """Write `path` through write(tmp_path) on a temporary file in its directory, then os.replace it into place.

    The temporary file is removed on any failure; `before_replace` runs after the fsync (a test hook).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~umask())
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path | str, text: str) -> Path:
    """Atomically write `text` (UTF-8) to `path`."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def check_file_name(name, field: str) -> str:
    """`name` as a plain file name that stays in its folder (no '/', no '..', not hidden, not empty)."""
    from .errors import InputError

    text = str(name)
    if not text.strip() or "/" in text or "\\" in text or text.startswith(".") or "\0" in text:
        raise InputError(field, f"{text!r} is not a plain file name (it would be written outside its folder or "
                         "hidden)", "use letters, digits, '-' and '_', e.g. --name report")
    return text


def check_out_dir(path, field: str) -> Path:
    """A folder to write into: a directory, or a path that can be created as one, that this process can write."""
    from .errors import InputError

    if not str(path).strip():
        raise InputError(field, "is empty", "pass a folder, e.g. --out reports")
    out = Path(path).expanduser().absolute()
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        what = "is a file" if existing == out else f"cannot be created: {existing} is a file"
        raise InputError(field, f"{out} {what}, not a directory", f"pass a folder for {field}, or move {existing}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(field, f"{existing} is not writable", f"make it writable or pass another folder for {field}")
    return out


def check_out_file(path, field: str, suffix: str) -> Path:
    """A file to write: not a directory, ending in `suffix`, in a folder that exists (or can be made) and is
    writable."""
    from .errors import InputError

    out = Path(path).expanduser().absolute()
    if out.is_dir() or not out.name or out.suffix != suffix:
        raise InputError(field, f"{out} is not a {suffix} file name", f"pass a file such as fit{suffix}")
    check_out_dir(out.parent, field)
    return out


# ------------------------------------------------------------------------------------------ a set of files at once

def pid_alive(pid: str) -> bool:
    """Whether the process a `<name>.<pid>` or `.tmp-<pid>` suffix names still runs (True when it cannot be told:
    not a number, or alive but someone else's)."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _stages(folder: Path, kind: str) -> list[Path]:
    return list(folder.parent.glob(f"{TMP_PREFIX}{folder.name}.{kind}.*"))


def _whole(folder: Path, owned_by: Iterable[str], protect: Iterable[Path]) -> bool:
    """Whether `folder` may be swapped whole: it is new, empty or holds an earlier report (`owned_by` files), and
    is neither the working directory nor a folder above it or above a `protect` path (a runs tree being read)."""
    here = Path.cwd().resolve()
    real = folder.resolve()
    for inside in (here, *(Path(p).resolve() for p in protect)):
        if inside == real or real in inside.parents:
            return False
    if not folder.exists():
        return True
    return folder.is_dir() and (not any(folder.iterdir()) or all((folder / n).is_file() for n in owned_by))


@contextmanager
def replaced_together(folder: Path | str, owned_by: Iterable[str] = (), protect: Iterable[Path] = (),
                      last: Iterable[str] = ()) -> Iterator[Path]:
    """Yield a temporary folder to write a set of files into; when the block ends without an error they appear
    in `folder` together, and a process killed before that leaves `folder` as it was.

    Where `folder` may be swapped whole (`_whole`), the temporary folder starts as a copy of it (every other file
    is kept), receives the new files, and takes its place in one atomic exchange (renameat2; two renames
    where the file system cannot, and a later call puts a folder a kill left aside back). Elsewhere (a folder
    holding other things) the new files are moved in one by one, the `last` names (the report's text) at the end.
    Temporary folders of killed processes are removed.
    """
    folder = Path(folder).absolute()
    folder.parent.mkdir(parents=True, exist_ok=True)
    if not folder.exists():  # a kill between the two fallback renames left the previous folder aside
        for old in _stages(folder, "old"):
            if not pid_alive(old.name.rpartition(".")[2]):
                os.rename(old, folder)
                break
    for kind in ("new", "old"):
        for stale in _stages(folder, kind):
            if not pid_alive(stale.name.rpartition(".")[2]):
                shutil.rmtree(stale, ignore_errors=True)
    whole = _whole(folder, tuple(owned_by), tuple(protect))
    stage = (folder.parent / f"{TMP_PREFIX}{folder.name}.new.{os.getpid()}" if whole
             else folder / f"{TMP_PREFIX}{folder.name}.new.{os.getpid()}")
    shutil.rmtree(stage, ignore_errors=True)
    if whole and folder.exists():
        shutil.copytree(folder, stage, ignore=shutil.ignore_patterns(f"{TMP_PREFIX}*"))  # copies: a writer may
        # write a file in place, which through a hard link would change the live folder
    else:
        stage.mkdir(parents=True)
    try:
        yield stage
        if not whole:
            later = set(last)
            names = sorted(stage.iterdir(), key=lambda p: p.name in later)
            for path in names:
                os.replace(path, folder / path.name)
        elif not folder.exists():
            os.rename(stage, folder)
        elif not _exchange(stage, folder):
            old = folder.parent / f"{TMP_PREFIX}{folder.name}.old.{os.getpid()}"
            os.rename(folder, old)
            os.rename(stage, folder)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)  # after an exchange: the previous folder
