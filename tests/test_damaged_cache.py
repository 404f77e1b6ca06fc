"""A damaged token cache is found on reuse (sizes and the build's digests, once per process) and rebuilt under its
lock with a warning naming the file; the rebuilt cache equals the first build byte for byte."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from scalinglab import token_cache
from scalinglab.config import TrainConfig
from scalinglab.data import TokenDataModule
from scalinglab.resources import SAMPLE_CORPUS

SLICE = {"kind": "text_files", "paths": [str(SAMPLE_CORPUS / "*.txt")], "text_column": "text"}
FILES = ("train.bin", "val.bin", "tokenizer.json", "token_bytes.npy", "manifest.json")


def make(cache_dir) -> TokenDataModule:
    return TokenDataModule(source=SLICE, vocab_size=400, val_tokens=4000, n_ctx=32,
                           train=TrainConfig(batch_size=4, tokens=4096, seed=0), cache_dir=str(cache_dir),
                           progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One built cache (a folder to copy) and its files' bytes."""
    cache = tmp_path_factory.mktemp("cache")
    dm = make(cache)
    assert dm.prepare()["reused"] is False
    return cache, {name: (dm.cache_path / name).read_bytes() for name in FILES}


def zero(path):
    path.write_bytes(b"\0" * path.stat().st_size)  # the right size: only the digest can tell


def flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "train.bin-zeroed": ("train.bin", zero),
    "train.bin-last-byte": ("train.bin", flip_last_byte),
    "train.bin-truncated": ("train.bin", lambda p: p.write_bytes(p.read_bytes()[:1000])),
    "train.bin-missing": ("train.bin", lambda p: p.unlink()),
    "val.bin-zeroed": ("val.bin", zero),
    "tokenizer.json-tampered": ("tokenizer.json", lambda p: p.write_text("{}")),
    "token_bytes.npy-garbage": ("token_bytes.npy", lambda p: p.write_bytes(b"garbage")),
    "token_bytes.npy-zeroed": ("token_bytes.npy", zero),
    "manifest.json-garbled": ("manifest.json", lambda p: p.write_text('{"tokens_')),
    "manifest.json-no-keys": ("manifest.json", lambda p: p.write_text("{}")),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_cache_file_is_rebuilt_with_a_warning_naming_it(case, built, tmp_path):
    import shutil

    shutil.copytree(built[0], tmp_path / "cache")
    dm = make(tmp_path / "cache")
    name, damage = DAMAGE[case]
    damage(dm.cache_path / name)
    token_cache._VERIFIED.clear()  # a new process: nothing verified yet
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = dm.prepare()
    assert manifest["reused"] is False
    said = [str(w.message) for w in caught if "rebuilding the token cache" in str(w.message)]
    assert len(said) == 1 and str(dm.cache_path / name) in said[0], [str(w.message) for w in caught]
    for file in FILES[:-1]:
        assert (dm.cache_path / file).read_bytes() == built[1][file], file
    assert not list((tmp_path / "cache" / "tokens").glob("*.tmp-*"))  # the damaged copy is gone
    # What trains afterwards is the real corpus.
    x, _ = dm.batch(0)
    assert int(x.max()) > 0


def test_an_intact_cache_is_reused_and_hashed_once_per_process(built, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(built[0], tmp_path / "cache")
    token_cache._VERIFIED.clear()
    hashed = []
    real = token_cache.sha256_file
    monkeypatch.setattr(token_cache, "sha256_file", lambda path: hashed.append(path.name) or real(path))
    for _ in range(3):
        assert make(tmp_path / "cache").prepare()["reused"] is True
    assert sorted(hashed) == sorted(token_cache.DIGESTED)  # each file once, not once per run


def test_a_large_split_is_checked_by_its_sampled_digest(built, tmp_path, monkeypatch):
    """Above FULL_DIGEST_BYTES a split is not read whole: a zeroed block the samples cover is still found."""
    import shutil

    shutil.copytree(built[0], tmp_path / "cache")
    dm = make(tmp_path / "cache")
    monkeypatch.setattr(token_cache, "FULL_DIGEST_BYTES", 1000)
    token_cache._VERIFIED.clear()
    read = []
    real = token_cache.sha256_file
    monkeypatch.setattr(token_cache, "sha256_file", lambda path: read.append(path.name) or real(path))
    assert dm.prepare()["reused"] is True
    assert "train.bin" not in read and "val.bin" not in read
    path = dm.cache_path / "train.bin"
    data = bytearray(path.read_bytes())
    data[: token_cache.SAMPLE_BLOCK_BYTES] = bytes(token_cache.SAMPLE_BLOCK_BYTES)
    path.write_bytes(bytes(data))
    token_cache._VERIFIED.clear()
    with pytest.raises(Exception) as refused:
        token_cache.read_manifest(dm.cache_path)
    assert "train.bin" in str(refused.value) and "sampled SHA-256" in str(refused.value)


def test_sample_digest_reads_at_most_a_mebibyte(tmp_path):
    big = tmp_path / "big.bin"
    np.arange(3_000_000, dtype=np.uint32).tofile(big)  # 12 MB
    before = token_cache.sample_digest(big)
    with open(big, "r+b") as f:
        f.seek(12_000_000 - 10)
        f.write(b"x")  # inside the last block
    assert token_cache.sample_digest(big) != before
    assert token_cache.SAMPLE_BLOCKS * token_cache.SAMPLE_BLOCK_BYTES <= 1 << 20


def test_manifest_records_every_digest(built):
    manifest = json.loads(built[1]["manifest.json"])
    assert set(manifest["sha256"]) == set(token_cache.DIGESTED)
    assert set(manifest["sample_sha256"]) == {"train.bin", "val.bin"}


def test_a_build_touches_its_lock_so_a_watcher_sees_it_start(built, tmp_path):
    """scripts/chaos.py times its data-preparation kills by the lock's mtime; a relaunched build must update it."""
    import os
    import shutil

    shutil.copytree(built[0], tmp_path / "cache")
    dm = make(tmp_path / "cache")
    lock = dm.cache_path.with_name(f"{dm.cache_path.name}.lock")
    os.utime(lock, (1, 1))
    shutil.rmtree(dm.cache_path)  # a build killed before it finished: no manifest
    assert dm.prepare()["reused"] is False
    assert lock.stat().st_mtime > 1
