"""The Inside view: the model's forward pass for the current prompt, one stage at a time, with its real numbers."""

from __future__ import annotations

import logging

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.events import Click, Resize
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static
from textual.worker import get_current_worker

from rome_core.checkpoint import LoadedModel
from rome_core.errors import RomeError
from rome_core.explain import Explanation, PromptTrace, explain_trace, trace_prompt
from rome_core.tokenizer import Encoding
from rome_tui.explain_render import STAGE_META, STAGES, TOKEN_META, render_stage, stage_bar, token_strip
from rome_tui.messages import TokenSelected

log = logging.getLogger(__name__)

STAGE_KEYS = Binding.Group("Stage")
TOKEN_KEYS = Binding.Group("Token")


class InsideView(Widget, can_focus=True):
    """A stage-by-stage view of the forward pass over `update_prompt`'s text, for its selected token.

    The trace is computed in a thread worker, and a newer request cancels an older one. Selecting
    another token inside the view posts `TokenSelected` with its index in that text, so the rest
    of the app can follow.
    """

    BINDINGS = [
        Binding("p,left_square_bracket", "previous_stage", "Previous stage", key_display="p", group=STAGE_KEYS),
        Binding("n,right_square_bracket", "next_stage", "Next stage", key_display="n", group=STAGE_KEYS),
        Binding("comma", "previous_token", "Previous token", key_display=",", group=TOKEN_KEYS),
        Binding("full_stop", "next_token", "Next token", key_display=".", group=TOKEN_KEYS),
        Binding("home", "first_token", "First token", show=False),
        Binding("end", "last_token", "Last token", show=False),
        *(Binding(str(number), f"show_stage({number - 1})", STAGES[number - 1].title, show=False) for number in range(1, len(STAGES) + 1)),
        Binding("up", "scroll_body(-1)", "Scroll up", show=False),
        Binding("down", "scroll_body(1)", "Scroll down", show=False),
        Binding("pageup", "scroll_body(-10)", "Page up", show=False),
        Binding("pagedown", "scroll_body(10)", "Page down", show=False),
    ]

    stage: reactive[int] = reactive(0)
    top_k: int = 10

    def __init__(self, loaded: LoadedModel, **widget_kwargs) -> None:
        super().__init__(**widget_kwargs)
        self.loaded = loaded
        self.explanation: Explanation | None = None
        self._text: str | None = None
        self._encoding: Encoding | None = None
        self._position: int | None = None
        self._prompt_trace: PromptTrace | None = None
        self._ready = False  # set once the children exist

    def compose(self) -> ComposeResult:
        yield Static(id="inside-stages")
        yield Static(id="inside-tokens")
        yield Static(id="inside-status")
        with VerticalScroll(id="inside-body", can_focus=False):
            yield Static("Send a message to see what happens inside the model.", id="inside-stage")

    def on_mount(self) -> None:
        self._ready = True
        self._render_bar()
        if self._text is not None:
            self.update_prompt(self._text, self._position, self._encoding)

    # -- the contract with the app ---------------------------------------------------------------

    def update_prompt(self, text: str, position: int | None, encoding: Encoding | None = None) -> None:
        """Explain `text` for the token at `position` (None: the last token) in a worker, then show it.

        `encoding` gives the tokens the model read, when the caller has them (the chat does);
        without it the text is tokenized afresh.
        """
        self._text = text
        self._encoding = encoding
        self._position = position
        if not self._ready:
            return  # on_mount explains the latest request
        self._set_status("Computing the forward pass…", error=False)
        self._compute(text, position, encoding)

    @work(thread=True, exclusive=True, group="inside-explain")
    def _compute(self, text: str, position: int | None, encoding: Encoding | None) -> None:
        worker = get_current_worker()
        cached = self._prompt_trace
        try:
            if cached is not None and cached.typed == text and (encoding is None or cached.encoding == encoding):
                prompt = cached
            else:
                prompt = trace_prompt(self.loaded, text, encoding)
            explanation = explain_trace(self.loaded, prompt, position, self.top_k)
        except RomeError as error:
            log.info("inside view: cannot explain the prompt: %s", error)
            if not worker.is_cancelled:
                self.app.call_from_thread(self._set_status, str(error), True)
            return
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show, prompt, explanation)

    def _show(self, prompt: PromptTrace, explanation: Explanation) -> None:
        self._prompt_trace = prompt
        self.explanation = explanation
        self._set_status(explanation.note or "", error=False)
        self._render_all()

    # -- drawing ---------------------------------------------------------------------------------

    def _set_status(self, message: str, error: bool) -> None:
        status = self.query_one("#inside-status", Static)
        status.update(message)
        status.set_class(bool(message), "-visible")
        status.set_class(error, "-error")

    def _render_bar(self) -> None:
        self.query_one("#inside-stages", Static).update(stage_bar(self.stage, self.size.width or 80))

    def _render_all(self) -> None:
        self._render_bar()
        if self.explanation is None:
            return
        body = self.query_one("#inside-body", VerticalScroll)
        width = max(body.scrollable_content_region.width or self.size.width, 40)
        height = body.scrollable_content_region.height or None
        tokens = self.explanation.tokenization.tokens
        self.query_one("#inside-tokens", Static).update(token_strip(tokens, self.explanation.selected.index, width))
        self.query_one("#inside-stage", Static).update(render_stage(self.explanation, self.stage, width - 1, height))

    def watch_stage(self) -> None:
        if self.is_mounted:
            self._render_all()
            self.query_one("#inside-body", VerticalScroll).scroll_home(animate=False)

    def on_resize(self, event: Resize) -> None:
        self.call_after_refresh(self._render_all)

    # -- navigation ------------------------------------------------------------------------------

    def action_next_stage(self) -> None:
        self.stage = (self.stage + 1) % len(STAGES)

    def action_previous_stage(self) -> None:
        self.stage = (self.stage - 1) % len(STAGES)

    def action_show_stage(self, index: int) -> None:
        self.stage = index

    def action_scroll_body(self, lines: int) -> None:
        self.query_one("#inside-body", VerticalScroll).scroll_relative(y=lines, animate=False)

    def _select_token(self, index: int) -> None:
        if self.explanation is None or self._text is None:
            return
        tokens = self.explanation.tokenization.tokens
        index = max(tokens[0].index, min(index, tokens[-1].index))
        if index == self.explanation.selected.index:
            return
        self.post_message(TokenSelected(index, from_inside=True))
        self.update_prompt(self._text, index, self._encoding)

    def action_previous_token(self) -> None:
        if self.explanation is not None:
            self._select_token(self.explanation.selected.index - 1)

    def action_next_token(self) -> None:
        if self.explanation is not None:
            self._select_token(self.explanation.selected.index + 1)

    def action_first_token(self) -> None:
        if self.explanation is not None:
            self._select_token(self.explanation.tokenization.tokens[0].index)

    def action_last_token(self) -> None:
        if self.explanation is not None:
            self._select_token(self.explanation.tokenization.tokens[-1].index)

    def on_click(self, event: Click) -> None:
        """Switch stage or token when the click lands on a stage name or a token (their styles carry the target)."""
        meta = event.style.meta
        if STAGE_META in meta:
            event.stop()
            self.stage = int(meta[STAGE_META])
        elif TOKEN_META in meta:
            event.stop()
            self._select_token(int(meta[TOKEN_META]))
        self.focus()
