"""Streaming generation with a KV cache, sampling controls and optional tracing.

Each step runs the model on the newest token only (the cache holds the keys and
values of everything before it). When the sequence outgrows the context, the window
slides: the oldest token drops out and the cache is rebuilt from the last
`context_length` tokens, so results match a from-scratch run on the same window.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rome_core.errors import RomeError
from rome_core.model import FlatDecoder, RomeGPT, Trace
from rome_core.tokenizer import RomeTokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSettings:
    """Settings that choose the next token. temperature 0 is greedy, and top_k 0 and top_p 1.0 switch those filters off.

    `allow_unknown` False keeps [UNK] out of the sampled tokens: it carries no text, and after an
    unknown character the model tends to predict a run of them. Its probability is still shown.
    """

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    max_tokens: int = 200
    seed: int | None = None
    shown_candidates: int = 10
    allow_unknown: bool = False

    def __post_init__(self) -> None:
        if not (self.temperature >= 0.0 and self.temperature <= 100.0):
            raise RomeError(f"invalid temperature {self.temperature}; use a value from 0 (greedy) to 100")
        if self.top_k < 0:
            raise RomeError(f"invalid top-k {self.top_k}; use 0 (off) or a positive count")
        if not (0.0 < self.top_p <= 1.0):
            raise RomeError(f"invalid top-p {self.top_p}; use a value in (0, 1], where 1 is off")
        if self.max_tokens < 1:
            raise RomeError(f"invalid max tokens {self.max_tokens}; use 1 or more")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise RomeError(f"invalid seed {self.seed}; use a whole number from 0 to {2**63 - 1}")
        if self.shown_candidates < 1:
            raise RomeError(f"invalid candidate count {self.shown_candidates}; use 1 or more")


@dataclass(frozen=True)
class Candidate:
    """A possible next token. `prob` is the model's own probability (softmax at temperature 1);
    `sample_prob` is its probability after temperature, top-k and top-p (0 when filtered out)."""

    id: int
    text: str
    prob: float
    sample_prob: float


@dataclass
class Step:
    """One generated token and what the model computed to choose it.

    `trace` (when tracing) covers the query positions `positions` (absolute indices into the
    full token list); its keys start at absolute index `window_start`.
    """

    index: int
    token: Candidate
    candidates: list[Candidate]
    kept: int
    window_start: int
    positions: range
    slid: bool
    trace: Trace | None = None


@dataclass
class Distribution:
    """The next-token distribution at one position, before and after the sampling filters."""

    probs: Tensor
    sample_probs: Tensor
    kept: int


def next_token_distribution(logits: Tensor, settings: SamplingSettings, unknown_id: int | None = None) -> Distribution:
    """Apply temperature, top-k and top-p to one row of logits (shape (vocab,)).

    `unknown_id` names the [UNK] token, which sampling skips unless `settings.allow_unknown`.
    """
    logits = logits.float()
    probs = torch.softmax(logits, dim=-1)
    vocab = logits.shape[-1]
    skip_unknown = unknown_id is not None and not settings.allow_unknown
    if skip_unknown:
        logits = logits.clone()
        logits[unknown_id] = float("-inf")
    if settings.temperature == 0.0:
        sample = torch.zeros_like(probs)
        sample[int(torch.argmax(logits))] = 1.0
        return Distribution(probs=probs, sample_probs=sample, kept=1)

    scaled = torch.softmax(logits / settings.temperature, dim=-1)
    keep = torch.ones(vocab, dtype=torch.bool)
    if skip_unknown:
        keep[unknown_id] = False
    order = torch.argsort(scaled, descending=True)
    if settings.top_k:
        k = min(settings.top_k, vocab)
        keep[order[k:]] = False
    if settings.top_p < 1.0:
        sorted_probs = scaled[order] * keep[order]
        sorted_probs = sorted_probs / sorted_probs.sum()
        before = torch.cumsum(sorted_probs, dim=0) - sorted_probs
        # Keep every token whose preceding mass is below p: the most likely token always survives,
        # and so does the token that carries the cumulative mass across p.
        keep[order[before >= settings.top_p]] = False
    filtered = scaled * keep
    filtered = filtered / filtered.sum()
    return Distribution(probs=probs, sample_probs=filtered, kept=int(keep.sum()))


class Generator:
    """Generates from a loaded model one step at a time."""

    def __init__(self, model: RomeGPT, tokenizer: RomeTokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.context = model.config.context_length
        self.finish_reason: str | None = None

    def _candidates(self, token_ids: list[int], dist: Distribution) -> list[Candidate]:
        # One indexing and one tolist per step, not two scalar reads per candidate.
        index = torch.tensor(token_ids)
        probs, sample_probs = dist.probs[index].tolist(), dist.sample_probs[index].tolist()
        return [
            Candidate(id=i, text=self.tokenizer.id_to_token(i), prob=p, sample_prob=s)
            for i, p, s in zip(token_ids, probs, sample_probs)
        ]

    @torch.inference_mode()
    def stream(
        self,
        ids: list[int],
        settings: SamplingSettings,
        trace: bool = False,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Step]:
        """Yield generated tokens one `Step` at a time, continuing the token list `ids`.

        Stops at end-of-text, after `settings.max_tokens`, or when `should_stop()` returns True;
        `finish_reason` then records which.
        """
        if not ids:
            raise RomeError("cannot generate from an empty prompt; type some text first")
        self.finish_reason = None
        ids = list(ids)
        rng = torch.Generator().manual_seed(settings.seed) if settings.seed is not None else None
        device = next(self.model.parameters()).device

        # The flat decoder runs in the weights' dtype; under autocast, forward keeps the mixed precision.
        flat = None if trace or torch.is_autocast_enabled(device.type) else FlatDecoder(self.model)
        window_start = max(0, len(ids) - self.context)
        slid = window_start > 0
        cache = self.model.new_kv_cache()
        step_trace: Trace | None = {} if trace else None
        logits = self.model(torch.tensor([ids[window_start:]], device=device), kv_cache=cache, trace=step_trace)
        positions = range(window_start, len(ids))

        for index in range(settings.max_tokens):
            if should_stop is not None and should_stop():
                self.finish_reason = "cancelled"
                return
            dist = next_token_distribution(logits[0, -1], settings, self.tokenizer.unk_id)
            if settings.temperature == 0.0:
                token_id = int(torch.argmax(dist.sample_probs))
            else:
                token_id = int(torch.multinomial(dist.sample_probs, 1, generator=rng))
            top = torch.topk(dist.probs, min(settings.shown_candidates, dist.probs.shape[0]))
            chosen, *candidates = self._candidates([token_id, *top.indices.tolist()], dist)
            if token_id == self.tokenizer.eot_id:
                self.finish_reason = "end_of_text"
                return
            yield Step(
                index=index,
                token=chosen,
                candidates=candidates,
                kept=dist.kept,
                window_start=window_start,
                positions=positions,
                slid=slid,
                trace=step_trace,
            )
            ids.append(token_id)
            if index + 1 == settings.max_tokens:
                break

            step_trace = {} if trace else None
            if cache.length < self.context and flat is not None:
                positions = range(len(ids) - 1, len(ids))
                logits = flat.step(token_id, cache).view(1, 1, -1)
                slid = False
            elif cache.length < self.context:
                positions = range(len(ids) - 1, len(ids))
                logits = self.model(torch.tensor([[token_id]], device=device), kv_cache=cache, trace=step_trace)
                slid = False
            else:
                # The window is full: drop the oldest token and rebuild the cache, because every
                # remaining token moves to a new position and its keys and values change with it.
                window_start = len(ids) - self.context
                cache = self.model.new_kv_cache()
                positions = range(window_start, len(ids))
                logits = self.model(torch.tensor([ids[window_start:]], device=device), kv_cache=cache, trace=step_trace)
                slid = True
        self.finish_reason = "max_tokens"


def generate_text(
    model: RomeGPT, tokenizer: RomeTokenizer, prompt: str, settings: SamplingSettings
) -> str:
    """Return the text generated after `prompt` (convenience for samples and tests)."""
    generator = Generator(model, tokenizer)
    return "".join(step.token.text for step in generator.stream(tokenizer.encode_ids(prompt), settings))
