"""keep_freed_memory: tensors allocated again and again stop page-faulting."""
from __future__ import annotations

import subprocess
import sys

import pytest

# Each run starts from glibc's static defaults (a 128 KiB mmap threshold, no dynamic raise), under which every
# 1 MiB tensor is a fresh mapping that faults on each of its pages; `keep` then calls keep_freed_memory.
FAULTS = """
import ctypes, resource, sys, torch
from scalinglab.allocator import M_MMAP_THRESHOLD, keep_freed_memory
assert ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 128 * 1024)
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def step():
    torch.empty(2**18).fill_(1.0)  # 1 MiB, written, freed
for _ in range(50):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def faults_per_step(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_removes_the_page_faults_of_reallocated_tensors():
    default, kept = faults_per_step("default"), faults_per_step("keep")
    assert default >= 100 and kept <= 1, (default, kept)  # 4 KiB pages: up to 256 faults per MiB
