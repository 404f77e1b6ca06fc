"""Streamed token caches (`data.source.streaming: true`): a large dataset read document by document into the
token cache, only as far as the run needs, never held in memory.

The cache has the layout, checks and key of token_cache.py; only the build differs. Documents come from an
IterableDataset (corpus.hf_documents -> `streaming_dataset`, what `load_dataset(..., streaming=True)` gives, and
`streamed_texts`), in the dataset's order:

1. the first documents are the validation split: whole documents until `val_tokens` tokens are held out (chosen
   by a guess of bytes per token, then more documents if they encode to fewer; as in token_cache.py);
2. unless `data.tokenizer_file` is given, a byte-level BPE is trained on the documents that follow, up to
   `tokenizer_bytes` of text (source key; default TOKENIZER_SAMPLE_BYTES): the start of the training split. It
   does not depend on the budget, so every run of a sweep (one cache per budget) gets the same tokenizer and
   validation split, and a smaller budget's training split is a prefix of a larger one's;
3. the training split is those documents and the next ones, encoded chunk by chunk straight into train.bin,
   up to and including the document that reaches `stream_tokens` tokens; then the stream is closed.

`stream_tokens` and `tokenizer_bytes` are source keys (part of the cache key); stream_tokens defaults to
`stream_budget(train tokens, n_ctx)`: what one run consumes without repeating data. In memory at once: the validation documents, the tokenizer's sample and one
encode chunk (at most ENCODE_CHUNK_BYTES of text), whatever the dataset's size. A stream that ends before
`stream_tokens` gives a smaller cache (the run then repeats data, and says so).
"""
from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from scalinglab.config import PROJECT_ROOT
from scalinglab.corpus import iter_documents, row_text, source_fingerprint
from scalinglab.errors import ConfigError
from scalinglab.token_cache import (ENCODE_CHUNK_BYTES, MAX_SPLIT_ATTEMPTS, _hash, _progress, _train_or_load_tokenizer,
                                    new_build_dir, publish, token_dtype)
from scalinglab.tokenizer import encode_documents, end_of_text_id, token_byte_lengths

log = logging.getLogger(__name__)

STREAM_BATCH_ROWS = 1000  # rows per Arrow batch when streaming parquet (default: a whole row group)


def streaming_dataset(name, config, split, data_files, revision, hf_cache_dir):
    """What `load_dataset(..., streaming=True)` gives (builder.as_streaming_dataset), with parquet read in batches
    of STREAM_BATCH_ROWS rows: with its default (one batch per row group) the reader was measured holding
    hundreds of MB ahead of the rows read, growing with the file; in small batches it stays near 40 MB."""
    import datasets

    builder = datasets.load_dataset_builder(name, config, data_files=data_files, revision=revision,
                                            cache_dir=None if hf_cache_dir is None else str(hf_cache_dir))
    if hasattr(builder.config, "batch_size") and builder.config.batch_size is None:
        builder.config.batch_size = STREAM_BATCH_ROWS
    return builder.as_streaming_dataset(split=split)


def streamed_texts(dataset, name: str, column: str, max_documents: int | None) -> Iterator[tuple[str, str]]:
    """(doc_id, text) of an IterableDataset's rows, pulled one at a time; the row iterator is closed on exit."""
    columns = dataset.column_names  # None when the features are only known once rows are read
    if columns is not None and column not in columns:
        raise ConfigError("data.source.text_column", f"dataset {name!r} has no column {column!r} (its columns: "
                          f"{columns})", f"set data.source.text_column to one of {columns}")
    if max_documents is not None:
        dataset = dataset.take(int(max_documents))
    rows = iter(dataset)
    try:
        for row_number, row in enumerate(rows):
            if column not in row:
                raise ConfigError("data.source.text_column", f"row {row_number} of dataset {name!r} has no column "
                                  f"{column!r} (its columns: {list(row)})", "set data.source.text_column to one of "
                                  f"{list(row)}")
            text = row[column]
            yield f"{name}#{row_number}", row_text(text, f"dataset {name!r}", row_number, column, "data.source.name")
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


TOKENIZER_SAMPLE_BYTES = 64 << 20  # text the BPE of a streamed cache is trained on, at most (~17 s at 3.9 MB/s)
MIN_CHUNK_BYTES = 64 << 10  # smallest encode chunk near the end of the budget


def stream_budget(tokens_total: int, n_ctx: int) -> int:
    """Training tokens a streamed cache needs for a run that consumes `tokens_total` tokens in one epoch:
    ceil(tokens_total / n_ctx) windows of n_ctx + 1 tokens (runs.train_windows cuts the split into those)."""
    return -(-int(tokens_total) // int(n_ctx)) * (int(n_ctx) + 1)


class _Stream:
    """Documents pulled from an iterator on demand; `buffer` holds those read and not yet written."""

    def __init__(self, documents: Iterator[tuple[str, str]]):
        self.documents, self.buffer, self.read, self.exhausted = documents, [], 0, False

    def fill(self, n_bytes: int) -> None:
        """Read non-empty documents until the buffer holds at least `n_bytes` of text (or the stream ends)."""
        held = sum(b for _, _, b in self.buffer)
        while held < n_bytes and not self.exhausted:
            try:
                doc_id, text = next(self.documents)
            except StopIteration:
                self.exhausted = True
                break
            self.read += 1
            if text and text.strip():
                size = len(text.encode("utf-8"))
                self.buffer.append((doc_id, text, size))
                held += size

    def take(self, n_bytes: int) -> list[tuple[str, str, int]]:
        """Remove and return buffered documents (reading more as needed) until they hold >= n_bytes (or the end)."""
        self.fill(n_bytes)
        out, held = [], 0
        while self.buffer and held < n_bytes:
            out.append(self.buffer.pop(0))
            held += out[-1][2]
        return out

    def close(self) -> None:
        close = getattr(self.documents, "close", None)
        if close is not None:
            close()


def _leading(buffer: list, n_bytes: int) -> int:
    """How many leading documents of `buffer` hold n_bytes (at least 1, and never the last one)."""
    held, n = 0, 0
    for _, _, size in buffer[:-1]:
        if held >= n_bytes and n:
            break
        held, n = held + size, n + 1
    return n


def _split_and_tokenizer(stream: _Stream, source: dict, vocab_size: int, val_tokens: int, tokenizer_file,
                         cache_dir: Path, progress: bool):
    """Steps 1-2 of the module docstring: (number of validation documents, their ids, tokenizer, split key)."""
    guess = 4.0 if vocab_size <= 8192 else 4.8
    sample_bytes = 0 if tokenizer_file is not None else int(source.get("tokenizer_bytes") or TOKENIZER_SAMPLE_BYTES)
    base = source_fingerprint({**source, "stream_tokens": None}, PROJECT_ROOT)  # one tokenizer for every budget
    for _ in range(MAX_SPLIT_ATTEMPTS):
        val_bytes = int(val_tokens * guess)
        stream.fill(val_bytes + max(sample_bytes, 1))
        if len(stream.buffer) < 2:
            raise ConfigError("data.source", f"the streamed dataset {source.get('name')!r} holds "
                              f"{len(stream.buffer)} non-empty document(s); the validation split is made of whole "
                              "documents", "give a dataset with at least 2 documents that contain text")
        n_val = _leading(stream.buffer, val_bytes)
        sample, held = [], 0
        for _, text, size in stream.buffer[n_val:]:
            if held >= sample_bytes:
                break
            sample.append(text)
            held += size
        split_key = _hash([base, [d for d, _, _ in stream.buffer[:n_val]], sample_bytes, "streamed-v1"])
        tokenizer = _train_or_load_tokenizer(sample, vocab_size, tokenizer_file, cache_dir, split_key, progress)
        val_ids = encode_documents(tokenizer, [t for _, t, _ in stream.buffer[:n_val]], end_of_text_id(tokenizer),
                                   token_dtype(vocab_size))
        if val_ids.size >= val_tokens:
            return n_val, val_ids, tokenizer, split_key
        if stream.exhausted and n_val == len(stream.buffer) - 1:
            raise ConfigError("data.val_tokens", f"is {val_tokens}, but all documents of the stream but one hold "
                              f"only {val_ids.size} tokens", "lower data.val_tokens (or stream more text)")
        guess *= 1.1 * val_tokens / max(val_ids.size, 1)
    raise ConfigError("data.val_tokens", f"could not hold out {val_tokens} tokens in {MAX_SPLIT_ATTEMPTS} tries",
                      "lower data.val_tokens")


def build_streamed_cache(source: dict, vocab_size: int, val_tokens: int, tokenizer_file, cache_dir: Path,
                         final_dir: Path, progress: bool = True) -> dict:
    """Build the token cache of a streamed source at `final_dir` (module docstring); return its manifest.

    Called by token_cache.build_token_cache (under the cache's lock) when source["streaming"] is true;
    source["stream_tokens"] is the training split's size in tokens (TokenDataModule fills it in).
    """
    start = time.perf_counter()
    target = int(source["stream_tokens"])
    dtype = token_dtype(vocab_size)
    stream = _Stream(iter_documents(source, cache_dir, PROJECT_ROOT))
    tmp_dir = None
    try:
        n_val, val_ids, tokenizer, split_key = _split_and_tokenizer(stream, source, vocab_size, val_tokens,
                                                                    tokenizer_file, cache_dir, progress)
        if tokenizer.get_vocab_size() > vocab_size:
            size = tokenizer.get_vocab_size()
            raise ConfigError("data.vocab_size", f"is {vocab_size} but the tokenizer {tokenizer_file} has {size} "
                              "tokens", f"set data.vocab_size={size}")
        eot = end_of_text_id(tokenizer)
        val_docs = [stream.buffer.pop(0) for _ in range(n_val)]
        tmp_dir = new_build_dir(final_dir)
        val_ids.tofile(tmp_dir / "val.bin")
        written, docs_train, bytes_train, bytes_per_token = 0, 0, 0, 4.0
        with open(tmp_dir / "train.bin", "wb") as f, _progress(target, "tokenizing (streamed)", progress) as bar:
            while written < target:
                want = int((target - written) * bytes_per_token * 1.05)
                chunk = stream.take(min(max(want, MIN_CHUNK_BYTES), ENCODE_CHUNK_BYTES))
                if not chunk:
                    break
                ids, lengths = encode_documents(tokenizer, [t for _, t, _ in chunk], eot, dtype, lengths=True)
                bytes_per_token = sum(b for _, _, b in chunk) / max(ids.size, 1)
                ends = np.cumsum(lengths)
                keep = int(np.searchsorted(ends, target - written)) + 1  # documents up to the one reaching target
                keep = min(keep, len(chunk))
                ids[: ends[keep - 1]].tofile(f)
                written += int(ends[keep - 1])
                docs_train += keep
                bytes_train += sum(b for _, _, b in chunk[:keep])
                bar.update(int(ends[keep - 1]))
        if written < target:
            log.warning("the streamed dataset ended after %d training tokens, fewer than data.source.stream_tokens=%d",
                        written, target)
        manifest = {
            "tokens_train": written, "tokens_val": int(val_ids.size), "bytes_train": int(bytes_train),
            "bytes_val": int(sum(b for _, _, b in val_docs)), "documents": n_val + docs_train,
            "documents_train": docs_train, "documents_val": n_val, "vocab_size": int(vocab_size),
            "tokenizer_vocab_size": int(tokenizer.get_vocab_size()), "val_tokens_requested": int(val_tokens),
            "dtype": dtype.name, "eot_id": int(eot), "source": source,
            "corpus_fingerprint": source_fingerprint(source, PROJECT_ROOT), "split_key": split_key,
            "streamed": {"stream_tokens": target, "documents_read": stream.read, "ended": stream.exhausted},
            "build_seconds": round(time.perf_counter() - start, 3),
        }
        tokenizer.save(str(tmp_dir / "tokenizer.json"))
        np.save(tmp_dir / "token_bytes.npy", token_byte_lengths(tokenizer))
        return publish(tmp_dir, final_dir, manifest)
    except BaseException:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    finally:
        stream.close()
