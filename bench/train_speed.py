"""Training throughput of rome-22m on this machine, against baselines measured in the same run.

    python bench/train_speed.py [--steps 6] [--batch-size 16] [--variants romegpt,bf16-autocast]

Each variant runs in its own process (so peak memory and allocator settings are its own):
  matmul-peak     a large bf16 torch.matmul: the machine's practical bf16 ceiling
  fp32-eager      the usual fp32 training loop (AdamW, full 512-token context)
  bf16-autocast   the same loop under torch.autocast(bfloat16): the common recipe
  romegpt-sdpa    rome_core.train.Trainer with PyTorch's own attention backward
  romegpt         rome_core.train.Trainer as `romegpt train` runs it (bf16 autocast, glibc malloc
                  tuned, the blocked attention backward of rome_core/attention.py)
Model FLOP/s counts 6 x parameters x tokens/s. Each variant reports the median step time of
`--steps` timed steps after two warm-up steps, and its peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647"
CONTEXT = 512
VARIANTS = ("matmul-peak", "fp32-eager", "bf16-autocast", "romegpt-sdpa", "romegpt")
VOCAB = 3000


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_matmul(steps: int) -> dict:
    import torch

    size = 4096
    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return {"flops": 2 * size**3 / statistics.median(times)}


def bench_plain_loop(steps: int, batch: int, autocast: bool) -> dict:
    import torch
    import torch.nn.functional as F

    from rome_core.config import PRESETS
    from rome_core.model import RomeGPT

    torch.manual_seed(0)
    model = RomeGPT(PRESETS["rome-22m"])
    model.use_blocked_attention(False)  # the usual way: PyTorch's own scaled_dot_product_attention
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, VOCAB, (batch, CONTEXT))
    y = torch.randint(0, VOCAB, (batch, CONTEXT))

    def step() -> None:
        if autocast:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x)
        else:
            logits = model(x)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = []
    for index in range(steps + 2):
        start = time.perf_counter()
        step()
        if index >= 2:
            times.append(time.perf_counter() - start)
    return {"tokens_per_s": batch * CONTEXT / statistics.median(times), "params": model.num_parameters()}


def bench_trainer(steps: int, batch: int, blocked_attention: bool = True) -> dict:
    import numpy as np

    from rome_core.config import PRESETS
    from rome_core.corpus import TokenizedCorpus
    from rome_core.tokenizer import RomeTokenizer
    from rome_core.train import Trainer, TrainConfig

    rng = np.random.default_rng(0)
    tokens = rng.integers(0, VOCAB, size=2_000_000, dtype=np.uint16)
    data = TokenizedCorpus(train=tokens, val=tokens[:100_000], meta={"val_chars": 400_000, "val_tokens": 100_000})
    tokenizer = RomeTokenizer.train([" ".join(f"w{i}" for i in range(5000))])
    config = TrainConfig(steps=10_000, batch_size=batch, eval_every=10_000, checkpoint_every=10_000, log_every=10_000)
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(PRESETS["rome-22m"], config, tokenizer, data, Path(out) / "run", progress=False)
        trainer.model.use_blocked_attention(blocked_attention)
        trainer.train(stop_at=2)
        times = []
        for index in range(steps):
            start = time.perf_counter()
            trainer.train(stop_at=3 + index)
            times.append(time.perf_counter() - start)
        trainer.close()
    return {"tokens_per_s": batch * CONTEXT / statistics.median(times), "params": trainer.model.num_parameters()}


def run_variant(name: str, steps: int, batch: int) -> dict:
    """Run one variant in a child process and return its JSON result."""
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if name.startswith("romegpt"):
        env["GLIBC_TUNABLES"] = MALLOC_TUNABLES
    command = [sys.executable, __file__, "--child", name, "--steps", str(steps), "--batch-size", str(batch)]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def child(name: str, steps: int, batch: int) -> None:
    import logging

    logging.disable(logging.INFO)
    if name == "matmul-peak":
        result = bench_matmul(steps * 5)
    elif name == "fp32-eager":
        result = bench_plain_loop(steps, batch, autocast=False)
    elif name == "bf16-autocast":
        result = bench_plain_loop(steps, batch, autocast=True)
    elif name == "romegpt-sdpa":
        result = bench_trainer(steps, batch, blocked_attention=False)
    else:
        result = bench_trainer(steps, batch)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant (default 6)")
    parser.add_argument("--batch-size", type=int, default=16, help="sequences of 512 tokens per step (default 16)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {','.join(VARIANTS)}"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.batch_size)
        return

    import torch

    chosen = args.variants.split(",")
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    results = {name: run_variant(name, args.steps, args.batch_size) for name in chosen}
    peak = results.get("matmul-peak", {}).get("flops")
    plain = results.get("bf16-autocast", {}).get("tokens_per_s")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"batch {args.batch_size} x {CONTEXT} tokens, median of {args.steps} steps")
    if peak:
        print(f"bf16 matmul peak: {peak / 1e12:.2f} TFLOP/s (peak memory {results['matmul-peak']['peak_rss_mb']:.0f} MB)")
    print("| variant | tokens/s | model TFLOP/s | % of bf16 peak | vs bf16 autocast | peak memory |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        if name == "matmul-peak":
            continue
        flops = 6 * row["params"] * row["tokens_per_s"]
        share = f"{100 * flops / peak:.0f}%" if peak else "-"
        ratio = f"{row['tokens_per_s'] / plain:.2f}x" if plain else "-"
        print(f"| {name} | {row['tokens_per_s']:.0f} | {flops / 1e12:.3f} | {share} | {ratio} | "
              f"{row['peak_rss_mb'] / 1024:.2f} GB |")

if __name__ == "__main__":
    main()
