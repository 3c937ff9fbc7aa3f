"""Train and validation loss against step, with the untrained-model line and resume markers."""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot

from rome_core.metrics import smoothed
from rome_tui.run_history import RunHistory

# Smoothing weights that F6 steps through: none, then heavier exponential moving averages of the train loss.
SMOOTHING_STEPS = (0.0, 0.6, 0.9, 0.99)


def step_ticks(left: float, right: float, count: int) -> list[int]:
    """Return at most `count` whole step numbers from `left` to `right`, spaced 1, 2 or 5 times a power of ten.

    The spacing is the smallest that keeps to `count` ticks, so at least one tick falls in the range.
    """
    count = max(1, count)
    power = 1
    while True:
        for factor in (1, 2, 5):
            spacing = power * factor
            ticks = list(range(math.ceil(left / spacing) * spacing, math.floor(right) + 1, spacing))
            if len(ticks) <= count:
                return ticks
        power *= 10


class LossChart(PlotextPlot):
    """Plots every recorded point of a RunHistory, the train loss optionally smoothed (never downsampled)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = RunHistory()
        self.vocab_size = 3000
        self.smoothing = 0.0

    def cycle_smoothing(self) -> float:
        """Move to the next smoothing weight of SMOOTHING_STEPS, redraw, and return it."""
        index = SMOOTHING_STEPS.index(self.smoothing) if self.smoothing in SMOOTHING_STEPS else -1
        self.smoothing = SMOOTHING_STEPS[(index + 1) % len(SMOOTHING_STEPS)]
        self.replot()
        return self.smoothing

    def show(self, history: RunHistory, vocab_size: int) -> None:
        self.history = history
        self.vocab_size = vocab_size
        self.replot()

    def on_resize(self) -> None:
        # The title and the number of ticks depend on the width.
        self.replot()

    def replot(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        history = self.history
        start_loss = math.log(self.vocab_size)
        values = f"train smoothed, EMA {self.smoothing:g}" if self.smoothing else "raw values"
        short = f", EMA {self.smoothing:g}" if self.smoothing else ""
        titles = [
            f"loss, {values} (red line: untrained model, ln({self.vocab_size}) = {start_loss:.2f}; magenta: resume)",
            f"loss, {values} (red: untrained, {start_loss:.2f}; magenta: resume)",
            f"loss{short} (red: untrained, {start_loss:.2f}; magenta: resume)",
            f"loss{short} (red: untrained {start_loss:.2f})",
        ]
        # plotext leaves out a title wider than the plot, so take the longest that fits.
        plt.title(next((title for title in titles if len(title) <= self.size.width - 2), titles[-1]))
        plt.xlabel("step")
        losses = history.train_losses + history.val_losses
        steps = history.train_steps + history.val_steps
        if history.train_steps:
            train = smoothed(history.train_losses, self.smoothing)
            label = f"train (EMA {self.smoothing:g})" if self.smoothing else "train"
            plt.plot(history.train_steps, train, label=label, color="cyan", marker="braille")
        if history.val_steps:
            plt.plot(history.val_steps, history.val_losses, label="validation", color="orange", marker="hd")
        right = max(steps) if steps else 1.0
        left = min(steps) if steps else 0.0
        if right == left:
            right = left + 1.0

        plt.hline(start_loss, color="red")
        for step in history.resumes:
            plt.vline(step, color="magenta")
        low = min([*losses, start_loss])
        high = max([*losses, start_loss])
        margin = max(0.05, (high - low) * 0.05)
        plt.ylim(max(0.0, low - margin), high + margin)
        plt.xlim(left, right)

        # Steps are whole numbers; plotext's own ticks would put fractions such as 12.5 on the axis.
        ticks = step_ticks(left, right, max(2, self.size.width // 10))
        plt.xticks(ticks, [str(tick) for tick in ticks])
        self.refresh()
