"""A killed token-cache build leaves `<key>.tmp-<pid>` folders (and tokenizer temporaries); the next build removes
them, and leaves those of other caches and of live processes alone."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from scalinglab.config import TrainConfig
from scalinglab.data import TokenDataModule
from scalinglab.token_cache import cache_key
from scalinglab.resources import SAMPLE_CORPUS

CORPUS = SAMPLE_CORPUS
SLICE = {"kind": "text_files", "paths": [str(CORPUS / "*.txt")], "text_column": "text"}


def make(cache_dir: Path) -> TokenDataModule:
    return TokenDataModule(source=SLICE, vocab_size=400, val_tokens=4000, n_ctx=32,
                           train=TrainConfig(batch_size=4, tokens=4096, seed=0), cache_dir=str(cache_dir),
                           progress=False)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_next_build_removes_what_killed_builds_left(tmp_path):
    tokens = tmp_path / "tokens"
    key = cache_key(SLICE, 400, 4000, None)
    ours = [tokens / f"{key}.tmp-{dead_pid()}", tokens / f"{key}.tmp-{os.getpid()}"]
    other_cache = tokens / f"{'0' * len(key)}.tmp-{dead_pid()}"  # another cache's build: not under our lock
    for folder in (*ours, other_cache):
        folder.mkdir(parents=True)
        (folder / "train.bin").write_bytes(b"\x00" * 1000)  # half a split, no manifest

    first = make(tmp_path)
    assert first.prepare()["reused"] is False
    assert not any(folder.exists() for folder in ours)
    assert (other_cache / "train.bin").exists()
    assert sorted(p.name for p in tokens.iterdir() if p.name.startswith(key)) == [key, f"{key}.lock"]

    # A kill while the BPE tokenizer was saved: its temporary goes, a live process's stays.
    bpe = next((tmp_path / "tokenizers").glob("bpe-*.json"))
    dead = bpe.with_name(f"{bpe.name}.tmp-{dead_pid()}")
    live = bpe.with_name(f"{bpe.name}.tmp-{os.getppid()}")
    for tmp in (dead, live):
        tmp.write_text('{"model": ')
    built = (first.cache_path / "train.bin").read_bytes()
    bpe.unlink()
    shutil.rmtree(first.cache_path)
    again = make(tmp_path)
    assert again.prepare()["reused"] is False and bpe.exists()
    assert not dead.exists() and live.exists()
    assert (again.cache_path / "train.bin").read_bytes() == built  # the stale files changed nothing
