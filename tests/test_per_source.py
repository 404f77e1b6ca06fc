"""Validation loss per source (Kaplan et al. 2020, section 3.2.2) and data.holdout_source: a source never trained on.

The corpus: the committed sample documents as .jsonl rows with a `source` column (speeches, plays, bible), one row
per paragraph block, so each source has many documents and the split takes whole documents of each.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import torch
from hydra import compose, initialize_config_dir

from scalinglab.build import build_datamodule
from scalinglab.errors import ConfigError
from scalinglab.runs import run_id, run_identity
from scalinglab.stacked import train_group
from scalinglab.train import CONFIG_DIR, run

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "scalinglab" / "sample_corpus"
SOURCES = {"sotu": "speeches", "shakespeare": "plays", "bible": "bible"}
TINY = ["model=nano", "model.n_ctx=64", "train.batch_size=8", "trainer.progress_bar=false", "train.threads=1",
        "data=text_files", "data.vocab_size=512", "data.val_tokens=8000", "data.source.source_column=source"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """One .jsonl file: every sample document cut into ~2 KB rows, each with its source."""
    folder = tmp_path_factory.mktemp("sourced")
    rows = []
    for path in sorted(SAMPLE.glob("*.txt")):
        text = path.read_text()
        for start in range(0, len(text), 2000):
            rows.append({"text": text[start:start + 2000], "source": SOURCES[path.name.split("-")[0]]})
    file = folder / "corpus.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return file


def config(root: Path, corpus: Path, *overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=[*TINY, f"data.source.paths=[{corpus}]", f"paths.runs={root / 'runs'}",
                                            f"paths.cache={root.parent / 'cache'}", *overrides])


def metrics(root: Path, summary: dict, sweep: str = "single") -> pd.DataFrame:
    return pd.read_parquet(root / "runs" / sweep / summary["run_id"] / "metrics.parquet")


def test_per_source_losses_sum_token_weighted_to_the_whole_split(tmp_path, corpus):
    cfg = config(tmp_path, corpus, "train.tokens=15360", "train.eval_points=4")
    summary = run(cfg)
    dm = build_datamodule(cfg, progress=False)
    dm.prepare()
    assert dm.val_sources == ["bible", "plays", "speeches"] and set(dm.val_source_tokens) == set(dm.val_sources)
    assert sum(dm.val_source_tokens.values()) == dm.val_tokens_evaluated
    # Each source's evaluated tokens are its share of val_tokens by the corpus's bytes (to a window).
    shares = dm.manifest["bytes_by_source"]
    for name, tokens in dm.val_source_tokens.items():
        assert abs(tokens - 8000 * shares[name] / sum(shares.values())) < 64, (name, tokens)
    rows = metrics(tmp_path, summary)
    columns = [c for c in rows.columns if c.startswith("val_loss/")]
    assert columns == ["val_loss/bible", "val_loss/plays", "val_loss/speeches"]
    weights = np.array([dm.val_source_tokens[c.split("/", 1)[1]] for c in columns], dtype=float)
    # val_loss is the model's own mean loss over the windows; the per-source losses come from per-token losses.
    recombined = rows[columns].to_numpy() @ weights / weights.sum()
    np.testing.assert_allclose(recombined, rows["val_loss"].to_numpy(), rtol=1e-5)
    assert not np.allclose(rows["val_loss/bible"], rows["val_loss/plays"])  # the sources do differ
    assert summary["holdout_source"] is None
    assert summary["val_loss/plays"] == rows["val_loss/plays"].iloc[-1]
    # Without a source column: no per-source columns, and the plain run id is the one it always had.
    plain = config(tmp_path, corpus, "data.source.source_column=null")
    assert "source_column" not in run_identity(plain)["data"]["source"]
    assert "holdout_source" not in run_identity(plain)["data"]


def test_a_held_out_source_is_never_trained_on_and_is_validated_apart(tmp_path, corpus):
    cfg = config(tmp_path, corpus, "data.holdout_source=bible", "train.tokens=15360", "train.eval_points=4")
    plain = config(tmp_path, corpus, "train.tokens=15360", "train.eval_points=4")
    assert run_id(run_identity(cfg)) != run_id(run_identity(plain))
    dm = build_datamodule(cfg, progress=False)
    manifest = dm.prepare()
    assert dm.cache_path != build_datamodule(plain, progress=False).cache_path  # its own token cache
    assert manifest["holdout_source"] == "bible" and "bible" not in manifest["documents_by_source"]["train"]
    assert manifest["documents_by_source"]["val"]["bible"] == sum(
        1 for line in corpus.read_text().splitlines() if json.loads(line)["source"] == "bible")
    # No training token is from the held-out source: decode the training split and look for every bible row.
    train_text = dm.tokenizer.decode(np.fromfile(dm.cache_path / "train.bin", dtype=manifest["dtype"]).tolist(),
                                     skip_special_tokens=False)
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    assert not [r for r in rows if r["source"] == "bible" and r["text"].strip()[:200] in train_text]
    assert sum(r["text"].strip()[:200] in train_text for r in rows if r["source"] != "bible") > 50  # the check sees
    # The ordinary validation windows never reach the held-out part of val.bin; the held-out windows are all of it.
    seen = set(torch.cat([s.reshape(-1) for _, _, s in dm.val_dataloader()]).tolist())
    assert seen == {dm.val_sources.index("plays"), dm.val_sources.index("speeches")}
    held = torch.cat([x.reshape(-1) for x, _ in dm.holdout_dataloader()])
    n_val = manifest["tokens_val"] - manifest["tokens_val_holdout"]
    assert torch.equal(held[:64], torch.from_numpy(np.fromfile(dm.cache_path / "val.bin", dtype=manifest["dtype"])[
        n_val: n_val + 64].astype(np.int64)))  # from the start of the held-out block
    summary = run(cfg)
    rows = metrics(tmp_path, summary)
    assert [c for c in rows.columns if c.startswith("val_loss/")] == ["val_loss/bible", "val_loss/plays",
                                                                      "val_loss/speeches"]
    weights = np.array([dm.val_source_tokens[s] for s in ("plays", "speeches")], dtype=float)
    recombined = rows[["val_loss/plays", "val_loss/speeches"]].to_numpy() @ weights / weights.sum()
    np.testing.assert_allclose(recombined, rows["val_loss"].to_numpy(), rtol=1e-5)  # val_loss: trained sources
    assert summary["holdout_source"] == "bible"
    # Runs with different per-source columns read as one dataset (float64 everywhere) with a unified schema.
    files = sorted((tmp_path / "runs").rglob("metrics.parquet"))
    first = run(config(tmp_path / "other", corpus, "train.tokens=5120", "train.eval_points=2",
                       "data.source.source_column=null"))
    files.append(tmp_path / "other" / "runs" / "single" / first["run_id"] / "metrics.parquet")
    schema = pa.unify_schemas([ds.dataset(f).schema for f in files])
    table = ds.dataset(files, schema=schema).to_table()
    assert schema.field("val_loss/bible").type == pa.float64() and table["val_loss/bible"].null_count > 0


@pytest.mark.parametrize("override, field, says", [
    ("data.holdout_source=wikipedia", "data.holdout_source", "bible, plays, speeches"),
    ("data.holdout_source=7", "data.holdout_source", "source name"),
])
def test_an_unknown_held_out_source_is_refused_naming_the_known_ones(tmp_path, corpus, override, field, says):
    with pytest.raises(ConfigError, match=field) as error:
        build_datamodule(config(tmp_path, corpus, override), progress=False).prepare()
    assert says in str(error.value)


def test_builtin_and_sourceless_corpora_check_the_held_out_source_before_reading_text(tmp_path, corpus):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        builtin = compose("config", overrides=[f"paths.cache={tmp_path / 'cache'}", "data.holdout_source=encyclopedia"])
    with pytest.raises(ConfigError, match="sotu, shakespeare, bible, wikipedia"):
        build_datamodule(builtin)
    assert not (tmp_path / "cache").exists()  # refused before anything was read or downloaded
    with pytest.raises(ConfigError, match="carry no source"):
        build_datamodule(config(tmp_path, corpus, "data.source.source_column=null", "data.holdout_source=bible"))


def test_stacked_members_record_the_per_source_losses_of_the_runs_alone(tmp_path, corpus):
    common = ["train.tokens=10240", "train.eval_points=3"]
    cfgs = [config(tmp_path / "stacked", corpus, *common, f"train.seed={seed}") for seed in (0, 1)]
    stacked = train_group(cfgs)
    alone = [run(config(tmp_path / "alone", corpus, *common, f"train.seed={seed}")) for seed in (0, 1)]
    for a, b in zip(alone, stacked):
        ma, mb = metrics(tmp_path / "alone", a), metrics(tmp_path / "stacked", b)
        assert list(ma.columns) == list(mb.columns) and "val_loss/speeches" in ma
        per_source = [c for c in ma.columns if c.startswith("val_loss")]
        assert (ma[per_source] - mb[per_source]).abs().max().max() <= 1e-4
