"""The screen shown instead of a traceback when the checkpoint cannot be opened."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Static


class ErrorScreen(Screen):
    BINDINGS = [Binding("q,escape", "app.quit", "Quit")]

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error

    def compose(self) -> ComposeResult:
        message = Text("RomeGPT cannot open the model\n\n", style="bold red")
        message.append(self.error)
        message.append("\n\nHow to fix it\n", style="bold")
        message.append(
            "• Pass a checkpoint or run folder made by `romegpt train`:  romegpt --checkpoint PATH\n"
            "• A checkpoint folder holds config.json, model.safetensors and tokenizer.json.\n"
            "• Check the folder with:  romegpt info PATH\n\n"
        )
        message.append("Press q to quit.", style="dim")
        with Vertical(id="error-box"):
            yield Static(message, id="error-message")
        yield Footer()
