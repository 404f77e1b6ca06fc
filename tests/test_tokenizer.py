"""Byte-level BPE: vocabulary bounds, round trip, exact byte lengths per token."""
from __future__ import annotations

import numpy as np
import pytest

from scalinglab.errors import ConfigError
from scalinglab.resources import SAMPLE_CORPUS
from scalinglab.tokenizer import (check_vocab_size, encode_documents, end_of_text_id, load_tokenizer,
                                  token_byte_lengths, train_bpe)

CORPUS = SAMPLE_CORPUS


@pytest.fixture(scope="module")
def tokenizer():
    texts = [path.read_text() for path in sorted(CORPUS.glob("*.txt"))[:3]]
    return train_bpe(texts, 300)


@pytest.mark.parametrize("bad", [0, 255, 256, 2**32 + 1, "4096", 4096.5, True])
def test_vocab_size_bounds(bad):
    with pytest.raises(ConfigError) as error:
        check_vocab_size(bad)
    assert error.value.field == "data.vocab_size"


def test_vocab_size_accepted():
    assert check_vocab_size(257) == 257 and check_vocab_size(2**32) == 2**32


def test_trained_vocabulary_and_round_trip(tokenizer):
    assert tokenizer.get_vocab_size() == 300
    assert end_of_text_id(tokenizer) == 0
    text = "Thou art more lovely — café, naïve, 日本. 12345"
    assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_token_byte_lengths_are_exact(tokenizer):
    lengths = token_byte_lengths(tokenizer)
    assert lengths.shape == (300,) and lengths[0] == 0  # end-of-text stands for no bytes
    for text in ["Who's there?", "café — naïve 日本", "   spaces\n\nand lines\t"]:
        ids = tokenizer.encode(text).ids
        assert lengths[ids].sum() == len(text.encode("utf-8"))


def test_encode_documents_separates_with_end_of_text(tokenizer):
    ids = encode_documents(tokenizer, ["ab", "cd"], 0, np.dtype(np.uint16))
    assert ids.dtype == np.uint16 and ids[-1] == 0 and (ids == 0).sum() == 2
    first = tokenizer.encode("ab").ids
    assert ids[: len(first)].tolist() == first and ids[len(first)] == 0


def test_saved_tokenizer_loads_and_bad_file_is_clear(tokenizer, tmp_path):
    tokenizer.save(str(tmp_path / "tok.json"))
    assert load_tokenizer(tmp_path / "tok.json").encode("hello").ids == tokenizer.encode("hello").ids
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError) as error:
        load_tokenizer(tmp_path / "bad.json")
    assert error.value.field == "data.tokenizer_file"
