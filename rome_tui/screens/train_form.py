"""The form that starts a training run in the background (ctrl+n)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from rome_core.config import PRESETS


@dataclass(frozen=True)
class TrainRequest:
    data: Path
    out: Path
    preset: str
    steps: int


def parse_request(data: str, out: str, preset: str, steps: str) -> TrainRequest | str:
    """Return a TrainRequest, or a one-line message naming the invalid field and the fix."""
    data_path = Path(data.strip()).expanduser()
    if not data.strip() or not data_path.exists():
        return f"data folder {data.strip()!r} not found; enter a folder of .txt files or a text file"
    if not out.strip():
        return "enter an out folder for checkpoints and metrics.jsonl"
    if preset not in PRESETS:
        return f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
    try:
        step_count = int(steps.strip())
    except ValueError:
        return f"invalid steps {steps.strip()!r}; enter a whole number, e.g. 200"
    if step_count < 1:
        return f"invalid steps {step_count}; use 1 or more"
    return TrainRequest(data_path, Path(out.strip()).expanduser(), preset, step_count)


class TrainFormScreen(ModalScreen[TrainRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="train-dialog"):
            yield Label("Start a training run", classes="dialog-title")
            with Grid(id="train-grid"):
                yield Label("data folder")
                yield Input(placeholder="folder of .txt files", id="train-data")
                yield Label("out folder")
                yield Input(placeholder="run folder to create", id="train-out")
                yield Label("preset")
                yield Select([(name, name) for name in PRESETS], value="tiny", allow_blank=False, id="train-preset")
                yield Label("steps")
                yield Input("200", id="train-steps")
            yield Label("", id="train-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", variant="primary", id="start")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self) -> None:
        self._start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self._start()
        else:
            self.dismiss(None)

    def _start(self) -> None:
        result = parse_request(
            self.query_one("#train-data", Input).value,
            self.query_one("#train-out", Input).value,
            str(self.query_one("#train-preset", Select).value),
            self.query_one("#train-steps", Input).value,
        )
        if isinstance(result, str):
            self.query_one("#train-error", Label).update(result)
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
