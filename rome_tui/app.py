"""RomeGPT's Textual app: chat with the model and see what it computed for every token."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import replace
from pathlib import Path

from rich.style import Style
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical, VerticalScroll
from textual.logging import TextualHandler
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from rome_core.checkpoint import DEFAULT_CHECKPOINT, LoadedModel, load_checkpoint
from rome_core.errors import RomeError
from rome_core.generate import Generator, SamplingSettings, Step
from rome_core.trace import trace_to_dict
from rome_tui.commands import RomeCommands
from rome_tui.conversation import Conversation, Turn
from rome_tui.messages import ModelFailed, ModelLoaded, PromptSubmitted, ReplyFinished, StepsReady, TokenSelected
from rome_tui.run_history import find_metrics
from rome_tui.screens.confirm import ConfirmScreen
from rome_tui.screens.error import ErrorScreen
from rome_tui.screens.help import HelpScreen
from rome_tui.screens.path_prompt import PathPrompt
from rome_tui.screens.settings import SettingsScreen
from rome_tui.screens.train_form import TrainFormScreen, TrainRequest
from rome_tui.training_process import TrainingProcess
from rome_tui.widgets.attention_heatmap import AttentionHeatmap
from rome_tui.widgets.chat_log import ChatLog, MessageView
from rome_tui.widgets.inside import InsideView
from rome_tui.widgets.prompt_input import PromptInput
from rome_tui.widgets.status_bar import StatusBar
from rome_tui.widgets.token_strip import TokenStrip
from rome_tui.widgets.topk_panel import TopKPanel
from rome_tui.widgets.training_dashboard import TrainingDashboard

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
UNKNOWN_TEXT = Style(color="#ff6060", bold=True, underline=True)
# Maximum wait between inspector redraws while a reply streams (10 redraws a second look live).
INSPECTOR_INTERVAL_S = 0.1
FINISH_NOTES = {
    "end_of_text": "end of text",
    "max_tokens": "stopped at the max tokens setting (F2 to change)",
    "cancelled": "stopped",
}
# `romegpt` exits with this status when the checkpoint could not be opened (the CLI's code for a RomeError).
EXIT_MODEL_FAILED = 2
# Actions that still work on the error screen; everything else needs a loaded model.
ERROR_SCREEN_ACTIONS = {"quit", "help_quit"}


def model_label(path: Path) -> str:
    """Return a short name for a checkpoint folder: `run/latest` for run checkpoints, else the folder name."""
    return f"{path.parent.name}/{path.name}" if path.name in ("latest", "best") or path.name.endswith(".old") else path.name


class RomeApp(App):
    """Chat, Training and Inside tabs around one loaded checkpoint."""

    TITLE = "RomeGPT"
    CSS_PATH = [HERE / "app.tcss", HERE / "inside.tcss"]
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    COMMANDS = App.COMMANDS | {RomeCommands}
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", key_display="F1"),
        Binding("f2", "settings", "Settings", key_display="F2"),
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+t", "next_tab", "Next tab"),
        Binding("f3", "save_conversation", "Save", show=False),
        Binding("f4", "copy_conversation", "Copy", show=False),
        Binding("f5", "export_trace", "Export trace", show=False),
        Binding("ctrl+l", "clear", "Clear conversation", show=False),
        Binding("ctrl+o", "open_run", "Open run", show=False),
        Binding("ctrl+n", "start_training", "Start training", show=False),
        Binding("f8", "stop_training", "Stop training", show=False),
        Binding("f6", "smoothing", "Loss smoothing", show=False),
    ]

    def __init__(self, checkpoint: Path | None = None, settings: SamplingSettings | None = None) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.settings = settings or SamplingSettings()
        self.loaded: LoadedModel | None = None
        self.generator: Generator | None = None
        self.conversation: Conversation | None = None
        self.training: TrainingProcess | None = None
        self._training_stop_requested = False
        self.model_failed = False
        self.run_opened = False
        self._pending: deque[Step] = deque()
        self._pending_lock = threading.Lock()
        self._generating = False
        self._stop_requested = False
        self._queued_message: str | None = None
        self._reply_view: MessageView | None = None
        self._reply_settings = self.settings
        self._follow = True
        self._selected: int | None = None
        self._inspector_drawn_at = 0.0
        self._inspector_due = False

    # -- layout ------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with TabbedContent(id="tabs", initial="chat"):
            with TabPane("Chat", id="chat"):
                with Horizontal(id="chat-layout"):
                    with Vertical(id="conversation"):
                        yield ChatLog(id="chat-log")
                        yield PromptInput(id="prompt")
                    with Vertical(id="inspector"):
                        yield Static(id="strip-title")
                        with VerticalScroll(id="strip-scroll", can_focus=False):
                            yield TokenStrip(id="token-strip")
                        with Container(id="panels"):
                            yield AttentionHeatmap(id="heatmap")
                            yield TopKPanel(id="topk")
                yield StatusBar(id="status-bar")
            with TabPane("Training", id="training"):
                yield TrainingDashboard(id="dashboard")
            with TabPane("Inside", id="inside"):
                yield Static("Loading the model…", id="inside-placeholder")
        yield Footer()

    def on_mount(self) -> None:
        path = self.checkpoint or DEFAULT_CHECKPOINT
        self.query_one(StatusBar).set_model_status(f"loading {model_label(Path(path))}…")
        self.query_one(StatusBar).set_settings(self.settings)
        self._update_strip_title()
        self.query_one(PromptInput).focus()
        self.set_interval(1.0, self._check_training)
        self.load_model()

    # -- loading -----------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="load")
    def load_model(self) -> None:
        try:
            loaded = load_checkpoint(self.checkpoint)
        except RomeError as error:
            self.post_message(ModelFailed(str(error)))
            return
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            log.exception("loading %s failed", self.checkpoint)
            self.post_message(ModelFailed(f"{self.checkpoint}: cannot load the checkpoint ({type(error).__name__}: {error})"))
            return
        self.post_message(ModelLoaded(loaded))

    def on_model_failed(self, message: ModelFailed) -> None:
        log.error("cannot open the model: %s", message.error)
        self.model_failed = True
        self.push_screen(ErrorScreen(message.error))
        self.refresh_bindings()

    def on_model_loaded(self, message: ModelLoaded) -> None:
        loaded = message.loaded
        self.loaded = loaded
        config = loaded.model.config
        self.generator = Generator(loaded.model, loaded.tokenizer)
        self.conversation = Conversation(loaded.tokenizer, config.n_layers, config.context_length)
        count = loaded.model.num_parameters()
        size = f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.0f}k"
        self.query_one(StatusBar).set_model_status(f"{model_label(loaded.path)} · {size} params")
        self._refresh_inspector()
        pane = self.query_one("#inside", TabPane)
        self.query_one("#inside-placeholder").remove()
        pane.mount(InsideView(loaded, id="inside-view"))
        if not self.run_opened:
            self.query_one(TrainingDashboard).follow(loaded.path, f"{model_label(loaded.path)}: training metrics", loaded.tokenizer.vocab_size)
        if self._queued_message is not None:
            text, self._queued_message = self._queued_message, None
            self._send(text)

    # -- chat --------------------------------------------------------------------------------------

    def on_prompt_submitted(self, message: PromptSubmitted) -> None:
        prompt = self.query_one(PromptInput)
        text = message.text
        if not text.strip():
            self.notify("Type a message first.", severity="warning")
            return
        if self.conversation is None:
            self._queued_message = text
            prompt.clear()
            self.notify("The model is still loading; your message is sent when it is ready.")
            return
        if self._generating:
            if not self._stop_requested:
                self.notify("RomeGPT is still replying. Press Escape to stop it, then send.", severity="warning")
                return
            self._queued_message = text
            prompt.clear()
            return
        prompt.clear()
        prompt.focus()
        self._send(text)

    def _send(self, text: str) -> None:
        conversation = self.conversation
        assert conversation is not None and self.generator is not None
        chat = self.query_one(ChatLog)
        turn = conversation.add_user_message(text)
        note = "lowercased: the model only knows lowercase" if turn.lowercased else None
        chat.add_message("user", self._user_text(turn), note)
        if conversation.window_start > 0:
            chat.add_note(
                f"The conversation is {len(conversation.chips):,} tokens long, more than the model's "
                f"{conversation.context_length}-token context: it reads only the last {conversation.context_length} "
                f"(tokens {conversation.window_start:,}–{len(conversation.chips) - 1:,})."
            )
        conversation.start_reply()
        self._reply_view = chat.add_message("model", Text())
        self._reply_settings = self.settings
        self._follow = True
        self._selected = None
        self._refresh_inspector()
        self._update_inside(None)
        self._generating = True
        self._stop_requested = False
        self.generate(conversation.ids, self.settings)

    def _user_text(self, turn: Turn) -> Text:
        """Build the message as the model reads it: lowercased, with characters that became [UNK] marked."""
        assert self.conversation is not None
        text = Text()
        chips = self.conversation.chips[turn.start : turn.end]
        skip = len("\n\n") if turn.start > 0 else 0
        for chip in chips:
            source = chip.source
            if skip:
                cut = min(skip, len(source))
                source, skip = source[cut:], skip - cut
            text.append(source, style=UNKNOWN_TEXT if chip.unknown else None)
        return text

    @work(thread=True, group="generate")
    def generate(self, ids: list[int], settings: SamplingSettings) -> None:
        """Run the synchronous generator; steps go to a queue the UI drains in batches."""
        worker = get_current_worker()
        generator = self.generator
        assert generator is not None
        reason = error = None
        try:
            for step in generator.stream(ids, settings, trace=True, should_stop=lambda: self._stop_requested or worker.is_cancelled):
                with self._pending_lock:
                    self._pending.append(step)
                    first = len(self._pending) == 1
                if first:
                    self.post_message(StepsReady())
            reason = generator.finish_reason
        except RomeError as failure:
            error = str(failure)
        self.post_message(ReplyFinished(reason, error))

    def on_steps_ready(self, message: StepsReady) -> None:
        self._drain_steps()

    def _drain_steps(self) -> None:
        with self._pending_lock:
            steps = list(self._pending)
            self._pending.clear()
        if not steps or self.conversation is None:
            return
        piece = Text()
        for step in steps:
            self.conversation.add_step(step, self._reply_settings)
            style = UNKNOWN_TEXT if step.token.id == self.conversation.tokenizer.unk_id else None
            piece.append(step.token.text, style=style)
        if self._reply_view is not None:
            self._reply_view.append(piece)
            self.query_one(ChatLog).follow()
        self._schedule_inspector_refresh()

    def _schedule_inspector_refresh(self, force: bool = False) -> None:
        """Redraw the inspector panels at most every INSPECTOR_INTERVAL_S while a reply streams.

        Redrawing the token strip, heatmap and top-k panel takes the main thread (and the GIL)
        for several milliseconds, so doing it for every token slowed the generator thread down.
        """
        now = time.monotonic()
        if force or now - self._inspector_drawn_at >= INSPECTOR_INTERVAL_S:
            self._inspector_drawn_at = now
            self._inspector_due = False
            self._refresh_inspector()
        elif not self._inspector_due:
            self._inspector_due = True
            self.set_timer(INSPECTOR_INTERVAL_S - (now - self._inspector_drawn_at), self._schedule_inspector_refresh)

    def on_reply_finished(self, message: ReplyFinished) -> None:
        self._drain_steps()
        self._schedule_inspector_refresh(force=True)
        self._generating = False
        conversation = self.conversation
        if conversation is not None and conversation.turns:
            conversation.turns[-1].finish_reason = message.reason
        notes = []
        if message.error:
            notes.append(message.error)
        elif message.reason:
            notes.append(FINISH_NOTES.get(message.reason, message.reason))
        if conversation is not None and conversation.slid:
            notes.append(f"context full: the window slid, the model now reads tokens {conversation.window_start:,} onwards")
        if self._reply_view is not None:
            self._reply_view.set_status(" · ".join(notes))
        # The Inside view explained the prompt alone when the message was sent; now the reply is part of the window.
        self._update_inside(None if self._follow else self._selected)
        if self._queued_message is not None:
            text, self._queued_message = self._queued_message, None
            self._send(text)

    def action_stop(self) -> None:
        """Stop the reply being generated (if any) and give the message box the focus again."""
        if self._generating and not self._stop_requested:
            self._stop_requested = True
            if self._reply_view is not None:
                self._reply_view.set_status("stopping…")
        self.focus_tab_widget()

    def action_clear(self) -> None:
        if self._generating or self.conversation is None:
            self.notify("Wait for the reply to finish (or press Escape) before clearing.", severity="warning")
            return
        self.conversation.clear()
        self.query_one(ChatLog).clear()
        self._selected = None
        self._refresh_inspector()

    # -- inspector ---------------------------------------------------------------------------------

    def _selected_position(self) -> int | None:
        conversation = self.conversation
        if conversation is None or not conversation.chips:
            return None
        if self._follow or self._selected is None:
            return len(conversation.chips) - 1
        return self._selected

    def _update_strip_title(self) -> None:
        # Below the wide breakpoint the inspector is about 47 columns, so the title takes its short form.
        wide = self.size.width >= 110
        title = Text("Tokens ", style="bold")
        conversation = self.conversation
        if conversation is not None and conversation.chips:
            count = len(conversation.chips)
            title.append(f"{conversation.window_start:,}–{count - 1:,}")
            if wide:
                title.append(f" of {count:,}")
            if conversation.window_start:
                title.append(" (window slid)" if wide else " (slid)", style="yellow")
        title.append("  ", style="dim")
        title.append(" prompt ", style="#dbe9ff on #1f3a5f")
        title.append(" ")
        title.append(" reply ", style="#dcffe4 on #1e5631")
        title.append(" ")
        title.append(" [UNK] ", style="bold #ffffff on #a01818")
        title.append("  Tab/click, ←→" if wide else "  Tab ←→", style="dim")
        self.query_one("#strip-title", Static).update(title)

    def on_resize(self) -> None:
        if not self.model_failed:
            self._update_strip_title()

    def _refresh_inspector(self) -> None:
        conversation = self.conversation
        if conversation is None or self.loaded is None:
            return
        config = self.loaded.model.config
        selected = self._selected_position()
        strip = self.query_one(TokenStrip)
        strip.show_chips(conversation.chips[conversation.window_start :], conversation.window_start)
        strip.set_reactive(TokenStrip.selected, selected)
        strip.call_after_refresh(strip.scroll_to_selected)
        self.query_one(AttentionHeatmap).show(conversation, config.n_layers, config.n_heads, selected)
        self.query_one(TopKPanel).show(conversation, selected)
        self._update_strip_title()

    def on_token_selected(self, message: TokenSelected) -> None:
        conversation = self.conversation
        if conversation is None or not conversation.chips:
            return
        from_inside = message.from_inside
        position = max(conversation.window_start, min(message.position, len(conversation.chips) - 1))
        self._selected = position
        self._follow = position == len(conversation.chips) - 1 and self._generating
        self._refresh_inspector()
        if not from_inside:
            self._update_inside(position)

    def _update_inside(self, position: int | None) -> None:
        conversation = self.conversation
        views = self.query(InsideView)
        if conversation is None or not views:
            return
        # Pass the whole conversation as the chat's own tokens: a reply generated token by token may
        # split words in ways a fresh tokenization would not, and positions must match the strip.
        # The Inside view reads the last context-length tokens, as the next step would.
        if position is not None:
            position = max(position, len(conversation.chips) - conversation.context_length)
        views.first().update_prompt(conversation.text_from(), position, conversation.encoding_from())

    def action_layer(self, delta: int) -> None:
        self.query_one(AttentionHeatmap).cycle_layer(delta)

    def action_head(self, delta: int) -> None:
        self.query_one(AttentionHeatmap).cycle_head(delta)

    def action_average(self) -> None:
        self.query_one(AttentionHeatmap).toggle_average()

    # -- focus, modals, bindings ------------------------------------------------------------------

    def focus_tab_widget(self) -> None:
        """Focus the active tab's main widget: the message box on Chat, the stage view on Inside."""
        if self.model_failed or isinstance(self.screen, ModalScreen):
            return
        active = self.query_one(TabbedContent).active
        if active == "chat":
            self.query_one(PromptInput).focus()
        elif active == "inside":
            views = self.query(InsideView)
            if views:
                views.first().focus()

    def open_modal(self, screen: Screen, callback=None) -> None:
        """Push a modal screen; when it closes, run `callback` with its result and restore the tab's focus."""

        def closed(result) -> None:
            if callback is not None:
                callback(result)
            self.call_after_refresh(self.focus_tab_widget)

        self.push_screen(screen, closed)

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_bindings()
        self.call_after_refresh(self.focus_tab_widget)
        if event.pane.id == "chat" and not self.model_failed:
            # A token chosen on the Inside tab could not scroll the hidden strip; do it now.
            self.call_after_refresh(self.query_one(TokenStrip).scroll_to_selected)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide and disable actions that do nothing where the user is (error screen, other tabs)."""
        if self.model_failed:
            return action in ERROR_SCREEN_ACTIONS
        if action == "stop":
            tabs = self.query(TabbedContent)
            return bool(tabs) and tabs.first().active == "chat"
        return True

    # -- settings, help, tabs ----------------------------------------------------------------------

    def action_settings(self) -> None:
        def apply(settings: SamplingSettings | None) -> None:
            if settings is not None:
                self.settings = settings
                self.query_one(StatusBar).set_settings(settings)

        self.open_modal(SettingsScreen(self.settings), apply)

    def set_sampling(self, **changes) -> None:
        """Change some sampling settings (command palette entries)."""
        try:
            self.settings = replace(self.settings, **changes)
        except RomeError as error:
            self.notify(str(error), severity="error")
            return
        self.query_one(StatusBar).set_settings(self.settings)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.open_modal(HelpScreen())

    def show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def run_inside(self, action: str, *arguments: int) -> None:
        """Show the Inside tab and run its view's `action_<action>` (command palette entries)."""
        views = self.query(InsideView)
        if not views:
            self.notify("The Inside view appears once the model has loaded.", severity="warning")
            return
        self.show_tab("inside")
        getattr(views.first(), f"action_{action}")(*arguments)

    def action_next_tab(self) -> None:
        order = ["chat", "training", "inside"]
        tabs = self.query_one(TabbedContent)
        tabs.active = order[(order.index(tabs.active) + 1) % len(order)] if tabs.active in order else "chat"

    # -- saving and exporting ----------------------------------------------------------------------

    def action_copy_conversation(self) -> None:
        if self.conversation is None or not self.conversation.turns:
            self.notify("Nothing to copy yet.", severity="warning")
            return
        self.copy_to_clipboard(self.conversation.transcript())
        # Textual sends the text as an OSC 52 escape sequence, which some terminals (and tmux
        # without set-clipboard) ignore, so the message cannot promise more.
        self.notify("Conversation sent to the terminal's clipboard (OSC 52); if nothing arrives, F3 saves it to a file.")

    def action_save_conversation(self) -> None:
        if self.conversation is None or not self.conversation.turns:
            self.notify("Nothing to save yet.", severity="warning")
            return

        def save(path: str | None) -> None:
            if path is None or self.conversation is None:
                return
            target = Path(path).expanduser().absolute()
            try:
                target.write_text(self.conversation.transcript(), encoding="utf-8")
            except OSError as error:
                self.notify(f"Cannot save to {target}: {error.strerror or error}", severity="error")
                return
            self.notify(f"Conversation saved to {target}.")

        self.open_modal(PathPrompt("Save the conversation to", "romegpt-conversation.txt", "Save"), save)

    def action_export_trace(self) -> None:
        if self.conversation is None or self.conversation.trace.length == 0:
            self.notify("No trace yet: send a message first.", severity="warning")
            return
        if self._generating:
            self.notify("Wait for the reply to finish (or press Escape) before exporting.", severity="warning")
            return

        def export(path: str | None) -> None:
            if path is not None:
                self.export_trace(Path(path).expanduser().absolute())

        self.open_modal(PathPrompt("Export the trace as JSON to", "romegpt-trace.json", "Export"), export)

    def trace_document(self) -> dict:
        """Build the current window's trace as a JSON-ready dict, with token texts beside the ids."""
        conversation = self.conversation
        assert conversation is not None and self.loaded is not None
        data = trace_to_dict(conversation.trace)
        tokenizer = conversation.tokenizer
        start = conversation.trace.window_start
        chips = conversation.chips
        data["checkpoint"] = str(self.loaded.path)
        data["tokens"] = [
            {"position": start + i, "id": chip.id, "text": chip.text, "source": chip.source, "generated": chip.generated}
            for i, chip in enumerate(chips[start : start + len(data["token_ids"])])
        ]
        data["top_k"] = [[{"id": i, "text": tokenizer.id_to_token(i), "prob": p} for i, p in row] for row in data["top_k"]]
        data["attention_layout"] = "attention[layer][head][query][key], keys 0..query"
        return data

    @work(thread=True, group="export")
    def export_trace(self, path: Path) -> None:
        try:
            document = self.trace_document()
            # Write beside the target and rename, so a reader never sees a half-written file.
            partial = path.with_name(f".{path.name}.partial")
            with open(partial, "w", encoding="utf-8") as handle:
                json.dump(document, handle)
            os.replace(partial, path)
        except OSError as error:
            self.call_from_thread(self.notify, f"Cannot export to {path}: {error.strerror or error}", severity="error")
            return
        self.call_from_thread(self.notify, f"Trace exported to {path}.")

    # -- training ----------------------------------------------------------------------------------

    def action_open_run(self) -> None:
        def open_run(path: str | None) -> None:
            if path is None:
                return
            folder = Path(path).expanduser()
            if not folder.exists():
                self.notify(f"Run folder {path} not found; enter a folder made by `romegpt train`.", severity="error")
                return
            if not find_metrics(folder).is_file():
                # Keep following the current run, so its chart stays on screen.
                self.notify(f"No metrics.jsonl in {folder}; choose a run folder made by `romegpt train`.", severity="error")
                return
            self.open_run(folder)

        self.open_modal(PathPrompt("Open a run folder (follows its metrics.jsonl)", "", "Open"), open_run)

    def open_run(self, folder: Path, label: str | None = None) -> None:
        self.run_opened = True
        self.query_one(TrainingDashboard).follow(folder, label or folder.name)
        self.show_tab("training")

    def action_start_training(self) -> None:
        if self.training is not None and self.training.returncode is None:
            self.notify("A training run is already going; F8 stops it.", severity="warning")
            return

        def start(request: TrainRequest | None) -> None:
            if request is None:
                return
            try:
                self.training = TrainingProcess(request.data, request.out, request.preset, request.steps, request.resume)
            except OSError as error:
                self.notify(f"Cannot start training: {error}", severity="error")
                return
            self._training_stop_requested = False
            kind = "resumed" if request.resume else request.preset
            self.open_run(request.out, f"{request.out.name} ({kind}, {request.steps} steps)")
            self.query_one(TrainingDashboard).set_process_status(f"training (process {self.training.pid})", running=True)

        self.open_modal(TrainFormScreen(), start)

    def action_smoothing(self) -> None:
        weight = self.query_one(TrainingDashboard).cycle_smoothing()
        message = f"Train loss smoothed (EMA weight {weight:g})." if weight else "Loss chart shows raw values."
        self.notify(message)

    def action_stop_training(self) -> None:
        if self.training is None or self.training.returncode is not None:
            self.notify("No training run started from this app is going.", severity="warning")
            return
        self._training_stop_requested = True
        self.query_one(TrainingDashboard).set_process_status("stopping…", running=True)
        self.run_worker(self.training.stop, thread=True, group="training")

    def _check_training(self) -> None:
        process = self.training
        if process is None:
            return
        code = process.returncode
        if code is None:
            return
        if self._training_stop_requested:
            status = "stopped by you (F8)"
        elif code == 0:
            status = "training finished"
        else:
            status = f"training failed (exit code {code}); its output is in {process.log_path}"
            log.error("training process %d failed with exit code %d; output in %s", process.pid, code, process.log_path)
        self.query_one(TrainingDashboard).set_process_status(status, running=False)
        self.training = None

    # -- quitting ----------------------------------------------------------------------------------

    def stop_children(self) -> None:
        """Stop the reply worker and any training process, so nothing outlives the app."""
        self._stop_requested = True
        if self.training is not None:
            self.training.stop()
            self.training = None

    async def action_quit(self) -> None:
        """Quit; while a training run started here is going, ask first, because quitting stops it."""
        if self.model_failed:
            self.exit(return_code=EXIT_MODEL_FAILED)
            return
        if self.training is not None and self.training.returncode is None:
            if isinstance(self.screen, ConfirmScreen):
                return

            def confirmed(quit_anyway: bool | None) -> None:
                if quit_anyway:
                    self.stop_children()
                    self.exit()

            message = f"A training run (process {self.training.pid}) is going. Quitting stops it; --resume continues it later."
            self.open_modal(ConfirmScreen("Quit RomeGPT?", message, "Stop it and quit"), confirmed)
            return
        self.stop_children()
        self.exit()


def run_app(checkpoint: Path | None) -> int:
    """Run the app full-screen on `checkpoint` (None: the shipped model); return the exit code."""
    app = RomeApp(checkpoint)
    # Log records written to the terminal would draw over the app, so send them to Textual's log
    # (shown by `textual console`) while it runs.
    root = logging.getLogger()
    saved_handlers = root.handlers[:]
    root.handlers = [TextualHandler()]
    try:
        app.run()
    finally:
        app.stop_children()
        root.handlers = saved_handlers
    return app.return_code or 0
