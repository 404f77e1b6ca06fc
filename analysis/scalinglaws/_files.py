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
