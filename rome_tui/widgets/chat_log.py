"""The conversation pane: one widget per message, so a streaming reply re-renders only itself."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

# Longer messages show their first and last characters only; the model still reads all of it.
SHOWN_CHARACTERS = 4000


def clip(text: Text) -> Text:
    """Return `text` cut to SHOWN_CHARACTERS, keeping both ends and saying how much is left out."""
    if len(text) <= SHOWN_CHARACTERS:
        return text
    half = SHOWN_CHARACTERS // 2
    hidden = len(text) - 2 * half
    clipped = text[:half]
    clipped.append(f"\n… {hidden:,} characters not shown …\n", style="dim italic")
    clipped.append_text(text[-half:])
    return clipped


class MessageView(Static):
    """One message: a label line and its text."""

    def __init__(self, role: str, text: Text, note: str | None = None) -> None:
        super().__init__(classes=f"message {role}")
        self.role = role
        self._body = text
        self._note = note
        self._status = ""
        self._refresh_content()

    def _refresh_content(self) -> None:
        content = Text()
        content.append("you" if self.role == "user" else "romegpt", style="bold")
        if self._note:
            content.append(f"  {self._note}", style="dim italic")
        content.append("\n")
        content.append_text(clip(self._body))
        if self._status:
            content.append(f"\n{self._status}", style="dim italic")
        self.update(content)

    def append(self, piece: Text) -> None:
        self._body.append_text(piece)
        self._refresh_content()

    def set_status(self, status: str) -> None:
        self._status = status
        self._refresh_content()


class ChatLog(VerticalScroll, can_focus=False):
    """Messages top to bottom; follows the newest message while the view is at the bottom."""

    def add_message(self, role: str, text: Text, note: str | None = None) -> MessageView:
        view = MessageView(role, text, note)
        self.mount(view)
        self.call_after_refresh(self.scroll_end, animate=False)
        return view

    def add_note(self, note: str) -> None:
        self.mount(Static(Text(note, style="dim italic"), classes="note"))
        self.call_after_refresh(self.scroll_end, animate=False)

    def follow(self) -> None:
        """Keep the newest text in view after a message grew, unless the user scrolled up."""
        if self.scroll_y >= self.max_scroll_y - 2:
            self.call_after_refresh(self.scroll_end, animate=False)

    def clear(self) -> None:
        self.remove_children()
