"""Byte-level BPE tokenizer (HF `tokenizers`): train one on the training split, or load a user's tokenizer.json.

Byte-level BPE (Radford et al. 2019, GPT-2 section 2.2): text is UTF-8 bytes, each byte mapped to one printable
character, and merges are learned on top, so any text is encodable and a token's byte length is exact. Documents
are separated by one end-of-text token that stands for zero bytes: its loss is charged to the documents' UTF-8
bytes, as in The Pile's bits per byte (Gao et al. 2020, section 4.2): bpb = loss * tokens / (bytes * ln 2).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from scalinglab.errors import ConfigError

END_OF_TEXT = "<|endoftext|>"
# Names of an end-of-text token in common user tokenizers, tried in order.
END_OF_TEXT_CANDIDATES = (END_OF_TEXT, "<|end_of_text|>", "</s>", "<eos>", "[SEP]")
MIN_VOCAB_SIZE = 257  # 256 byte tokens + end-of-text
MAX_VOCAB_SIZE = 2**32  # token ids are stored as uint32 at most


def check_vocab_size(vocab_size: int) -> int:
    """Return vocab_size as an int, or raise ConfigError naming data.vocab_size."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)):
        raise ConfigError("data.vocab_size", f"must be an integer, got {vocab_size!r}", "set e.g. data.vocab_size=4096")
    if vocab_size < MIN_VOCAB_SIZE:
        raise ConfigError("data.vocab_size", f"is {vocab_size}, below {MIN_VOCAB_SIZE} (256 byte tokens + end-of-text)",
                          f"set data.vocab_size to at least {MIN_VOCAB_SIZE}, e.g. 4096")
    if vocab_size > MAX_VOCAB_SIZE:
        raise ConfigError("data.vocab_size", f"is {vocab_size}, above 2^32", "set data.vocab_size <= 4294967296")
    return int(vocab_size)


def train_bpe(texts: Iterable[str], vocab_size: int, length: int | None = None,
              show_progress: bool = False) -> Tokenizer:
    """Train a byte-level BPE tokenizer with `vocab_size` tokens (id 0 is end-of-text) on `texts`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=check_vocab_size(vocab_size), special_tokens=[END_OF_TEXT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
    tokenizer.train_from_iterator(texts, trainer, length=length)
    return tokenizer


USER_TOKENIZER_FIX = "give a tokenizer.json saved by HF tokenizers, or data.tokenizer_file=null to train one"


def load_tokenizer(path: str | Path, field: str = "data.tokenizer_file", fix: str = USER_TOKENIZER_FIX) -> Tokenizer:
    """Load a tokenizer.json; a bad file raises ConfigError(field, ..., fix) (a cached one names its own file)."""
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for bad files
        raise ConfigError(field, f"cannot load {path} as a tokenizer.json ({error})", fix) from None


def end_of_text_id(tokenizer: Tokenizer) -> int:
    """Id of the end-of-text token that separates documents."""
    for name in END_OF_TEXT_CANDIDATES:
        token_id = tokenizer.token_to_id(name)
        if token_id is not None:
            return token_id
    raise ConfigError("data.tokenizer_file", f"the tokenizer has none of the end-of-text tokens "
                      f"{END_OF_TEXT_CANDIDATES}", "add one as a special token, or set data.tokenizer_file=null")


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """Bytes of text each token id stands for (int64 array of length vocab); special tokens count 0 bytes.

    Exact for byte-level tokenizers (every vocabulary character is one byte); for others (e.g. a user's
    SentencePiece-style tokenizer.json) it is the UTF-8 length of the token decoded alone, an approximation.
    """
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    lengths = np.zeros(max(vocab.values()) + 1, dtype=np.int64)
    specials = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    byte_level = all(char in alphabet for token in vocab if token not in specials for char in token)
    for token, token_id in vocab.items():
        if token in specials:
            continue
        if byte_level:
            lengths[token_id] = len(token)
        else:
            lengths[token_id] = len(tokenizer.decode([token_id], skip_special_tokens=False).encode("utf-8"))
    return lengths


def encode_documents(tokenizer: Tokenizer, texts: list[str], eot_id: int, dtype: np.dtype,
                     lengths: bool = False):
    """Token ids of the documents, each followed by end-of-text, as one flat array of `dtype`; with lengths=True,
    also each document's token count (end-of-text included), so a caller can cut between documents."""
    if not texts:
        return (np.zeros(0, dtype=dtype), np.zeros(0, dtype=np.int64)) if lengths else np.zeros(0, dtype=dtype)
    encodings = tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    pieces = []
    eot = np.array([eot_id], dtype=dtype)
    for encoding in encodings:
        pieces.append(np.asarray(encoding.ids, dtype=dtype))
        pieces.append(eot)
    ids = np.concatenate(pieces)
    if lengths:
        return ids, np.array([len(e.ids) + 1 for e in encodings], dtype=np.int64)
    return ids
