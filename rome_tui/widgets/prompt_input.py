"""The prompt box: Enter sends, ctrl+j inserts a newline, pastes keep their newlines."""

from __future__ import annotations

from textual import events
from textual.widgets import TextArea

from rome_tui.messages import PromptSubmitted


class PromptInput(TextArea):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, soft_wrap=True, show_line_numbers=False, tab_behavior="focus")
        self.placeholder = "Type a message; Enter sends"

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.stop()
            event.prevent_default()
            self.post_message(PromptSubmitted(self.text))
            return
        if event.key == "ctrl+j":
            event.stop()
            event.prevent_default()
            self.insert("\n")
            return
        await super()._on_key(event)
