"""Messages the app's widgets and workers post, so no widget reaches into another."""

from __future__ import annotations

from textual.message import Message

from rome_core.checkpoint import LoadedModel


class ModelLoaded(Message):
    """The checkpoint finished loading in its worker."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        self.loaded = loaded


class ModelFailed(Message):
    """The checkpoint could not be loaded; `error` is the one-line RomeError message."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class StepsReady(Message):
    """The generation worker queued new steps; the app drains the whole queue in one UI update."""


class TokenSelected(Message):
    """The user selected a token. `position` counts from the conversation's start, or from the
    context window's start when `in_window` is True (the Inside view only sees the window)."""

    def __init__(self, position: int, in_window: bool = False) -> None:
        super().__init__()
        self.position = position
        self.in_window = in_window


class PromptSubmitted(Message):
    """The user sent `text` from the prompt box."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ReplyFinished(Message):
    """The generation worker ended: `reason` is the generator's finish_reason, `error` a RomeError message."""

    def __init__(self, reason: str | None, error: str | None = None) -> None:
        super().__init__()
        self.reason = reason
        self.error = error
