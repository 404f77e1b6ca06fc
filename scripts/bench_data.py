"""Benchmark of the data pipeline on the builtin corpus (a benchmark, not a test).

    python scripts/bench_data.py [--cache DIR] [--vocab-size 4096] [--threads 2]

Prints MB/s of BPE training and of encoding, the time to build the builtin token cache (archives already
downloaded) and to reuse it, and the cost of one training batch. Targets (issue 3): build < 60 s on 2 cores,
reuse < 1 s, batch time far below a training step (< 5% of it).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=os.environ.get("SCALINGLAB_CACHE", ".cache/scalinglab"),
                        help="cache whose downloads/ holds (or receives) the builtin archives")
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2, help="threads for HF tokenizers (RAYON_NUM_THREADS)")
    args = parser.parse_args()
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)  # read by tokenizers' thread pool at first use

    import numpy as np

    from scalinglab.corpus import builtin_documents
    from scalinglab.config import TrainConfig
    from scalinglab.data import TokenDataModule
    from scalinglab.tokenizer import encode_documents, train_bpe

    downloads = Path(args.cache) / "downloads"
    start = time.perf_counter()
    texts = [text for _, text in builtin_documents(downloads)]
    read_seconds = time.perf_counter() - start
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    print(f"corpus: {len(texts)} documents, {megabytes:.2f} MB, fetched/verified/extracted in {read_seconds:.2f} s")

    start = time.perf_counter()
    tokenizer = train_bpe(texts, args.vocab_size, length=len(texts))
    train_seconds = time.perf_counter() - start
    print(f"BPE training (vocab {args.vocab_size}, {args.threads} threads): {train_seconds:.2f} s, "
          f"{megabytes / train_seconds:.2f} MB/s")
    start = time.perf_counter()
    ids = encode_documents(tokenizer, texts, 0, np.dtype(np.uint16))
    encode_seconds = time.perf_counter() - start
    print(f"encoding: {ids.size} tokens in {encode_seconds:.2f} s, {megabytes / encode_seconds:.2f} MB/s, "
          f"{megabytes * 1e6 / ids.size:.3f} bytes/token")

    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch)
        shutil.copytree(downloads, cache / "downloads")
        settings = dict(source={"kind": "builtin"}, vocab_size=args.vocab_size, val_tokens=250_000, n_ctx=256,
                        train=TrainConfig(batch_size=32, tokens=2_000_000, seed=0), cache_dir=str(cache),
                        progress=False)
        start = time.perf_counter()
        manifest = TokenDataModule(**settings).prepare()
        build_seconds = time.perf_counter() - start
        print(f"build builtin cache: {build_seconds:.2f} s")
        start = time.perf_counter()
        dm = TokenDataModule(**settings)
        dm.prepare()
        reuse_seconds = time.perf_counter() - start
        print(f"reuse builtin cache (prepare() in a running process): {reuse_seconds * 1e3:.1f} ms")
        command = [sys.executable, "-m", "scalinglab.data", "prepare", f"paths.cache={cache}",
                   f"data.vocab_size={args.vocab_size}"]
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        print(f"reuse via `python -m scalinglab.data prepare` (whole process, imports included): "
              f"{time.perf_counter() - start:.2f} s")

        dm.batch(0)
        start = time.perf_counter()
        for step in range(200):
            dm.batch(step)
        batch_ms = (time.perf_counter() - start) / 200 * 1e3
        print(f"batch(step) at batch 32 x n_ctx 256: {batch_ms:.3f} ms")
        start = time.perf_counter()
        for i, _ in enumerate(dm.train_dataloader()):
            if i == 199:
                break
        loader_ms = (time.perf_counter() - start) / 200 * 1e3
        print(f"train_dataloader (num_workers=0) per batch: {loader_ms:.3f} ms")
    keys = ("tokens_train", "tokens_val", "bytes_train", "bytes_val", "documents", "documents_train", "documents_val",
            "vocab_size")
    print(json.dumps({**{k: manifest[k] for k in keys}, "build_seconds": round(build_seconds, 2),
                      "reuse_ms": round(reuse_seconds * 1e3, 1), "train_mb_per_s": round(megabytes / train_seconds, 2),
                      "encode_mb_per_s": round(megabytes / encode_seconds, 2), "batch_ms": round(batch_ms, 3),
                      "loader_ms": round(loader_ms, 3)}))


if __name__ == "__main__":
    main()
