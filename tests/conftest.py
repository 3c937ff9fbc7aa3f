"""Shared fixtures: a real tiny RomeGPT trained in the test session on text the tests write."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rome_core import corpus
from rome_core.config import preset
from rome_core.train import Trainer, TrainConfig
from tests.sample_text import sample_text

TINY_STEPS = 40


@pytest.fixture(scope="session")
def sample_corpus_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "rome.txt").write_text(sample_text(), encoding="utf-8")
    (folder / "more.txt").write_text(sample_text(paragraphs=60, seed=1), encoding="utf-8")
    return folder


def train_tiny(data_dir: Path, out_dir: Path, steps: int = TINY_STEPS, **overrides) -> Trainer:
    tokenizer, data = corpus.prepare([data_dir], out_dir.parent / f"{out_dir.name}-cache", vocab_size=300)
    model_config = preset("tiny")
    from dataclasses import replace

    model_config = replace(model_config, vocab_size=tokenizer.vocab_size)
    settings = dict(steps=steps, batch_size=4, lr=3e-3, warmup_steps=5, eval_every=20, eval_batches=2, checkpoint_every=20, log_every=5)
    settings.update(overrides)
    trainer = Trainer(model_config, TrainConfig(**settings), tokenizer, data, out_dir, progress=False)
    try:
        trainer.train()
    finally:
        trainer.close()
    return trainer


@pytest.fixture(scope="session")
def tiny_run(sample_corpus_dir, tmp_path_factory) -> Path:
    """A run folder (latest/, best/, metrics.jsonl) of a tiny model trained for a few steps."""
    logging.getLogger("rome_core").setLevel(logging.WARNING)
    out = tmp_path_factory.mktemp("runs") / "tiny"
    train_tiny(sample_corpus_dir, out)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    return tiny_run / "latest"


@pytest.fixture(scope="session")
def tiny_loaded(tiny_checkpoint):
    from rome_core.checkpoint import load_checkpoint

    return load_checkpoint(tiny_checkpoint)
