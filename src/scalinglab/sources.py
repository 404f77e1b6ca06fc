"""Document sources: which source each document comes from, per-source validation and a held-out source.

A corpus has sources when its documents carry a source name (`has_sources`): the builtin corpus always (`sotu`,
`shakespeare`, `bible`, `wikipedia`: corpus.BUILTIN_SOURCES), a table with `data.source.source_column`. The name is
the document id up to the first '/' (`document_source`; corpus.py prefixes a table row's id with its source,
`sourced`). token_cache.py uses the rest: the validation split made and laid out per source
(`group_by_source`, `val_blocks`), the source of every validation token (`encode_sourced` -> val_source.bin), and the check
of `data.holdout_source` against the corpus's sources (`check_holdout`). docs/DATA.md, "Sources and per-source
loss".
"""
from __future__ import annotations

import hashlib

import numpy as np

from scalinglab.errors import ConfigError


def sourced(doc_id: str, source: str | None) -> str:
    """The doc id of a row with a source: `<source>/<doc_id>`, so `document_source` reads it as the builtin's."""
    return doc_id if source is None else f"{source}/{doc_id}"


def has_sources(source: dict) -> bool:
    """Whether the documents of `source` carry a source name: builtin always, a table with source_column."""
    return source.get("kind") == "builtin" or bool(source.get("source_column"))


def document_source(doc_id: str) -> str:
    """The source of a document of a corpus that has sources: its doc id up to the first '/' (`bible/08-Ruth`)."""
    return doc_id.split("/", 1)[0]


def check_holdout(holdout_source, names: list[str], source: dict) -> None:
    """Refuse a data.holdout_source that is not one of the corpus's source `names` (or a corpus without sources)."""
    if holdout_source is None:
        return
    if not names:
        raise ConfigError("data.holdout_source", f"is {holdout_source!r}, but the documents of data.source.kind="
                          f"{source.get('kind')} carry no source", "set data.source.source_column to the column that "
                          "holds each document's source, or data.holdout_source=null")
    if holdout_source not in names:
        raise ConfigError("data.holdout_source", f"unknown source {holdout_source!r}; the corpus's sources are "
                          f"{', '.join(names)}", f"use one of {', '.join(names)}, or null")
    if len(names) < 2:
        raise ConfigError("data.holdout_source", f"{holdout_source!r} is the corpus's only source, so nothing is "
                          "left to train on", "set data.holdout_source=null")


def group_by_source(docs: list[int], ids: list[str], doc_sources: list[str]) -> dict[str, list[int]]:
    """{source: its documents among `docs` in sha256(doc_id) order}, sources sorted by name."""
    groups: dict[str, list[int]] = {}
    for i in sorted(docs, key=lambda i: hashlib.sha256(ids[i].encode()).digest()):
        groups.setdefault(doc_sources[i], []).append(i)
    return dict(sorted(groups.items()))


def val_blocks(owners: np.ndarray, names: list[str]) -> list[list]:
    """[[source, first token, tokens], ...] of a validation split laid out one block per source."""
    edges = [0, *(np.flatnonzero(np.diff(owners)) + 1).tolist(), len(owners)]
    return [[names[int(owners[a])], a, b - a] for a, b in zip(edges[:-1], edges[1:]) if b > a]


def encode_sourced(tokenizer, texts: list[str], source_ids: list[int] | None, eot_id: int, dtype: np.dtype
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """encode_documents of `texts`, and (when each text has a source index) the source index of every token (a
    document's end-of-text is its own), encoded one run of same-source documents at a time."""
    from scalinglab.tokenizer import encode_documents

    if source_ids is None:
        return encode_documents(tokenizer, texts, eot_id, dtype), None
    pieces, owners, start = [], [], 0
    for end in range(1, len(texts) + 1):
        if end == len(texts) or source_ids[end] != source_ids[start]:
            pieces.append(encode_documents(tokenizer, texts[start:end], eot_id, dtype))
            owners.append(np.full(pieces[-1].size, source_ids[start], dtype=np.uint8))
            start = end
    return np.concatenate([np.zeros(0, dtype), *pieces]), np.concatenate([np.zeros(0, np.uint8), *owners])
