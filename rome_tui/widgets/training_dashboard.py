"""The Training tab: a run's loss chart, its latest numbers, the probe prompt's top-5 and the latest sample."""

from __future__ import annotations

import logging
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from rome_core.metrics import MetricsReader
from rome_tui.run_history import RunHistory, find_metrics, vocab_size_of
from rome_tui.widgets.loss_chart import LossChart

log = logging.getLogger(__name__)

# The file is read at most this often, however fast the run writes, so a fast run cannot flood the UI.
POLL_SECONDS = 0.5


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class TrainingDashboard(Widget):
    """Follows one run folder's metrics.jsonl as it grows."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.folder: Path | None = None
        self.label = ""
        self.reader: MetricsReader | None = None
        self.history = RunHistory()
        self.vocab_size = 3000
        self.process_status = ""
        # False once a training process started from the app has exited: the run's ETA no longer applies.
        self.process_running: bool | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="run-header"):
            yield Static(id="run-title")
            yield Static(id="run-keys")
        with Horizontal(id="run-main"):
            yield LossChart(id="loss-chart")
            with Vertical(id="run-side"):
                yield Static(id="run-stats")
                yield Static(id="run-probe")
        with VerticalScroll(id="run-sample-box"):
            yield Static(id="run-sample")

    def on_mount(self) -> None:
        self.set_interval(POLL_SECONDS, self.poll)
        self._redraw()

    def follow(self, folder: Path, label: str, vocab_size: int | None = None) -> None:
        """Start following the metrics of run (or checkpoint) folder `folder`; `label` names it on screen."""
        self.folder = Path(folder)
        self.label = label
        self.reader = MetricsReader(find_metrics(self.folder))
        self.history = RunHistory()
        self.process_running = None
        self.vocab_size = vocab_size or vocab_size_of(self.folder)
        log.info("following %s", self.reader.path)
        self.poll(force=True)

    def set_process_status(self, status: str, running: bool) -> None:
        """Show the state of the training process the app started; `running` False clears the ETA."""
        self.process_status = status
        self.process_running = running
        self._redraw()

    def poll(self, force: bool = False) -> None:
        """Read new complete lines and redraw if anything arrived."""
        if self.reader is None:
            return
        try:
            records = self.reader.read_new()
        except OSError as error:
            log.warning("cannot read %s: %s", self.reader.path, error)
            records = []
        for record in records:
            self.history.add(record)
        if records or force:
            self._redraw()

    def _redraw_title(self) -> None:
        title = Text("Training  ", style="bold")
        if self.reader is None:
            title.append("no run open", style="dim")
        else:
            title.append(self.label)
            if not self.reader.path.is_file():
                title.append(" · no metrics: this folder has no metrics.jsonl; ctrl+o opens a run folder", style="yellow")
            elif self.history.records == 0:
                title.append(" · no metrics yet: metrics.jsonl is empty", style="yellow")
            elif self.history.ended:
                title.append(" · finished", style="green")
        if self.process_status:
            title.append(f" · {self.process_status}", style="italic")
        self.query_one("#run-title", Static).update(title)
        if self.size.width >= 110:
            keys = "ctrl+o open run · ctrl+n train · F8 stop · F6 smoothing"
        else:
            keys = "^o open · ^n train · F8 stop · F6 smooth"
        self.query_one("#run-keys", Static).update(Text(keys, style="dim"))

    def on_resize(self) -> None:
        self._redraw_title()

    def cycle_smoothing(self) -> float:
        """Step the loss chart's smoothing of the train loss (off, 0.6, 0.9, 0.99) and return the new weight."""
        return self.query_one(LossChart).cycle_smoothing()

    def _eta(self) -> str:
        if self.history.ended:
            return "done"
        if self.process_running is False:
            return "-"
        return duration(self.history.eta_s)

    def _redraw(self) -> None:
        self._redraw_title()
        history = self.history
        self.query_one(LossChart).show(history, history.vocab_size or self.vocab_size)

        stats = Text()
        rows = [
            ("step", f"{history.step if history.step is not None else '?'}/{history.total_steps or '?'}"),
            ("tokens seen", f"{history.tokens:,}" if history.tokens is not None else "?"),
            ("tokens/s", f"{history.tokens_per_s:,.0f}" if history.tokens_per_s is not None else "?"),
            ("lr", f"{history.lr:.2e}" if history.lr is not None else "?"),
            ("ETA", self._eta()),
            ("train loss", f"{history.train_losses[-1]:.4f}" if history.train_losses else "?"),
            ("val loss", f"{history.val_losses[-1]:.4f}" if history.val_losses else "?"),
        ]
        for name, value in rows:
            stats.append(f"{name:<12}", style="dim")
            stats.append(f"{value}\n")
        if history.skipped:
            stats.append(f"null/NaN losses: {history.skipped}\n", style="yellow")
        if history.resumes:
            stats.append(f"resumed at {', '.join(str(int(s)) for s in history.resumes)}\n", style="magenta")
        self.query_one("#run-stats", Static).update(stats)

        probe = Text("probe ", style="bold")
        if history.probe_prompt is not None:
            probe.append(repr(history.probe_prompt), style="italic")
            probe.append("\n")
            for token, prob in history.probe:
                probe.append(f"{token!r:<14}", style="")
                probe.append(f"{prob:6.1%}\n", style="dim")
        else:
            probe.append("no eval yet", style="dim")
        self.query_one("#run-probe", Static).update(probe)

        sample = Text("latest sample  ", style="bold")
        sample.append(history.sample if history.sample is not None else "none yet", style="" if history.sample else "dim")
        self.query_one("#run-sample", Static).update(sample)
