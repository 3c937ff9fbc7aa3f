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

    def on_resize(self) -> None:
        self._redraw()

    def set_model_status(self, status: str) -> None:
        self.model_status = status
        self._redraw()

    def set_settings(self, settings: SamplingSettings) -> None:
        self.settings = settings
        self._redraw()

    def _redraw(self) -> None:
        s = self.settings
        seed = "random" if s.seed is None else str(s.seed)
        top_k = s.top_k or "off"
        # Below 110 columns the settings take their short form, so the seed still fits.
        if self.size.width >= 110 or self.size.width == 0:
            settings = f"temp {s.temperature:g} · top-k {top_k} · top-p {s.top_p:g} · max {s.max_tokens} · seed {seed}"
            settings += " · [UNK] allowed" if s.allow_unknown else ""
            hint = "  F2 change"
        else:
            settings = f"temp {s.temperature:g} k {top_k} p {s.top_p:g} max {s.max_tokens} seed {seed}"
            settings += " +unk" if s.allow_unknown else ""
            hint = ""
        text = Text(settings, style="dim", no_wrap=True, overflow="ellipsis")
        text.append(hint, style="dim italic")
        room = self.size.width - 2 - len(text) - 2
        if room > 0:
            model = self.model_status if len(self.model_status) <= room else self.model_status[: max(0, room - 1)] + "…"
            text = Text.assemble((model, "bold"), "  ", text, no_wrap=True, overflow="ellipsis")
        self.update(text)
