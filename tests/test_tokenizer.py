import logging
import random

import pytest

from rome_core.errors import RomeError
from rome_core.tokenizer import EOT, UNK, IncrementalDecoder, RomeTokenizer
from tests.sample_text import sample_text


def pseudo_words(count: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    words = ["".join(rng.choice(letters) for _ in range(rng.randint(2, 9))) for _ in range(4000)]
    return " ".join(rng.choice(words) for _ in range(count))


@pytest.fixture(scope="module")
def tokenizer() -> RomeTokenizer:
    return RomeTokenizer.train([sample_text(), pseudo_words(60000)])


def test_vocabulary_is_exactly_3000(tokenizer):
    assert tokenizer.vocab_size == 3000
    assert tokenizer.token_to_id(UNK) == tokenizer.unk_id
    assert tokenizer.token_to_id(EOT) == tokenizer.eot_id


def test_uppercase_gives_same_ids(tokenizer):
    assert tokenizer.encode("Who is CAESAR?").ids == tokenizer.encode("who is caesar?").ids


def test_encoding_reports_spans_in_lowercased_text(tokenizer):
    encoding = tokenizer.encode("The Senate MET.")
    assert encoding.text == "the senate met."
    first, *rest = encoding.tokens
    # The first token carries the dummy-prefix space, which is not part of the input.
    assert first.text == " " + encoding.covered(first)
    for token in rest:
        assert encoding.covered(token) == token.text
    assert "".join(encoding.covered(t) for t in encoding.tokens) == encoding.text


def test_text_start_gets_dummy_prefix(tokenizer):
    assert tokenizer.encode("who is caesar?").ids == tokenizer.encode(" who is caesar?", start_of_text=False).ids
    assert not tokenizer.encode("senate", start_of_text=False).tokens[0].text.startswith(" ")


@pytest.mark.parametrize(
    "text",
    [
        "who is caesar?",
        "Rome, Gaul; Spain: Britain!",
        "two  spaces and   three, then a tab\tand\nnew lines\n\n",
        "  leading and trailing  ",
        "quotes 'single' and \"double\" (brackets) [square]",
    ],
)
def test_decode_restores_text_exactly(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text).ids) == text.lower()


@pytest.mark.parametrize("text", ["caesar 🙂 rome", "ἀθῆναι and rome", "zoë"])
def test_unknown_characters_become_unk(tokenizer, text):
    encoding = tokenizer.encode(text)
    unknown = [t for t in encoding.tokens if t.unknown]
    assert unknown, "expected at least one [UNK]"
    assert all(t.id == tokenizer.unk_id for t in unknown)
    # Nothing is dropped: the spans of all tokens cover the whole lowercased input.
    assert "".join(encoding.covered(t) for t in encoding.tokens) == encoding.text


def test_unk_reports_swallowed_characters(tokenizer):
    encoding = tokenizer.encode("rome 🙂🙂 gaul")
    unknown = [t for t in encoding.tokens if t.unknown]
    assert [encoding.covered(t) for t in unknown] == ["🙂🙂"]


def test_training_on_blank_text_raises():
    with pytest.raises(RomeError, match="empty or whitespace-only"):
        RomeTokenizer.train(["", "   \n\t "])


def test_small_corpus_warns_about_vocab(caplog):
    with caplog.at_level(logging.WARNING, logger="rome_core.tokenizer"):
        small = RomeTokenizer.train(["the senate and the people of rome"])
    assert small.vocab_size < 3000
    assert "too small" in caplog.text


def test_save_and_load_round_trip(tokenizer, tmp_path):
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    loaded = RomeTokenizer.load(path)
    assert loaded.encode("the legions of caesar").ids == tokenizer.encode("the legions of caesar").ids
    assert loaded.vocab_size == tokenizer.vocab_size


def test_load_rejects_missing_and_corrupt_files(tmp_path):
    with pytest.raises(RomeError, match="not found"):
        RomeTokenizer.load(tmp_path / "absent.json")
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(RomeError, match="not a valid tokenizer.json"):
        RomeTokenizer.load(bad)


def test_incremental_decoder_matches_full_decode(tokenizer):
    ids = tokenizer.encode("the senate, the people; and rome!  end\n").ids
    pieces = list(IncrementalDecoder(tokenizer).stream(ids))
    assert "".join(pieces) == tokenizer.decode(ids, start_of_text=False)
