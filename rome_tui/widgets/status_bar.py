"""The line under the prompt box: which model is open and the sampling settings in use."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from rome_core.generate import SamplingSettings


class StatusBar(Static):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model_status = "loading the model…"
        self.settings = SamplingSettings()

    def on_mount(self) -> None:
        self._redraw()

    def set_model_status(self, status: str) -> None:
        self.model_status = status
        self._redraw()

    def set_settings(self, settings: SamplingSettings) -> None:
        self.settings = settings
        self._redraw()

    def _redraw(self) -> None:
        s = self.settings
        text = Text(self.model_status, style="bold", no_wrap=True, overflow="ellipsis")
        text.append("  ")
        seed = "random" if s.seed is None else str(s.seed)
        text.append(
            f"temp {s.temperature:g} · top-k {s.top_k or 'off'} · top-p {s.top_p:g} · max {s.max_tokens} · seed {seed}",
            style="dim",
        )
        text.append("  F2 change", style="dim italic")
        self.update(text)
