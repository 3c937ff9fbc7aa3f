import copy
from dataclasses import replace

import pytest
import torch

from rome_core.errors import RomeError
from rome_core.generate import Generator, SamplingSettings, next_token_distribution
from rome_core.trace import SequenceTrace, run_with_trace

GREEDY = SamplingSettings(temperature=0.0, top_k=0, top_p=1.0, max_tokens=20)


def reference_greedy(model, ids, count):
    """Recompute every step from scratch over the last context_length tokens, with no cache."""
    ids = list(ids)
    out = []
    context = model.config.context_length
    with torch.no_grad():
        for _ in range(count):
            logits = model(torch.tensor([ids[-context:]]))
            token = int(torch.argmax(logits[0, -1]))
            out.append(token)
            ids.append(token)
    return out


def prompt_ids(tokenizer, length):
    ids = tokenizer.encode("the senate and the people of rome met in the forum. " * 40).ids
    return ids[:length]


@pytest.fixture()
def no_eot_model(tiny_loaded):
    # A copy that never predicts end-of-text, so runs go on to the window edge.
    model = copy.deepcopy(tiny_loaded.model)
    with torch.no_grad():
        model.unembed.bias[tiny_loaded.tokenizer.eot_id] = -1e4
    return model


@pytest.mark.parametrize("prompt_length", [10, 60, 64, 90])
def test_cached_generation_matches_recompute(tiny_loaded, no_eot_model, prompt_length):
    # The tiny model's context is 64: these prompts start inside, at and past the window edge,
    # and 20 new tokens carry every one of them past it.
    ids = prompt_ids(tiny_loaded.tokenizer, prompt_length)
    assert len(ids) == prompt_length
    generator = Generator(no_eot_model, tiny_loaded.tokenizer)
    steps = list(generator.stream(ids, GREEDY))
    assert [s.token.id for s in steps] == reference_greedy(no_eot_model, ids, 20)
    assert generator.finish_reason == "max_tokens"


def test_window_slide_is_reported(tiny_loaded, no_eot_model):
    ids = prompt_ids(tiny_loaded.tokenizer, 60)
    steps = list(Generator(no_eot_model, tiny_loaded.tokenizer).stream(ids, GREEDY))
    assert not steps[0].slid
    slid = [s for s in steps if s.slid]
    assert slid, "a 60-token prompt plus 20 tokens must slide a 64-token window"
    assert slid[0].window_start == 1
    assert all(s.positions.stop - s.window_start <= 64 for s in steps)


def test_seed_makes_sampling_reproducible(tiny_loaded):
    ids = tiny_loaded.tokenizer.encode("who is caesar?").ids
    settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, max_tokens=15, seed=7)
    runs = [[s.token.id for s in Generator(tiny_loaded.model, tiny_loaded.tokenizer).stream(ids, settings)] for _ in range(2)]
    assert runs[0] == runs[1]


def test_greedy_picks_the_most_likely_token(tiny_loaded):
    ids = tiny_loaded.tokenizer.encode("the senate").ids
    step = next(Generator(tiny_loaded.model, tiny_loaded.tokenizer).stream(ids, GREEDY))
    assert step.token.id == step.candidates[0].id
    assert step.token.sample_prob == 1.0
    assert step.kept == 1


def test_distribution_filters():
    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    wide = next_token_distribution(logits, SamplingSettings(temperature=1.0, top_k=10_000, top_p=1.0))
    assert wide.kept == 4  # top-k larger than the vocabulary is clamped
    top2 = next_token_distribution(logits, SamplingSettings(temperature=1.0, top_k=2, top_p=1.0))
    assert top2.kept == 2
    torch.testing.assert_close(top2.sample_probs, torch.tensor([0.625, 0.375, 0.0, 0.0]))
    # 0.5 < 0.6, so the token that carries the mass across 0.6 (0.3) is kept too.
    nucleus = next_token_distribution(logits, SamplingSettings(temperature=1.0, top_k=0, top_p=0.6))
    assert nucleus.kept == 2
    tiny_p = next_token_distribution(logits, SamplingSettings(temperature=1.0, top_k=0, top_p=0.01))
    assert tiny_p.kept == 1
    assert float(tiny_p.sample_probs[0]) == 1.0
    greedy = next_token_distribution(logits, SamplingSettings(temperature=0.0))
    assert torch.isfinite(greedy.sample_probs).all()


@pytest.mark.parametrize(
    "settings",
    [dict(temperature=-1.0), dict(top_k=-3), dict(top_p=0.0), dict(top_p=1.5), dict(max_tokens=0), dict(temperature=float("nan"))],
)
def test_invalid_settings_raise(settings):
    with pytest.raises(RomeError, match="invalid"):
        SamplingSettings(**settings)


def test_stops_when_caller_cancels(tiny_loaded):
    ids = tiny_loaded.tokenizer.encode("rome").ids
    generator = Generator(tiny_loaded.model, tiny_loaded.tokenizer)
    seen = []
    for step in generator.stream(ids, SamplingSettings(max_tokens=50, seed=0), should_stop=lambda: len(seen) >= 3):
        seen.append(step)
    assert len(seen) == 3
    assert generator.finish_reason == "cancelled"


def test_stops_at_end_of_text(tiny_loaded):
    model = copy.deepcopy(tiny_loaded.model)
    with torch.no_grad():
        model.unembed.bias[tiny_loaded.tokenizer.eot_id] = 1e4
    generator = Generator(model, tiny_loaded.tokenizer)
    assert list(generator.stream([5, 6], GREEDY)) == []
    assert generator.finish_reason == "end_of_text"


def test_empty_prompt_raises(tiny_loaded):
    with pytest.raises(RomeError, match="empty prompt"):
        list(Generator(tiny_loaded.model, tiny_loaded.tokenizer).stream([], GREEDY))


def test_streamed_text_decodes_incrementally(tiny_loaded):
    tokenizer = tiny_loaded.tokenizer
    steps = list(Generator(tiny_loaded.model, tokenizer).stream(tokenizer.encode("caesar").ids, SamplingSettings(max_tokens=30, seed=3)))
    assert "".join(s.token.text for s in steps) == tokenizer.decode([s.token.id for s in steps], start_of_text=False)


def test_step_traces_assemble_into_a_full_forward(tiny_loaded, no_eot_model):
    tokenizer = tiny_loaded.tokenizer
    ids = tokenizer.encode("who is caesar?").ids
    sequence = SequenceTrace(no_eot_model.config.n_layers)
    generated = []
    for step in Generator(no_eot_model, tokenizer).stream(ids, SamplingSettings(max_tokens=12, seed=1), trace=True):
        sequence.add(step.trace, step.positions, step.window_start)
        generated.append(step.token.id)
    # The last token is yielded but not yet run through the model, so the trace covers all but it.
    full = run_with_trace(no_eot_model, ids + generated[:-1])
    assert sequence.length == len(ids) + len(generated) - 1
    for name in ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern", "logits", "blocks.1.hook_resid_post"):
        torch.testing.assert_close(sequence.get(name), full[name], rtol=1e-4, atol=1e-5)


def test_huge_seed_is_rejected():
    with pytest.raises(RomeError, match="invalid seed"):
        SamplingSettings(seed=99999999999999999999999)


def test_unknown_token_is_not_sampled_unless_allowed(tiny_loaded):
    tokenizer = tiny_loaded.tokenizer
    model = copy.deepcopy(tiny_loaded.model)
    with torch.no_grad():
        model.unembed.bias[tokenizer.unk_id] = 50.0  # the model now all but always predicts [UNK]
    ids = tokenizer.encode_ids("the senate")
    for temperature in (0.0, 0.8):
        settings = SamplingSettings(temperature=temperature, max_tokens=5, seed=3)
        steps = list(Generator(model, tokenizer).stream(ids, settings))
        assert steps and all(step.token.id != tokenizer.unk_id for step in steps)
        # The candidates still show what the model itself predicts.
        assert steps[0].candidates[0].id == tokenizer.unk_id
        assert steps[0].candidates[0].sample_prob == 0.0
        allowed = list(Generator(model, tokenizer).stream(ids, replace(settings, allow_unknown=True)))
        assert allowed[0].token.id == tokenizer.unk_id
