"""The token cache: a corpus tokenized once per (corpus, split, tokenizer settings), shared by every run.

    <cache>/tokens/<key>/train.bin, val.bin   token ids (uint16 below 65536 ids, else uint32), end-of-text between
                                              documents
                         tokenizer.json       the tokenizer (the user's, or a byte-level BPE trained on train.bin's
                                              documents: <cache>/tokenizers/bpe-<split>.json)
                         token_bytes.npy      UTF-8 bytes of each token id (for bits per byte)
                         val_source.bin       (a corpus with sources) the source of each val.bin token: uint8
                                              indices into the manifest's `sources`
                         manifest.json        counts, hashes and versions; written last, so its presence marks a
                                              complete cache

The validation split is whole documents, in a fixed hash order (`split_by_document`). `cache_key` reads no text.
Where the documents have sources, the split is made per source, each holding out its share of the corpus's bytes
(at least one document of a source with two), and val.bin holds one block per source (manifest `val_blocks`);
data.py evaluates from each block that source's share of data.val_tokens.
With `holdout_source` (data.holdout_source), every document of that source goes to validation and none to training
or to the tokenizer: val.bin is the ordinary validation documents, then the held-out ones (`tokens_val_holdout`
tokens at its end, in hash order).
A build happens under a lock per key (store.file_lock), in a `<key>.tmp-<pid>` folder renamed into place at the
end; a killed build's folders are removed by the next build of that key.

A reused cache is never trusted unchecked: `read_manifest` compares every file with what the build recorded (the
sizes the token counts imply, and a digest: the full SHA-256 of files up to FULL_DIGEST_BYTES, a sampled one of
larger split files), once per process and file. `ensure_token_cache` rebuilds a cache that fails, under its lock,
with a warning naming the file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from scalinglab.config import PROJECT_ROOT
from scalinglab.corpus import iter_documents, sha256_file, source_fingerprint
from scalinglab.errors import ConfigError
from scalinglab.sources import (check_holdout, document_source, encode_sourced, group_by_source, has_sources,
                                val_blocks)
from scalinglab.store import file_lock, write_text
from scalinglaws._files import pid_alive
from scalinglab.tokenizer import encode_documents, end_of_text_id, load_tokenizer, token_byte_lengths, train_bpe

log = logging.getLogger(__name__)

CACHE_FORMAT = 3  # bump when the cache layout or the split rule changes (3: per-source split, val_source.bin)
ENCODE_CHUNK_BYTES = 4 << 20  # text per encode_batch call (progress granularity)
MAX_SPLIT_ATTEMPTS = 4


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab < 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _versions() -> dict:
    import tokenizers

    from scalinglab import __version__

    return {"scalinglab": __version__, "tokenizers": tokenizers.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0], "cache_format": CACHE_FORMAT}


# ---------------------------------------------------------------------------------------------------------
# The validation split: whole documents, chosen in a fixed hash order until enough bytes are held out.

def split_by_document(doc_ids: list[str], doc_bytes: list[int], val_bytes: int) -> np.ndarray:
    """Boolean mask of validation documents: documents in order of sha256(doc_id), taken while the held-out bytes
    are below `val_bytes`; at least one document goes to each split. Fixed for a given corpus (no seed)."""
    order = sorted(range(len(doc_ids)), key=lambda i: hashlib.sha256(doc_ids[i].encode()).digest())
    is_val = np.zeros(len(doc_ids), dtype=bool)
    held = 0
    for i in order[:-1]:  # never the last: the training split keeps at least one document
        if held >= val_bytes and is_val.any():
            break
        is_val[i] = True
        held += doc_bytes[i]
    return is_val


# ---------------------------------------------------------------------------------------------------------
# Building the cache.

def remove_stale_builds(final_dir: Path) -> list[Path]:
    """Delete the `<key>.tmp-<pid>` folders killed builds of this cache left beside it; the caller holds the build
    lock of `final_dir`, so no live build of this cache is using any of them."""
    stale = [p for p in final_dir.parent.glob(f"{final_dir.name}.tmp-*") if p.is_dir()]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def _progress(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="B", unit_scale=True, disable=not enabled or None,
                file=sys.stderr, leave=False)


def _train_or_load_tokenizer(train_texts: list[str], vocab_size: int, tokenizer_file, cache_dir: Path,
                             split_key: str, progress: bool):
    """The user's tokenizer.json, or a BPE trained on the training split, cached by (split, settings)."""
    if tokenizer_file is not None:
        return load_tokenizer(tokenizer_file)
    path = cache_dir / "tokenizers" / f"bpe-{_hash([split_key, vocab_size, 'bytelevel-bpe-v1'])}.json"
    if path.exists():
        return load_tokenizer(path, field=str(path), fix=f"delete {path} (a cached tokenizer) and run again to "
                              "retrain it")
    # tokenizers' own bars print one empty line per stage to stdout when it is not a terminal (a log file, CI)
    tokenizer = train_bpe(train_texts, vocab_size, length=len(train_texts),
                          show_progress=progress and sys.stdout.isatty() and sys.stderr.isatty())
    path.parent.mkdir(parents=True, exist_ok=True)
    for tmp in path.parent.glob(f"{path.name}.tmp-*"):  # left by a killed build (another live one keeps its own)
        if not pid_alive(tmp.name.rpartition(".tmp-")[2]):
            tmp.unlink(missing_ok=True)
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tokenizer.save(str(tmp))
    os.replace(tmp, path)
    return tokenizer


def _encode_to_file(tokenizer, texts: list[str], eot_id: int, dtype: np.dtype, path: Path, progress_bar) -> int:
    """Encode documents chunk by chunk, appending to `path`; return the number of tokens written."""
    written = 0
    with open(path, "wb") as f:
        chunk, chunk_bytes = [], 0
        for i, text in enumerate(texts):
            chunk.append(text)
            chunk_bytes += len(text)
            if chunk_bytes >= ENCODE_CHUNK_BYTES or i == len(texts) - 1:
                ids = encode_documents(tokenizer, chunk, eot_id, dtype)
                ids.tofile(f)
                written += ids.size
                progress_bar.update(chunk_bytes)
                chunk, chunk_bytes = [], 0
    return written


def build_token_cache(source: dict, vocab_size: int, val_tokens: int, tokenizer_file, cache_dir: Path,
                      final_dir: Path, progress: bool = True, holdout_source: str | None = None) -> dict:
    """Read the corpus, split it by document, train/load the tokenizer, write both splits; return the manifest.

    Everything is written under a temporary directory that is renamed to `final_dir` at the end, so an
    interrupted build never leaves a cache that looks complete. A streamed source (data.source.streaming) is
    built by token_stream.build_streamed_cache instead, without holding the corpus.
    """
    if source.get("streaming"):
        from scalinglab.token_stream import build_streamed_cache

        return build_streamed_cache(source, vocab_size, val_tokens, tokenizer_file, cache_dir, final_dir, progress)
    start = time.perf_counter()
    ids, texts = [], []
    for doc_id, text in iter_documents(source, cache_dir, PROJECT_ROOT):
        if text and text.strip():
            ids.append(doc_id)
            texts.append(text)
    if not texts:
        where = {"text_files": f"the files {source.get('paths')}", "hf": f"the dataset {source.get('name')!r}"}
        raise ConfigError("data.source", f"{where.get(source.get('kind'), 'the corpus')} hold no non-empty document "
                          "(every one is empty or whitespace)", "point data.source at files or a dataset that contain text")
    if len(texts) < 2:
        raise ConfigError("data.source", f"the corpus has 1 document ({ids[0]}); the validation split is made of "
                          "whole documents", "give at least 2 documents (e.g. split the file into several .txt files)")
    doc_sources = [document_source(i) for i in ids] if has_sources(source) else None
    names = sorted(set(doc_sources)) if doc_sources else []
    if len(names) > 255:
        raise ConfigError("data.source.source_column", f"has {len(names)} distinct values; per-source losses take at "
                          "most 255 sources", "name a coarser column (e.g. a domain, not a URL), or null")
    check_holdout(holdout_source, names, source)
    index = {name: i for i, name in enumerate(names)}
    held = [i for i in range(len(ids)) if holdout_source is not None and doc_sources[i] == holdout_source]
    held.sort(key=lambda i: hashlib.sha256(ids[i].encode()).digest())
    rest = [i for i in range(len(ids)) if holdout_source is None or doc_sources[i] != holdout_source]
    if len(rest) < 2:
        raise ConfigError("data.holdout_source", f"leaves {len(rest)} document of other sources; the validation "
                          "split is made of whole documents", "hold out a smaller source, or null")
    doc_bytes = [len(t.encode("utf-8")) for t in texts]
    groups = group_by_source(rest, ids, doc_sources) if doc_sources else {None: rest}
    rest_bytes = sum(doc_bytes[i] for i in rest)
    log.info("corpus: %d documents, %.1f MB", len(texts), sum(doc_bytes) / 1e6)

    # The split is chosen by bytes, before the tokenizer exists (it is trained on the training split only);
    # if the held-out documents encode to fewer than val_tokens tokens, hold out more and retrain.
    bytes_per_token_guess = 4.0 if vocab_size <= 8192 else 4.8
    for attempt in range(MAX_SPLIT_ATTEMPTS):
        is_val = np.zeros(len(ids), dtype=bool)
        for members in groups.values():  # with sources: each source's share of the bytes (docs/DATA.md)
            share = val_tokens * bytes_per_token_guess * (sum(doc_bytes[i] for i in members) / rest_bytes
                                                          if len(groups) > 1 else 1)
            is_val[members] = split_by_document([ids[i] for i in members], [doc_bytes[i] for i in members], int(share))
        is_train = ~is_val
        is_train[np.array(held, dtype=np.int64)] = False
        train_texts = [t for t, v in zip(texts, is_train) if v]
        val_docs = [i for i in range(len(ids)) if is_val[i]]
        if doc_sources:  # one block per source, each in hash order (data.py evaluates each block's share)
            val_docs = [i for members in groups.values() for i in members if is_val[i]]
        val_texts = [texts[i] for i in val_docs]
        split_key = _hash([source_fingerprint(source, PROJECT_ROOT), sorted(np.array(ids)[~is_train].tolist())])
        tokenizer = _train_or_load_tokenizer(train_texts, vocab_size, tokenizer_file, cache_dir, split_key, progress)
        eot = end_of_text_id(tokenizer)
        val_ids, val_owner = encode_sourced(tokenizer, val_texts, doc_sources and [index[doc_sources[i]] for i in
                                                                                     val_docs], eot, token_dtype(vocab_size))
        if val_ids.size >= val_tokens:
            break
        if is_val.sum() == len(rest) - len(groups):  # every document but one (a source) is held out already
            raise ConfigError("data.val_tokens", f"is {val_tokens}, but all documents but one hold only "
                              f"{val_ids.size} tokens ({sum(doc_bytes)} bytes in the whole corpus)",
                              "lower data.val_tokens (or give more text)")
        bytes_per_token_guess *= 1.1 * val_tokens / max(val_ids.size, 1)
    else:
        raise ConfigError("data.val_tokens", f"could not hold out {val_tokens} tokens in {MAX_SPLIT_ATTEMPTS} tries",
                          "lower data.val_tokens")
    if tokenizer.get_vocab_size() > vocab_size:
        raise ConfigError("data.vocab_size", f"is {vocab_size} but the tokenizer {tokenizer_file} has "
                          f"{tokenizer.get_vocab_size()} tokens", f"set data.vocab_size={tokenizer.get_vocab_size()}")

    dtype = token_dtype(vocab_size)
    held_ids, held_owner = encode_sourced(tokenizer, [texts[i] for i in held], [index[holdout_source]] * len(held)
                                           if held else None, eot, dtype)
    val_ids = np.concatenate([val_ids, held_ids])
    by_source = {split: dict(Counter(doc_sources[i] for i in range(len(ids)) if is_train[i] == (split == "train")))
                 for split in ("train", "val")} if doc_sources else {"train": {}, "val": {}}
    tmp_dir = new_build_dir(final_dir)
    try:
        val_ids.tofile(tmp_dir / "val.bin")
        if doc_sources:
            owners = [val_owner] + ([held_owner] if held else [])
            np.concatenate(owners).astype(np.uint8).tofile(tmp_dir / "val_source.bin")
        bytes_train = sum(b for b, v in zip(doc_bytes, is_train) if v)
        with _progress(bytes_train, "tokenizing", progress) as bar:
            tokens_train = _encode_to_file(tokenizer, train_texts, eot, dtype, tmp_dir / "train.bin", bar)
        tokenizer.save(str(tmp_dir / "tokenizer.json"))
        np.save(tmp_dir / "token_bytes.npy", token_byte_lengths(tokenizer))
        manifest = {
            "tokens_train": int(tokens_train), "tokens_val": int(val_ids.size),
            "bytes_train": int(bytes_train), "bytes_val": int(sum(b for b, v in zip(doc_bytes, is_train) if not v)),
            "documents": len(texts), "documents_train": int(is_train.sum()), "documents_val": int((~is_train).sum()),
            "sources": names, "holdout_source": holdout_source, "tokens_val_holdout": int(held_ids.size),
            "documents_by_source": by_source, "val_blocks": val_blocks(val_owner, names) if doc_sources else [],
            "bytes_by_source": {name: sum(doc_bytes[i] for i in members) for name, members in groups.items()}
            if doc_sources else {},
            "vocab_size": int(vocab_size), "tokenizer_vocab_size": int(tokenizer.get_vocab_size()),
            "val_tokens_requested": int(val_tokens), "dtype": dtype.name, "eot_id": int(eot),
            "source": source, "corpus_fingerprint": source_fingerprint(source, PROJECT_ROOT), "split_key": split_key,
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        return publish(tmp_dir, final_dir, manifest)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise


def new_build_dir(final_dir: Path) -> Path:
    """An empty `<key>.tmp-<pid>` folder beside `final_dir` for this process's build."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final_dir.with_name(final_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    return tmp_dir


def publish(tmp_dir: Path, final_dir: Path, manifest: dict) -> dict:
    """Finish a build: record the digests of tmp_dir's files and the versions in `manifest`, write it last (its
    presence marks a complete cache), rename tmp_dir to final_dir; return the manifest now at final_dir."""
    manifest = {**manifest, "sha256": {name: sha256_file(tmp_dir / name) for name in DIGESTED},
                "sample_sha256": {name: sample_digest(tmp_dir / name) for name in SPLITS},
                "versions": _versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_text(tmp_dir / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True))
    try:
        os.replace(tmp_dir, final_dir)
    except OSError:  # another process finished the same cache first; keep theirs
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return json.loads((final_dir / "manifest.json").read_text())


def cache_key(source: dict, vocab_size: int, val_tokens: int, tokenizer_file, holdout_source: str | None = None
              ) -> str:
    """Key of a token cache: (corpus fingerprint, split and tokenizer settings, held-out source); reads no text."""
    tokenizer_hash = None if tokenizer_file is None else sha256_file(tokenizer_file)
    return _hash([CACHE_FORMAT, source_fingerprint(source, PROJECT_ROOT), vocab_size, val_tokens, tokenizer_hash,
                  holdout_source])


MANIFEST_KEYS = ("tokens_train", "tokens_val", "dtype", "sha256")
SPLITS = ("train.bin", "val.bin")
DIGESTED = (*SPLITS, "tokenizer.json", "token_bytes.npy")  # the files whose SHA-256 the manifest records
FULL_DIGEST_BYTES = 64 << 20  # files up to this size are checked with their full SHA-256 (about 0.1 s)
SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES = 256, 4096  # a larger split is checked by 1 MiB read at evenly spaced offsets
_VERIFIED: set[tuple] = set()  # (file, size, mtime_ns, inode, digest) already checked by this process


def sample_digest(path: Path | str) -> str:
    """Hex SHA-256 of a file's size and of SAMPLE_BLOCKS blocks of SAMPLE_BLOCK_BYTES bytes at evenly spaced
    offsets, the first and the last block included: at most 1 MiB read whatever the file's size, so a zeroed,
    overwritten or regrown split is found in milliseconds (a change confined to bytes between the blocks is not)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    last = max(size - SAMPLE_BLOCK_BYTES, 0)
    offsets = sorted({last * i // (SAMPLE_BLOCKS - 1) for i in range(SAMPLE_BLOCKS)})
    with open(path, "rb") as f:
        for offset in offsets:
            f.seek(offset)
            digest.update(f.read(SAMPLE_BLOCK_BYTES))
    return digest.hexdigest()


def _digest_problem(path: Path, manifest: dict) -> str | None:
    """Why `path`'s contents differ from what the build recorded, or None (also when nothing was recorded).

    The full SHA-256 for files up to FULL_DIGEST_BYTES (and larger ones whose manifest has no sampled digest),
    else the sampled digest; each (file, size, mtime, inode) is hashed once per process."""
    full = manifest["sha256"].get(path.name) if isinstance(manifest.get("sha256"), dict) else None
    sample = manifest.get("sample_sha256", {}).get(path.name) if isinstance(manifest.get("sample_sha256"), dict) \
        else None
    stat = path.stat()
    use_full = full is not None and (stat.st_size <= FULL_DIGEST_BYTES or sample is None)
    expected, kind = (full, "SHA-256") if use_full else (sample, "sampled SHA-256")
    if expected is None:
        return None
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, expected)
    if key in _VERIFIED:
        return None
    if (sha256_file(path) if use_full else sample_digest(path)) != expected:
        return f"its {kind} differs from the one recorded when the cache was built"
    _VERIFIED.add(key)
    return None


def corrupt(cache_path: Path, file: str, problem: str) -> ConfigError:
    return ConfigError(str(cache_path / file), f"the token cache is damaged: {problem}",
                       f"delete {cache_path} and run again to rebuild it (nothing else is lost)")


def read_manifest(cache_path: Path) -> dict:
    """The manifest of a complete token cache, after checks that its files match it.

    Checked: the manifest parses and has its keys; train.bin and val.bin have exactly the bytes the manifest's token
    counts need; train.bin, val.bin, tokenizer.json and token_bytes.npy have the digest the build recorded
    (`_digest_problem`: full SHA-256, or sampled for a large split; once per process and file); token_bytes.npy
    exists. A damaged file raises ConfigError naming it (a truncated or zeroed cache would otherwise fail mid-run
    or train on garbage); `ensure_token_cache` rebuilds such a cache.
    """
    cache_path = Path(cache_path)
    try:
        manifest = json.loads((cache_path / "manifest.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise corrupt(cache_path, "manifest.json", f"cannot read it ({error})") from None
    missing = [key for key in MANIFEST_KEYS if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise corrupt(cache_path, "manifest.json", f"it lacks {missing}")
    try:
        itemsize = np.dtype(manifest["dtype"]).itemsize
    except TypeError:
        raise corrupt(cache_path, "manifest.json", f"unknown dtype {manifest['dtype']!r}") from None
    for name, tokens in (("train.bin", manifest["tokens_train"]), ("val.bin", manifest["tokens_val"])):
        path = cache_path / name
        size = path.stat().st_size if path.exists() else None
        if size != int(tokens) * itemsize:
            raise corrupt(cache_path, name, f"{'missing' if size is None else f'{size} bytes'}, the manifest says "
                           f"{tokens} tokens x {itemsize} bytes = {int(tokens) * itemsize} bytes")
    for name in DIGESTED:
        path = cache_path / name
        if not path.is_file():
            raise corrupt(cache_path, name, "missing")
        problem = _digest_problem(path, manifest)
        if problem is not None:
            raise corrupt(cache_path, name, problem)
    return manifest


def cache_path(cache_dir: Path | str, source: dict, vocab_size: int, val_tokens: int, tokenizer_file,
               holdout_source: str | None = None) -> Path:
    """<cache_dir>/tokens/<cache_key>: where the cache of these settings lives (built or not)."""
    return Path(cache_dir) / "tokens" / cache_key(source, vocab_size, val_tokens, tokenizer_file, holdout_source)


def _damage(path: Path) -> ConfigError | None:
    """Why the complete cache at `path` cannot be reused (read_manifest's error), or None."""
    try:
        read_manifest(path)
    except ConfigError as error:
        return error
    return None


def ensure_token_cache(path: Path, source: dict, vocab_size: int, val_tokens: int, tokenizer_file,
                       cache_dir: Path, progress: bool = True,
                       holdout_source: str | None = None) -> bool:
    """Build the cache at `path` (= cache_path(...)) unless it is complete and checks out; True if it was reused.

    Parallel runs wait on one lock per key, so the cache is built once; the builder first removes what killed
    builds of this key left. A complete cache whose files fail `read_manifest` is moved aside (to a `.tmp-` name
    the next build removes, so a process still reading it keeps its open files) and rebuilt, with a warning
    naming the damaged file."""
    if (path / "manifest.json").exists() and _damage(path) is None:
        return True
    lock = path.with_name(f"{path.name}.lock")
    with file_lock(lock):
        remove_stale_builds(path)
        if (path / "manifest.json").exists():  # another process built (or rebuilt) it while we waited
            damage = _damage(path)
            if damage is None:
                return True
            message = f"{damage.field}: {damage.problem}; rebuilding the token cache {path}"
            warnings.warn(message, stacklevel=2)
            log.warning(message)
            aside = path.with_name(f"{path.name}.tmp-{os.getpid()}-damaged")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(path, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.utime(lock)  # the lock's mtime says when a build last started (opening it in append mode does not)
        build_token_cache(source, vocab_size, val_tokens, tokenizer_file, cache_dir, path, progress, holdout_source)
    return False
