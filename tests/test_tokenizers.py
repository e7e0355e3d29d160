"""Byte- and character-level tokenisers: round trips, reserved ids, saving."""

import numpy as np
import pytest

from jaxdl.text.tokenizers import ByteTokenizer, CharTokenizer

TEXTS = ["def f(x):\n    return x", "naïve café ✓", ""]


@pytest.mark.parametrize("text", TEXTS)
def test_byte_round_trip_and_markers(text):
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(text, bos=True, eos=True)
    assert ids.dtype == np.int32
    assert ids[0] == tokenizer.bos_id and ids[-1] == tokenizer.eos_id
    assert len(ids) == len(text.encode()) + 2
    assert tokenizer.decode(ids) == text
    assert tokenizer.vocab_size == 259 and ids.max() < tokenizer.vocab_size


def test_byte_decode_of_a_cut_character_is_replaced():
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode("é")
    assert tokenizer.decode(ids[:1]) == "\ufffd"
    assert tokenizer.decode([tokenizer.pad_id, *ids, tokenizer.pad_id]) == "é"


def test_char_round_trip_unknown_and_save(tmp_path):
    tokenizer = CharTokenizer.fit(TEXTS)
    assert list(tokenizer.characters) == sorted(set("".join(TEXTS)))
    for text in TEXTS:
        assert tokenizer.decode(tokenizer.encode(text, bos=True, eos=True)) == text
    ids = tokenizer.encode("xyz")
    assert ids[1] == tokenizer.unk_id and tokenizer.decode(ids) == "x\ufffd\ufffd"
    assert len({tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.unk_id}) == 4
    assert ids.min() >= 0 and ids.max() < tokenizer.vocab_size
    path = tmp_path / "chars.json"
    tokenizer.save(path)
    assert CharTokenizer.load(path) == tokenizer
    path.write_text('{"kind": "byte"}')
    with pytest.raises(ValueError, match="not a saved CharTokenizer"):
        CharTokenizer.load(path)


def test_bpe_trains_on_a_corpus_and_round_trips_through_its_file(tmp_path):
    from jaxdl.text.subword import SubwordTokenizer

    corpus = ["def function(argument):\n    return argument + 1\n"] * 50 + TEXTS
    bpe = SubwordTokenizer.train_bpe(corpus, vocab_size=300)
    assert bpe.vocab_size <= 300 and (bpe.pad_id, bpe.bos_id, bpe.eos_id) == (0, 1, 2)
    text = "def function(x):\n    return naïve ✓"
    ids = bpe.encode(text, bos=True, eos=True)
    assert ids.dtype == np.int32 and ids[0] == bpe.bos_id and ids[-1] == bpe.eos_id
    # Merges learned from the corpus make common words shorter than their bytes.
    assert len(bpe.encode("function")) < len("function")
    assert bpe.decode(ids) == text
    bpe.save(tmp_path / "tokenizer.json")
    again = SubwordTokenizer.load(tmp_path / "tokenizer.json")
    np.testing.assert_array_equal(again.encode(text), bpe.encode(text))


def test_bad_tokenizer_file_is_a_clear_error(tmp_path):
    from jaxdl.errors import UserInputError
    from jaxdl.text.subword import SubwordTokenizer

    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(UserInputError, match=r"tokenizer\.json"):
        SubwordTokenizer.load(tmp_path / "tokenizer.json")
