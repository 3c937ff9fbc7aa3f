"""Measure the Textual app: start-up to first frame and to model loaded, UI time per streamed token, peak memory.

UI time per token is the time the app spends applying queued steps to its widgets; the
rendering that follows is not included.

Runs the real app headless (App.run_test), sends one prompt and streams a reply.

    OMP_NUM_THREADS=1 python bench/app_speed.py [--checkpoint PATH] [--tokens 200] [--size 160x48]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
from pathlib import Path

from rome_core.generate import SamplingSettings
from rome_tui.app import RomeApp
from rome_tui.messages import ModelLoaded
from rome_tui.widgets.prompt_input import PromptInput


class TimedApp(RomeApp):
    """RomeApp that records when it first rendered, when the model loaded and how long each UI batch took."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.perf_counter()
        self.first_frame_s: float | None = None
        self.loaded_s: float | None = None
        self.batches: list[tuple[int, float]] = []

    def on_ready(self) -> None:
        self.first_frame_s = time.perf_counter() - self.started

    def on_model_loaded(self, message: ModelLoaded) -> None:
        # Textual also calls RomeApp.on_model_loaded (handlers run for every class in the MRO).
        self.loaded_s = time.perf_counter() - self.started

    def _drain_steps(self) -> None:
        count = len(self._pending)
        begin = time.perf_counter()
        super()._drain_steps()
        if count:
            self.batches.append((count, time.perf_counter() - begin))


async def measure(checkpoint: Path | None, tokens: int, size: tuple[int, int], prompt: str) -> dict:
    settings = SamplingSettings(max_tokens=tokens, seed=0)
    app = TimedApp(checkpoint, settings)
    async with app.run_test(size=size) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        if app.conversation is None:
            raise SystemExit(f"app_speed: the model did not load from {checkpoint or 'the shipped checkpoint'}")
        app.query_one(PromptInput).text = prompt
        begin = time.perf_counter()
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        reply_s = time.perf_counter() - begin
        generated = len(app.conversation.chips) - len(app.conversation.tokenizer.encode(prompt).tokens)
    steps = sum(count for count, _ in app.batches)
    per_token = [seconds / count for count, seconds in app.batches]
    return {
        "first frame (s)": app.first_frame_s,
        "model loaded (s)": app.loaded_s,
        "tokens streamed": generated,
        "UI batches": len(app.batches),
        "UI time per token, mean (ms)": 1000 * sum(s for _, s in app.batches) / max(1, steps),
        "UI time per token, median (ms)": 1000 * statistics.median(per_token) if per_token else None,
        "UI time per batch, max (ms)": 1000 * max((s for _, s in app.batches), default=0.0),
        "reply wall time (s)": reply_s,
        "tokens/s end to end": generated / reply_s if reply_s else None,
        "peak RSS (MiB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint or run folder (default: the shipped model)")
    parser.add_argument("--tokens", type=int, default=200, help="tokens to stream (default 200)")
    parser.add_argument("--size", default="160x48", help="terminal size as WIDTHxHEIGHT (default 160x48)")
    parser.add_argument("--prompt", default="who was julius caesar?", help="prompt to send")
    args = parser.parse_args()
    try:
        width, height = (int(part) for part in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"invalid --size {args.size!r}; use WIDTHxHEIGHT, e.g. 160x48")
    results = asyncio.run(measure(args.checkpoint, args.tokens, (width, height), args.prompt))
    print(f"app_speed  checkpoint {args.checkpoint or 'shipped'}  terminal {width}x{height}  python {sys.version.split()[0]}")
    for name, value in results.items():
        if value is None:
            shown = "n/a"
        elif isinstance(value, float):
            shown = f"{value:.3f}"
        else:
            shown = str(value)
        print(f"  {name:<32}{shown:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
