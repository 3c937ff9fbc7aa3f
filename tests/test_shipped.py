"""Checks of the shipped default checkpoint (checkpoints/romegpt-22m), which lives in git."""

import pytest

from rome_core.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from rome_core.generate import Generator, SamplingSettings


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(DEFAULT_CHECKPOINT)


def test_shipped_model_has_22_3m_parameters(shipped):
    assert shipped.model.num_parameters() == 22_252_472
    assert shipped.tokenizer.vocab_size == 3000


def test_who_is_caesar_is_four_tokens(shipped):
    tokens = shipped.tokenizer.encode("who is caesar?").tokens
    assert [t.text for t in tokens] == [" who", " is", " caesar", "?"]


def test_greedy_generation_is_deterministic(shipped):
    settings = SamplingSettings(temperature=0.0, max_tokens=24)
    ids = shipped.tokenizer.encode("the senate and the people of rome").ids
    runs = ["".join(s.token.text for s in Generator(shipped.model, shipped.tokenizer).stream(ids, settings)) for _ in range(2)]
    assert runs[0] == runs[1]
    assert runs[0].strip()


def test_shipped_card_records_the_training(shipped):
    card = shipped.card
    assert card["final"]["bpc"] <= 1.8
    assert len(card["data"]["documents"]) == 32
    assert (shipped.path / "metrics.jsonl").is_file()
