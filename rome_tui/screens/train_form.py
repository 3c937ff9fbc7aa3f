"""The form that starts a training run in the background (ctrl+n)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select

from rome_core.config import PRESETS
from rome_core.train import LATEST, STATE_FILE


@dataclass(frozen=True)
class TrainRequest:
    data: Path
    out: Path
    preset: str
    steps: int
    resume: bool = False


def resumed_step(out: Path) -> int | None:
    """Return the step saved in a run folder's latest/trainer_state.json, or None when it has none."""
    try:
        step = json.loads((out / LATEST / STATE_FILE).read_text(encoding="utf-8")).get("step")
    except (OSError, ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None


def parse_request(data: str, out: str, preset: str, steps: str, resume: bool = False) -> TrainRequest | str:
    """Return a TrainRequest, or a one-line message naming the invalid field and the fix."""
    data_path = Path(data.strip()).expanduser()
    if not data.strip() or not data_path.exists():
        return f"data folder {data.strip()!r} not found; enter a folder of .txt files or a text file"
    if not out.strip():
        return "enter an out folder for checkpoints and metrics.jsonl"
    out_path = Path(out.strip()).expanduser()
    if preset not in PRESETS:
        return f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
    try:
        step_count = int(steps.strip())
    except ValueError:
        return f"invalid steps {steps.strip()!r}; enter a whole number, e.g. 200"
    if step_count < 1:
        return f"invalid steps {step_count}; use 1 or more"
    if not resume and (out_path / LATEST).exists():
        return f"out folder {out.strip()} already holds a training run; tick resume to continue it, or choose another folder"
    if resume:
        saved = resumed_step(out_path)
        if saved is None:
            return f"nothing to resume in {out.strip()} (no {LATEST}/{STATE_FILE}); untick resume to start a new run"
        if step_count <= saved:
            return f"the run in {out.strip()} is already at step {saved}; enter more steps than that to train further"
    return TrainRequest(data_path, out_path, preset, step_count, resume)


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
                yield Label("resume")
                yield Checkbox("continue the run in out folder", id="train-resume", tooltip="passes --resume; the run keeps its own preset")
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
            self.query_one("#train-resume", Checkbox).value,
        )
        if isinstance(result, str):
            self.query_one("#train-error", Label).update(result)
            return
        self.dismiss(result)

    def action_cancel(self) -> None:
        self.dismiss(None)
