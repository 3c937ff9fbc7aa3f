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
    """The user selected a token. `position` counts from the conversation's start; `from_inside`
    is True when the Inside view sent it (it has already moved there itself)."""

    def __init__(self, position: int, from_inside: bool = False) -> None:
        super().__init__()
        self.position = position
        self.from_inside = from_inside


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
