"""Generation speed of rome-22m against Hugging Face GPT-2 at the same shape, measured in one run.

    python bench/generate_speed.py [--repeats 5] [--new-tokens 200]

Both models have random weights of the same shape (vocabulary 3000, width 512, 6 layers,
8 heads, MLP 2048, context 512, untied head), run in fp32 on the CPU with a KV cache, batch 1,
a 16-token prompt and greedy decoding, so every run produces exactly `--new-tokens` tokens.
The baseline is `GPT2LMHeadModel.generate` from `transformers` (pip install '.[bench]').
Reported: the median tokens per second of each variant and its ratio to the baseline.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rome_core.config import PRESETS
from rome_core.generate import Generator, SamplingSettings
from rome_core.model import RomeGPT
from rome_core.tokenizer import RomeTokenizer
from rome_core.trace import SequenceTrace

PROMPT_TOKENS = 16


def build_tokenizer() -> RomeTokenizer:
    words = [f"w{i}" for i in range(4000)]
    return RomeTokenizer.train([" ".join(words) * 3])


def build_hf_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = PRESETS["rome-22m"]
    hf_config = GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.context_length, n_embd=config.d_model,
        n_layer=config.n_layers, n_head=config.n_heads, n_inner=config.d_mlp,
        tie_word_embeddings=False, activation_function="gelu",
        # GPT-2's own special ids (50256) are outside this vocabulary; 0 keeps generate() quiet.
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    return GPT2LMHeadModel(hf_config).eval()


def time_hf(model, prompt: torch.Tensor, new_tokens: int) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
            do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None,
        )
    elapsed = time.perf_counter() - start
    assert out.shape[1] == prompt.shape[1] + new_tokens
    return new_tokens / elapsed


def time_rome(generator: Generator, prompt: list[int], new_tokens: int, trace: bool) -> float:
    settings = SamplingSettings(temperature=0.0, top_k=0, top_p=1.0, max_tokens=new_tokens)
    sequence = SequenceTrace(generator.model.config.n_layers) if trace else None
    start = time.perf_counter()
    count = 0
    for step in generator.stream(prompt, settings, trace=trace):
        if sequence is not None:
            sequence.add(step.trace, step.positions, step.window_start)
        count += 1
    elapsed = time.perf_counter() - start
    assert count == new_tokens
    return new_tokens / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (default 5)")
    parser.add_argument("--new-tokens", type=int, default=200, help="tokens generated per run (default 200)")
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    model = RomeGPT(PRESETS["rome-22m"]).eval()
    with torch.no_grad():
        # Random weights may pick end-of-text, which would end a run early.
        model.unembed.bias[tokenizer.eot_id] = -1e4
    generator = Generator(model, tokenizer)
    hf = build_hf_model()
    prompt = list(range(10, 10 + PROMPT_TOKENS))
    hf_prompt = torch.tensor([prompt])

    variants = {
        "transformers GPT2LMHeadModel.generate (baseline)": lambda: time_hf(hf, hf_prompt, args.new_tokens),
        "RomeGPT untraced": lambda: time_rome(generator, prompt, args.new_tokens, trace=False),
        "RomeGPT traced (every hook, assembled)": lambda: time_rome(generator, prompt, args.new_tokens, trace=True),
    }
    for run in variants.values():
        run()  # warm-up
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        # Interleave the variants so load on a shared machine hits them alike.
        for name, run in variants.items():
            results[name].append(run())

    baseline = statistics.median(results["transformers GPT2LMHeadModel.generate (baseline)"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.new_tokens} new tokens, "
          f"{PROMPT_TOKENS}-token prompt, batch 1, median of {args.repeats}")
    print(f"| variant | tokens/s | vs baseline |\n|---|---:|---:|")
    for name, rates in results.items():
        median = statistics.median(rates)
        print(f"| {name} | {median:.0f} | {median / baseline:.2f}x |")


if __name__ == "__main__":
    main()
