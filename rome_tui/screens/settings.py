"""The sampling settings modal (F2). Invalid values get a message under the form, never a crash."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label

from rome_core.errors import RomeError
from rome_core.generate import SamplingSettings

FIELDS = [
    ("temperature", "temperature", "0 picks the most likely token; higher is more random"),
    ("top_k", "top-k", "sample from the k most likely tokens; 0 turns it off"),
    ("top_p", "top-p", "sample from the smallest set with this much probability; 1 turns it off"),
    ("max_tokens", "max tokens", "stop a reply after this many tokens"),
    ("seed", "seed", "a whole number for repeatable replies; empty for random"),
]


def parse_settings(values: dict[str, str], allow_unknown: bool = False) -> SamplingSettings:
    """Build SamplingSettings from the form's strings; raises RomeError naming the bad value and the fix."""
    parsed: dict[str, float | int | bool | None] = {"allow_unknown": allow_unknown}
    for name, label, _ in FIELDS:
        raw = values[name].strip()
        if name == "seed" and raw == "":
            parsed[name] = None
            continue
        kind = float if name in ("temperature", "top_p") else int
        try:
            parsed[name] = kind(raw)
        except ValueError:
            expected = "a number" if kind is float else "a whole number"
            raise RomeError(f"invalid {label} {raw!r}; enter {expected}") from None
    return SamplingSettings(**parsed)


class SettingsScreen(ModalScreen[SamplingSettings | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, settings: SamplingSettings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="settings-dialog"):
            yield Label("Sampling settings", classes="dialog-title")
            with Grid(id="settings-grid"):
                for name, label, hint in FIELDS:
                    value = getattr(self.settings, name)
                    yield Label(label, markup=False)
                    if value is None:
                        shown = ""
                    elif isinstance(value, float):
                        shown = f"{value:g}"
                    else:
                        shown = str(value)
                    yield Input(shown, id=name, tooltip=hint)
            # Content and Text, not str: "[UNK]" would otherwise be read as markup.
            yield Checkbox(
                Content("let sampling pick [UNK]"), self.settings.allow_unknown, id="allow_unknown",
                tooltip=Text("off: [UNK] is never chosen (its probability is still shown)"), compact=True,
            )
            yield Label("", id="settings-error", classes="dialog-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply", variant="primary", id="apply")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self) -> None:
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss(None)

    def _apply(self) -> None:
        values = {name: self.query_one(f"#{name}", Input).value for name, _, _ in FIELDS}
        try:
            settings = parse_settings(values, self.query_one("#allow_unknown", Checkbox).value)
        except RomeError as error:
            self.query_one("#settings-error", Label).update(str(error))
            return
        self.dismiss(settings)

    def action_cancel(self) -> None:
        self.dismiss(None)
