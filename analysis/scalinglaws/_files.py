"""Atomic file writes: a reader never sees a half-written file, and teammates can read the finished one.

`atomic_write(path, write)` calls write(tmp) on a temporary file beside `path`, fsyncs it and moves it into place
with os.replace. The file gets the mode an ordinary open() would give (0o666 minus the process umask), not
mkstemp's private 0o600. scalinglab's results store (scalinglab.store.atomic_write) builds on this one (the analysis package cannot
import scalinglab).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

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
