"""data=hf with streaming=true: documents stream from local parquet/jsonl files (datasets' IterableDataset) into
the token cache until the budget is filled; the full table is never materialized. Nothing touches the hub."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from scalinglab.config import TrainConfig  # noqa: E402
from scalinglab.corpus import check_source  # noqa: E402
from scalinglab.data import TokenDataModule  # noqa: E402
from scalinglab.errors import ConfigError  # noqa: E402
from scalinglab.resources import SAMPLE_CORPUS  # noqa: E402
from scalinglab.token_stream import STREAM_BATCH_ROWS, stream_budget  # noqa: E402
from scalinglab.tokenizer import encode_documents, load_tokenizer  # noqa: E402

SAMPLE = 30_000  # bytes of text the tests' tokenizers train on (data.source.tokenizer_bytes)
# The committed slice cut into paragraphs: ~1900 documents, ~415 kB
TEXTS = [p for f in sorted(SAMPLE_CORPUS.glob("*.txt")) for p in re.split(r"\n\s*\n", f.read_text()) if p.strip()]


def make(cache_dir, source, tokens=4096, **overrides) -> TokenDataModule:
    settings = dict(source=source, vocab_size=400, val_tokens=2000, n_ctx=32, cache_dir=str(cache_dir),
                    progress=False)
    settings.update(overrides)
    return TokenDataModule(**settings, train=TrainConfig(batch_size=4, tokens=tokens, seed=0))


@pytest.fixture(scope="module")
def parquet(tmp_path_factory):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path_factory.mktemp("stream") / "docs.parquet"
    pq.write_table(pa.table({"text": TEXTS, "n": list(range(len(TEXTS)))}), path, row_group_size=100)
    return path


@pytest.fixture
def watched(monkeypatch):
    """Records how datasets is used: the builders asked for and what they streamed, rows pulled from any
    IterableDataset; creating an in-memory/Arrow datasets.Dataset (materializing a table) fails the test."""
    import datasets

    seen = {"calls": [], "rows": 0}
    real_builder, real_iter = datasets.load_dataset_builder, datasets.IterableDataset.__iter__

    def load(*args, **kwargs):
        builder = real_builder(*args, **kwargs)
        real_stream = builder.as_streaming_dataset

        def stream(*a, **k):
            result = real_stream(*a, **k)
            seen["calls"].append((kwargs, builder.config, type(result)))
            return result

        builder.as_streaming_dataset = stream
        return builder

    def rows(self):
        for row in real_iter(self):
            seen["rows"] += 1
            yield row

    def no_table(self, *args, **kwargs):
        raise AssertionError("a datasets.Dataset (the whole table) was materialized")

    monkeypatch.setattr(datasets, "load_dataset_builder", load)
    monkeypatch.setattr(datasets.IterableDataset, "__iter__", rows)
    monkeypatch.setattr(datasets.Dataset, "__init__", no_table)
    return seen


def _split(dm, name):
    return np.fromfile(dm.cache_path / f"{name}.bin", dtype=dm.manifest["dtype"])


def test_streamed_cache_is_the_streams_first_documents_up_to_the_budget(tmp_path, parquet, watched):
    import datasets

    target = 20_000
    source = {"kind": "hf", "name": "parquet", "data_files": str(parquet), "text_column": "text", "streaming": True,
              "stream_tokens": target, "tokenizer_bytes": SAMPLE}
    dm = make(tmp_path, source)
    manifest = dm.prepare()
    # the code path: one streamed builder, an IterableDataset read in small batches, only a prefix of its rows
    assert len(watched["calls"]) == 1
    kwargs, config, kind = watched["calls"][0]
    assert kwargs["data_files"] == str(parquet) and issubclass(kind, datasets.IterableDataset)
    assert config.batch_size == STREAM_BATCH_ROWS  # not a whole row group per batch (the reader's memory)
    assert manifest["documents"] <= watched["rows"] < len(TEXTS) // 4
    # the splits are the stream's documents in order: validation first, then training up to the budget
    tokenizer = load_tokenizer(dm.cache_path / "tokenizer.json")
    n_val, n_train = manifest["documents_val"], manifest["documents_train"]
    eot, dtype = manifest["eot_id"], np.dtype(manifest["dtype"])
    assert np.array_equal(_split(dm, "val"), encode_documents(tokenizer, TEXTS[:n_val], eot, dtype))
    train = _split(dm, "train")
    assert np.array_equal(train, encode_documents(tokenizer, TEXTS[n_val:n_val + n_train], eot, dtype))
    one_fewer = encode_documents(tokenizer, TEXTS[n_val:n_val + n_train - 1], eot, dtype).size
    assert one_fewer < target <= train.size == manifest["tokens_train"]  # stops at the document reaching it
    whole = encode_documents(tokenizer, TEXTS[n_val:], eot, dtype).size
    assert train.size < whole / 4  # far fewer tokens than the file holds
    assert manifest["tokens_val"] >= 2000 and manifest["streamed"]["stream_tokens"] == target
    assert not manifest["streamed"]["ended"]


def test_streamed_jsonl_and_the_default_budget_of_one_epoch(tmp_path, watched):
    import datasets

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"body": t}) + "\n" for t in TEXTS), encoding="utf-8")
    source = {"kind": "hf", "name": "json", "data_files": str(path), "text_column": "body", "streaming": True,
              "tokenizer_bytes": SAMPLE}
    dm = make(tmp_path / "cache", source, tokens=8192)
    assert dm.source["stream_tokens"] == stream_budget(dm.tokens_total, 32) == 8192 // 32 * 33
    manifest = dm.prepare()
    assert dm.source["stream_tokens"] <= manifest["tokens_train"] and dm.epochs <= 1  # no data repeats
    assert watched["rows"] < len(TEXTS) // 4 and issubclass(watched["calls"][0][2], datasets.IterableDataset)
    # the same settings reuse the cache; a larger budget is another cache with the same tokenizer
    assert make(tmp_path / "cache", source, tokens=8192).prepare()["reused"]
    bigger = make(tmp_path / "cache", source, tokens=16384)
    assert bigger.cache_path != dm.cache_path and not bigger.prepare()["reused"]
    assert bigger.manifest["tokens_train"] > manifest["tokens_train"]
    assert len(list((tmp_path / "cache" / "tokenizers").glob("*.json"))) == 1
    assert np.array_equal(_split(bigger, "val"), _split(dm, "val"))
    prefix = _split(dm, "train")
    assert np.array_equal(_split(bigger, "train")[:prefix.size], prefix)  # the smaller cache is its prefix


def test_a_stream_shorter_than_the_budget_keeps_what_there_is(tmp_path, parquet):
    source = {"kind": "hf", "name": "parquet", "data_files": str(parquet), "text_column": "text", "streaming": True,
              "stream_tokens": 10**9, "max_documents": 60, "tokenizer_bytes": SAMPLE}
    manifest = make(tmp_path, source).prepare()
    assert manifest["documents"] == 60 and manifest["streamed"]["ended"] and manifest["tokens_train"] < 10**9


@pytest.mark.parametrize("source, field", [
    ({"kind": "text_files", "paths": ["a.txt"], "streaming": True}, "data.source.streaming"),
    ({"kind": "hf", "name": "parquet", "streaming": "yes"}, "data.source.streaming"),
    ({"kind": "hf", "name": "parquet", "streaming": True, "stream_tokens": 0}, "data.source.stream_tokens"),
    ({"kind": "hf", "name": "parquet", "streaming": True, "stream_tokens": 2.5}, "data.source.stream_tokens"),
    ({"kind": "hf", "name": "parquet", "streaming": True, "tokenizer_bytes": -1}, "data.source.tokenizer_bytes"),
])
def test_streaming_settings_are_checked_before_anything_is_read(source, field):
    with pytest.raises(ConfigError) as error:
        check_source(source)
    assert error.value.field == field


def test_a_missing_text_column_of_a_stream_names_the_setting(tmp_path, parquet):
    source = {"kind": "hf", "name": "parquet", "data_files": str(parquet), "text_column": "story", "streaming": True}
    with pytest.raises(ConfigError, match="no column 'story'") as error:
        make(tmp_path, source).prepare()
    assert error.value.field == "data.source.text_column"


def test_a_build_outside_a_terminal_prints_no_empty_progress_lines(tmp_path, parquet, capfd):
    source = {"kind": "hf", "name": "parquet", "data_files": str(parquet), "text_column": "text", "streaming": True,
              "tokenizer_bytes": SAMPLE}
    make(tmp_path, source, progress=True).prepare()  # stdout and stderr are captured here: not a terminal
    captured = capfd.readouterr()
    for text in (captured.out, captured.err):  # tokenizers' BPE bars wrote one empty line per stage to stdout
        assert "\n\n" not in "\n" + text, repr(text[:200])
