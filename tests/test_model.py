import pytest
import torch

from rome_core.config import PRESETS, ModelConfig
from rome_core.errors import RomeError
from rome_core.model import FlatDecoder, RomeGPT
from rome_core.trace import hook_names, run_with_trace


def test_rome_22m_has_22_3m_parameters():
    model = RomeGPT(PRESETS["rome-22m"])
    assert model.num_parameters() == 22_252_472
    assert f"{model.num_parameters() / 1e6:.1f}M" == "22.3M"


def test_rome_22m_matches_the_design():
    config = PRESETS["rome-22m"]
    assert (config.vocab_size, config.d_model, config.context_length) == (3000, 512, 512)
    assert (config.n_layers, config.n_heads, config.d_mlp) == (6, 8, 2048)
    model = RomeGPT(config)
    # The head is its own matrix, not tied to the token embedding.
    assert model.unembed.weight.data_ptr() != model.embed.weight.data_ptr()


def test_config_rejects_bad_shapes():
    with pytest.raises(RomeError, match="not divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(RomeError, match="dropout"):
        ModelConfig(dropout=1.5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=300, context_length=48, d_model=64, n_layers=3, n_heads=4, d_mlp=256)
    return RomeGPT(config).eval()


def test_traced_logits_match_fused_path(model):
    ids = torch.randint(0, 300, (2, 40))
    with torch.no_grad():
        fused = model(ids)
        trace = {}
        traced = model(ids, trace=trace)
    torch.testing.assert_close(traced, fused, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(trace["logits"], fused, rtol=1e-5, atol=1e-5)


def test_trace_records_every_hook(model):
    trace = run_with_trace(model, list(range(10)))
    assert sorted(trace) == sorted(hook_names(3))
    assert trace["blocks.2.attn.hook_pattern"].shape == (1, 4, 10, 10)
    assert trace["hook_embed"].shape == (1, 10, 64)
    assert trace["logits"].shape == (1, 10, 300)
    torch.testing.assert_close(trace["hook_embed"][0], model.embed.weight[:10])
    torch.testing.assert_close(trace["hook_pos_embed"][0], model.pos_embed.weight[:10])


def test_residual_stream_adds_up(model):
    trace = run_with_trace(model, list(range(12)))
    torch.testing.assert_close(trace["blocks.0.hook_resid_pre"], trace["hook_embed"] + trace["hook_pos_embed"])
    torch.testing.assert_close(trace["blocks.1.hook_resid_pre"], trace["blocks.0.hook_resid_post"])
    with torch.inference_mode():
        normalized = model.ln_final(trace["blocks.2.hook_resid_post"])
    torch.testing.assert_close(trace["ln_final.hook_normalized"], normalized)


def test_attention_rows_are_causal_distributions(model):
    trace = run_with_trace(model, list(range(16)))
    for layer in range(3):
        pattern = trace[f"blocks.{layer}.attn.hook_pattern"][0]
        torch.testing.assert_close(pattern.sum(-1), torch.ones(4, 16))
        future = torch.ones(16, 16, dtype=torch.bool).triu(diagonal=1)
        assert torch.all(pattern[:, future] == 0.0)


def test_kv_cache_matches_full_forward(model):
    ids = torch.randint(0, 300, (1, 20))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache()
        first = model(ids[:, :13], kv_cache=cache)
        rest = model(ids[:, 13:], kv_cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, rtol=1e-5, atol=1e-5)


def test_flat_decoder_matches_forward(model):
    ids = torch.randint(0, 300, (1, 48))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_kv_cache()
        model(ids[:, :5], kv_cache=cache)
        # One token at a time up to the last position of the context.
        decoder = FlatDecoder(model)
        steps = [decoder.step(int(token), cache) for token in ids[0, 5:]]
        assert cache.length == 48
        with pytest.raises(ValueError, match="cache full"):
            decoder.step(1, cache)
    torch.testing.assert_close(torch.stack(steps), full[0, 5:], rtol=1e-5, atol=1e-5)
    # The cache contains the same keys as a cached forward of the whole sequence.
    reference = model.new_kv_cache()
    with torch.no_grad():
        model(ids, kv_cache=reference)
    torch.testing.assert_close(cache.keys, reference.keys, rtol=1e-5, atol=1e-6)


def test_forward_rejects_sequences_past_context(model):
    with pytest.raises(ValueError, match="exceeds the context length"):
        model(torch.zeros(1, 49, dtype=torch.long))
