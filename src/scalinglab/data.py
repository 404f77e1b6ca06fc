"""Corpus -> tokenizer -> token cache -> train/val windows, wrapped in a LightningDataModule.

Contract with train.py (configs/data/*.yaml; every yaml has `_target_: scalinglab.data.TokenDataModule`):

    dm = hydra.utils.instantiate(cfg.data, n_ctx=cfg.model.n_ctx, batch_size=cfg.train.batch_size,
                                 tokens=cfg.train.tokens, seed=cfg.train.seed, cache_dir=cfg.paths.cache,
                                 _convert_="all")
    dm.prepare()            # builds or reuses the token cache (idempotent; also run by prepare_data()/setup())

After prepare():
- `manifest`: the cache's manifest (tokens/bytes/documents per split, hashes, versions) plus `seconds` (this call)
  and `reused`;
- `vocab_size` (= data.vocab_size, the model's embedding size), `tokenizer`, `tokenizer_path`;
- `tokens_per_step` = batch_size * n_ctx; `steps` = max(1, round(tokens / tokens_per_step));
  `tokens_total` = steps * tokens_per_step (the exact budget consumed);
- `epochs` = steps * batch_size / train_windows (passes over the training split; warned about when > 1);
- `batch(step) -> (x, y)`: int64 tensors (batch_size, n_ctx), a pure function of (seed, step). The training split
  is cut into train_windows = tokens_train // (n_ctx + 1) non-overlapping windows of n_ctx + 1 tokens; window
  number g = step * batch_size + b is window perm_e[g mod train_windows] of epoch e = g // train_windows, where
  perm_e is a permutation seeded by (seed, e). x = window[:-1], y = window[1:];
- `train_dataloader()`: batch(s) for s = trainer.global_step (0 without a trainer), ..., steps - 1, so a resumed
  run sees exactly the batches it would have seen (one batch per optimizer step: no gradient accumulation);
- `val_dataloader()`: val_windows = min(val_tokens, tokens_val - 1) // n_ctx windows in fixed order; window i has
  x = val[i n_ctx : (i+1) n_ctx], y = val[i n_ctx + 1 : (i+1) n_ctx + 1], so every evaluated target token is
  predicted exactly once. Batched at batch_size; the LAST BATCH MAY BE SMALLER (weight the mean by batch size);
- `val_tokens_evaluated` = val_windows * n_ctx; `val_bytes_per_token` = UTF-8 bytes / tokens of exactly those
  targets, so bits per byte = loss / (ln 2 * val_bytes_per_token) (end-of-text counts 0 bytes; see tokenizer.py).

Command line: `python -m scalinglab.data prepare [Hydra overrides]` builds or reuses the cache and prints the
manifest as one JSON line last.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import torch

from scalinglab.corpus import iter_documents, source_fingerprint, check_source, sha256_file
from scalinglab.errors import ConfigError
from scalinglab.tokenizer import (check_vocab_size, encode_documents, end_of_text_id, load_tokenizer,
                                  token_byte_lengths, train_bpe)

log = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cache layout or the split rule changes
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the repository (editable install); used to resolve globs
ENCODE_CHUNK_BYTES = 4 << 20  # text per encode_batch call (progress granularity)
MAX_SPLIT_ATTEMPTS = 4


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab < 65536), else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def bits_per_byte(loss_nats: float, bytes_per_token: float) -> float:
    """bpb = loss / (ln 2 * bytes_per_token) = loss * tokens / (bytes * ln 2) (DESIGN.md section 2)."""
    return loss_nats / (math.log(2) * bytes_per_token)


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

@contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive lock on `lock_path` (POSIX flock) so parallel runs build a cache once."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # no flock (Windows): two builders may race; the rename below keeps that safe
            pass
        yield


def remove_stale_builds(final_dir: Path) -> list[Path]:
    """Delete the `<key>.tmp-<pid>` folders killed builds of this cache left beside it; the caller holds the build
    lock of `final_dir`, so no live build of this cache is using any of them."""
    stale = [p for p in final_dir.parent.glob(f"{final_dir.name}.tmp-*") if p.is_dir()]
    for folder in stale:
        shutil.rmtree(folder, ignore_errors=True)
    return stale


def _pid_alive(pid: str) -> bool:
    """Whether the process a `.tmp-<pid>` name points to still runs (True when it cannot be told)."""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, but someone else's
        return True
    return True


def _progress(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="B", unit_scale=True, disable=not enabled or None,
                file=sys.stderr, leave=False)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    os.replace(tmp, path)


def _train_or_load_tokenizer(train_texts: list[str], vocab_size: int, tokenizer_file, cache_dir: Path,
                             split_key: str, progress: bool):
    """The user's tokenizer.json, or a BPE trained on the training split, cached by (split, settings)."""
    if tokenizer_file is not None:
        return load_tokenizer(tokenizer_file)
    path = cache_dir / "tokenizers" / f"bpe-{_hash([split_key, vocab_size, 'bytelevel-bpe-v1'])}.json"
    if path.exists():
        return load_tokenizer(path, field=str(path), fix=f"delete {path} (a cached tokenizer) and run again to "
                              "retrain it")
    tokenizer = train_bpe(train_texts, vocab_size, length=len(train_texts), show_progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    for tmp in path.parent.glob(f"{path.name}.tmp-*"):  # left by a killed build (another live one keeps its own)
        if not _pid_alive(tmp.name.rpartition(".tmp-")[2]):
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
                      final_dir: Path, progress: bool = True) -> dict:
    """Read the corpus, split it by document, train/load the tokenizer, write both splits; return the manifest.

    Everything is written under a temporary directory that is renamed to `final_dir` at the end, so an
    interrupted build never leaves a cache that looks complete.
    """
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
    doc_bytes = [len(t.encode("utf-8")) for t in texts]
    log.info("corpus: %d documents, %.1f MB", len(texts), sum(doc_bytes) / 1e6)

    # The split is chosen by bytes, before the tokenizer exists (it is trained on the training split only);
    # if the held-out documents encode to fewer than val_tokens tokens, hold out more and retrain.
    bytes_per_token_guess = 4.0 if vocab_size <= 8192 else 4.8
    for attempt in range(MAX_SPLIT_ATTEMPTS):
        is_val = split_by_document(ids, doc_bytes, int(val_tokens * bytes_per_token_guess))
        train_texts = [t for t, v in zip(texts, is_val) if not v]
        val_texts = [t for t, v in zip(texts, is_val) if v]
        split_key = _hash([source_fingerprint(source, PROJECT_ROOT), sorted(np.array(ids)[is_val].tolist())])
        tokenizer = _train_or_load_tokenizer(train_texts, vocab_size, tokenizer_file, cache_dir, split_key, progress)
        eot = end_of_text_id(tokenizer)
        val_ids = encode_documents(tokenizer, val_texts, eot, token_dtype(vocab_size))
        if val_ids.size >= val_tokens:
            break
        if is_val.sum() == len(ids) - 1:  # every document but one is held out already
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
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = final_dir.with_name(final_dir.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp_dir, ignore_errors=True)
    tmp_dir.mkdir()
    try:
        val_ids.tofile(tmp_dir / "val.bin")
        bytes_train = sum(b for b, v in zip(doc_bytes, is_val) if not v)
        with _progress(bytes_train, "tokenizing", progress) as bar:
            tokens_train = _encode_to_file(tokenizer, train_texts, eot, dtype, tmp_dir / "train.bin", bar)
        tokenizer.save(str(tmp_dir / "tokenizer.json"))
        np.save(tmp_dir / "token_bytes.npy", token_byte_lengths(tokenizer))
        manifest = {
            "tokens_train": int(tokens_train), "tokens_val": int(val_ids.size),
            "bytes_train": int(bytes_train), "bytes_val": int(sum(b for b, v in zip(doc_bytes, is_val) if v)),
            "documents": len(texts), "documents_train": int((~is_val).sum()), "documents_val": int(is_val.sum()),
            "vocab_size": int(vocab_size), "tokenizer_vocab_size": int(tokenizer.get_vocab_size()),
            "val_tokens_requested": int(val_tokens), "dtype": dtype.name, "eot_id": int(eot),
            "source": source, "corpus_fingerprint": source_fingerprint(source, PROJECT_ROOT), "split_key": split_key,
            "sha256": {name: sha256_file(tmp_dir / name) for name in ("train.bin", "val.bin", "tokenizer.json")},
            "versions": _versions(), "build_seconds": round(time.perf_counter() - start, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        _write_json(tmp_dir / "manifest.json", manifest)  # written last: its presence marks a complete cache
        try:
            os.replace(tmp_dir, final_dir)
        except OSError:  # another process finished the same cache first; keep theirs
            shutil.rmtree(tmp_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return json.loads((final_dir / "manifest.json").read_text())


def cache_key(source: dict, vocab_size: int, val_tokens: int, tokenizer_file) -> str:
    """Key of a token cache: (corpus fingerprint, split and tokenizer settings); cheap, reads no text."""
    tokenizer_hash = None if tokenizer_file is None else sha256_file(tokenizer_file)
    return _hash([CACHE_FORMAT, source_fingerprint(source, PROJECT_ROOT), vocab_size, val_tokens, tokenizer_hash])


MANIFEST_KEYS = ("tokens_train", "tokens_val", "dtype", "sha256")


def _corrupt(cache_path: Path, file: str, problem: str) -> ConfigError:
    return ConfigError(str(cache_path / file), f"the token cache is damaged: {problem}",
                       f"delete {cache_path} and run again to rebuild it (nothing else is lost)")


def read_manifest(cache_path: Path) -> dict:
    """The manifest of a complete token cache, after cheap checks that its files match it.

    Checked: the manifest parses and has its keys; train.bin and val.bin have exactly the bytes the manifest's token
    counts need; tokenizer.json has its recorded SHA-256; token_bytes.npy exists. A damaged file raises ConfigError
    naming it (a truncated or garbled cache would otherwise fail mid-run or train on garbage).
    """
    cache_path = Path(cache_path)
    try:
        manifest = json.loads((cache_path / "manifest.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _corrupt(cache_path, "manifest.json", f"cannot read it ({error})") from None
    missing = [key for key in MANIFEST_KEYS if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise _corrupt(cache_path, "manifest.json", f"it lacks {missing}")
    try:
        itemsize = np.dtype(manifest["dtype"]).itemsize
    except TypeError:
        raise _corrupt(cache_path, "manifest.json", f"unknown dtype {manifest['dtype']!r}") from None
    for name, tokens in (("train.bin", manifest["tokens_train"]), ("val.bin", manifest["tokens_val"])):
        path = cache_path / name
        size = path.stat().st_size if path.exists() else None
        if size != int(tokens) * itemsize:
            raise _corrupt(cache_path, name, f"{'missing' if size is None else f'{size} bytes'}, the manifest says "
                           f"{tokens} tokens x {itemsize} bytes = {int(tokens) * itemsize} bytes")
    tokenizer = cache_path / "tokenizer.json"
    expected = manifest["sha256"].get("tokenizer.json") if isinstance(manifest["sha256"], dict) else None
    if not tokenizer.exists() or (expected is not None and sha256_file(tokenizer) != expected):
        raise _corrupt(cache_path, "tokenizer.json", "missing" if not tokenizer.exists() else
                       "its SHA-256 differs from the manifest's")
    if not (cache_path / "token_bytes.npy").exists():
        raise _corrupt(cache_path, "token_bytes.npy", "missing")
    return manifest


# ---------------------------------------------------------------------------------------------------------
# Windows over the memmapped splits. Both classes open their memmap lazily, so DataLoader workers receive a
# path, not a copy of the data, when the dataset is pickled.

class _Memmap:
    def __init__(self, path: Path, dtype: str):
        self.path, self.dtype, self._tokens = str(path), dtype, None

    @property
    def tokens(self) -> np.ndarray:
        if self._tokens is None:
            self._tokens = np.memmap(self.path, dtype=self.dtype, mode="r")
        return self._tokens

    def __getstate__(self):
        return {**self.__dict__, "_tokens": None}


class TrainWindows(torch.utils.data.Dataset):
    """Map-style dataset over optimizer steps [first_step, last_step): item i is batch(first_step + i)."""

    def __init__(self, path: Path, dtype: str, n_tokens: int, n_ctx: int, batch_size: int, seed: int,
                 first_step: int = 0, last_step: int = 0):
        self.memmap = _Memmap(path, dtype)
        self.n_ctx, self.batch_size, self.seed = n_ctx, batch_size, seed
        self.n_windows = n_tokens // (n_ctx + 1)
        self.first_step, self.last_step = first_step, last_step
        self.rank, self.world_size = 0, 1
        self._permutations: dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        """Order of the windows in `epoch`: a permutation seeded by (seed, epoch)."""
        if epoch not in self._permutations:
            if len(self._permutations) >= 2:
                self._permutations.pop(min(self._permutations))
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, epoch])))
            self._permutations[epoch] = rng.permutation(self.n_windows)
        return self._permutations[epoch]

    def window_starts(self, step: int) -> np.ndarray:
        """Token offsets of the batch_size windows of optimizer step `step`."""
        g = step * self.batch_size + np.arange(self.batch_size)
        epochs, positions = np.divmod(g, self.n_windows)
        windows = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs):  # at most two epochs meet in one batch
            here = epochs == epoch
            windows[here] = self.permutation(int(epoch))[positions[here]]
        return windows * (self.n_ctx + 1)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.window_starts(step)[:, None] + np.arange(self.n_ctx + 1)
        windows = torch.from_numpy(self.memmap.tokens[index].astype(np.int64))
        return windows[:, :-1], windows[:, 1:]

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step)

    def __getitem__(self, i: int):
        x, y = self.batch(self.first_step + i)
        # Under DDP each process takes its rows of the step's global batch (train.batch_size sums over devices).
        return x[self.rank::self.world_size], y[self.rank::self.world_size]


class ResumeSampler(torch.utils.data.Sampler):
    """Steps start, ..., total - 1, with the length of the whole run (see TokenDataModule.train_dataloader)."""

    def __init__(self, start: int, total: int):
        self.start, self.total = start, total

    def __iter__(self):
        return iter(range(self.start, self.total))

    def __len__(self) -> int:
        return self.total


class ValWindows(torch.utils.data.Dataset):
    """Map-style dataset of validation batches: item i holds windows [i B, (i+1) B) (the last may be short)."""

    def __init__(self, path: Path, dtype: str, n_windows: int, n_ctx: int, batch_size: int):
        self.memmap = _Memmap(path, dtype)
        self.n_windows, self.n_ctx, self.batch_size = n_windows, n_ctx, batch_size

    def __len__(self) -> int:
        return math.ceil(self.n_windows / self.batch_size)

    def __getitem__(self, i: int):
        if not 0 <= i < len(self):
            raise IndexError(i)
        windows = np.arange(i * self.batch_size, min((i + 1) * self.batch_size, self.n_windows))
        index = windows[:, None] * self.n_ctx + np.arange(self.n_ctx + 1)
        tokens = torch.from_numpy(self.memmap.tokens[index].astype(np.int64))
        return tokens[:, :-1], tokens[:, 1:]


# ---------------------------------------------------------------------------------------------------------

def _positive_int(value, field: str, example: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(field, f"must be a positive integer, got {value!r}", f"set e.g. {field}={example}")
    return int(value)


class TokenDataModule(L.LightningDataModule):
    """Token windows of a cached, tokenized corpus for one training run (see the module docstring)."""

    def __init__(self, source: dict, vocab_size: int = 4096, val_tokens: int = 250_000, tokenizer_file=None,
                 num_workers: int = 0, n_ctx: int = 256, batch_size: int = 32, tokens: int = 2_000_000,
                 seed: int = 0, cache_dir: str = ".cache/scalinglab", progress: bool = True):
        super().__init__()
        if not isinstance(source, dict):  # a DictConfig when instantiated without _convert_="all"
            from omegaconf import OmegaConf

            source = OmegaConf.to_container(source, resolve=True)
        check_source(source)
        self.source = dict(source)
        self.vocab_size = check_vocab_size(vocab_size)
        self.val_tokens = _positive_int(val_tokens, "data.val_tokens", "250000")
        self.n_ctx = _positive_int(n_ctx, "model.n_ctx", "256")
        self.batch_size = _positive_int(batch_size, "train.batch_size", "32")
        self.tokens = _positive_int(round(tokens) if isinstance(tokens, float) else tokens, "train.tokens", "2e6")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ConfigError("data.num_workers", f"must be an integer >= 0, got {num_workers!r}", "set e.g. 0 or 2")
        self.num_workers, self.seed, self.progress = num_workers, int(seed), progress
        if tokenizer_file is not None and not os.path.isfile(tokenizer_file):
            raise ConfigError("data.tokenizer_file", f"{tokenizer_file} does not exist",
                              "give an existing tokenizer.json, or null to train a BPE tokenizer")
        self.tokenizer_file = tokenizer_file
        self.cache_dir = Path(cache_dir)
        self.tokens_per_step = self.batch_size * self.n_ctx
        self.steps = max(1, round(self.tokens / self.tokens_per_step))
        self.tokens_total = self.steps * self.tokens_per_step
        self.manifest: dict | None = None

    # -- building / loading ---------------------------------------------------------------------------

    def prepare(self) -> dict:
        """Build or reuse the token cache, check n_ctx and batch_size against it; return the manifest."""
        if self.manifest is not None:
            return self.manifest
        start = time.perf_counter()
        key = cache_key(self.source, self.vocab_size, self.val_tokens, self.tokenizer_file)
        self.cache_path = self.cache_dir / "tokens" / key
        reused = (self.cache_path / "manifest.json").exists()
        if not reused:
            with _exclusive(self.cache_dir / "tokens" / f"{key}.lock"):
                remove_stale_builds(self.cache_path)
                if not (self.cache_path / "manifest.json").exists():
                    build_token_cache(self.source, self.vocab_size, self.val_tokens, self.tokenizer_file,
                                      self.cache_dir, self.cache_path, self.progress)
                else:
                    reused = True
        manifest = read_manifest(self.cache_path)
        self._load(manifest)
        manifest.update(seconds=round(time.perf_counter() - start, 3), reused=reused)
        self.manifest = manifest
        log.info("token cache %s: %s", "reused" if reused else "built", self.cache_path)
        return manifest

    def _load(self, manifest: dict) -> None:
        self.tokenizer_path = self.cache_path / "tokenizer.json"
        self._tokenizer = None
        try:
            token_bytes = np.load(self.cache_path / "token_bytes.npy")
        except (OSError, ValueError) as error:
            raise _corrupt(self.cache_path, "token_bytes.npy", f"cannot read it ({error})") from None
        n_val = manifest["tokens_val"]
        val_windows = min(self.val_tokens, n_val - 1) // self.n_ctx
        if val_windows < 1:
            raise ConfigError("model.n_ctx", f"is {self.n_ctx}, but validation evaluates only "
                              f"min(data.val_tokens={self.val_tokens}, validation split {n_val} - 1) tokens and one "
                              f"window needs n_ctx", "lower model.n_ctx or raise data.val_tokens")
        self.train_windows = TrainWindows(self.cache_path / "train.bin", manifest["dtype"], manifest["tokens_train"],
                                          self.n_ctx, self.batch_size, self.seed, 0, self.steps)
        if self.train_windows.n_windows < self.batch_size:
            raise ConfigError("train.batch_size", f"is {self.batch_size}, but the training split has only "
                              f"{self.train_windows.n_windows} windows of model.n_ctx+1={self.n_ctx + 1} tokens",
                              "lower train.batch_size or model.n_ctx, or give more text")
        self.val_windows = ValWindows(self.cache_path / "val.bin", manifest["dtype"], val_windows, self.n_ctx,
                                      self.batch_size)
        self.val_tokens_evaluated = val_windows * self.n_ctx
        val = np.memmap(self.cache_path / "val.bin", dtype=manifest["dtype"], mode="r")
        targets = val[1: 1 + self.val_tokens_evaluated]
        self.val_bytes_per_token = float(token_bytes[targets].sum()) / targets.size
        self.epochs = self.steps * self.batch_size / self.train_windows.n_windows
        if self.epochs > 1:
            message = (f"train.tokens={self.tokens_total} needs {self.epochs:.2f} epochs of the training split "
                       f"({self.train_windows.n_windows * self.n_ctx} tokens): data repeats")
            warnings.warn(message, stacklevel=3)
            log.warning(message)

    @property
    def tokenizer(self):
        """The HF tokenizers object of this cache (loaded on first use)."""
        self.prepare()
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.tokenizer_path, field=str(self.tokenizer_path),
                                             fix=f"delete {self.cache_path} and run again to rebuild it")
        return self._tokenizer

    # -- batches ----------------------------------------------------------------------------------------

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) of optimizer step `step`: int64 (batch_size, n_ctx), a pure function of (seed, step)."""
        self.prepare()
        return self.train_windows.batch(step)

    def prepare_data(self) -> None:
        self.prepare()

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _loader(self, dataset) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=self.num_workers,
                                           pin_memory=torch.cuda.is_available(),
                                           persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        """Batches of steps start, ..., steps - 1, start = trainer.global_step (0 without a trainer).

        The loader's length stays `steps` (the whole epoch) on a resume: Lightning restores its batch counter to
        `start` and stops at the loader's length, so the two line up; only iteration begins at `start`.
        """
        self.prepare()
        trainer = getattr(self, "trainer", None)
        start = int(trainer.global_step) if trainer is not None else 0
        windows = self.train_windows
        dataset = TrainWindows(Path(windows.memmap.path), windows.memmap.dtype, self.manifest["tokens_train"],
                               self.n_ctx, self.batch_size, self.seed, 0, self.steps)
        if trainer is not None and trainer.world_size > 1:
            if self.batch_size % trainer.world_size:
                raise ConfigError("train.batch_size", f"{self.batch_size} does not split over "
                                  f"{trainer.world_size} processes", "use a multiple of the number of devices")
            dataset.rank, dataset.world_size = trainer.global_rank, trainer.world_size
        return torch.utils.data.DataLoader(dataset, batch_size=None, sampler=ResumeSampler(start, self.steps),
                                           num_workers=self.num_workers, pin_memory=torch.cuda.is_available(),
                                           persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        """Fixed validation windows in fixed order (see the module docstring)."""
        self.prepare()
        return self._loader(self.val_windows)


# ---------------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """`python -m scalinglab.data prepare [Hydra overrides]`: build or reuse the cache, print its manifest."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "prepare":
        print("usage: python -m scalinglab.data prepare [Hydra overrides, e.g. data=text_files data.vocab_size=512]",
              file=sys.stderr)
        return 2
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    config_dir = Path(os.environ.get("SCALINGLAB_CONFIG_DIR", PROJECT_ROOT / "configs")).resolve()
    from scalinglab.validate import hydra_error

    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose("config", overrides=argv[1:])
        dm = instantiate(cfg.data, n_ctx=cfg.model.n_ctx, batch_size=cfg.train.batch_size, tokens=cfg.train.tokens,
                         seed=cfg.train.seed, cache_dir=cfg.paths.cache, _convert_="all")
        manifest = dm.prepare()
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # Hydra's composition errors; instantiate wraps a ConfigError raised in __init__
        cause = error.__cause__ if isinstance(error.__cause__, ConfigError) else hydra_error(error)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        return 2
    print(json.dumps({**manifest, "steps": dm.steps, "epochs": round(dm.epochs, 4)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
