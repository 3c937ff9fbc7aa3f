"""The app's entries in the command palette (ctrl+p)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from rome_core.generate import SamplingSettings
from rome_tui.explain_render import STAGES


class RomeCommands(Provider):
    """Every app action by name, so a user can find it without knowing its key."""

    def _commands(self) -> list[tuple[str, str, Callable[[], object]]]:
        app = self.app
        return [
            ("Sampling settings", "change temperature, top-k, top-p, max tokens, seed and [UNK] (F2)", app.action_settings),
            ("Sampling: greedy", "temperature 0: always pick the most likely token", partial(app.set_sampling, temperature=0.0)),
            ("Sampling: defaults", "temperature 0.8, top-k 40, top-p 0.95, 200 tokens", partial(app.set_sampling, **vars(SamplingSettings()))),
            ("Sampling: random seed", "replies differ each time", partial(app.set_sampling, seed=None)),
            ("Stop reply", "stop the reply being generated (Escape)", app.action_stop),
            ("Clear conversation", "start a new conversation (ctrl+l)", app.action_clear),
            ("Save conversation", "write the conversation to a text file (F3)", app.action_save_conversation),
            ("Copy conversation", "copy the conversation to the clipboard (F4)", app.action_copy_conversation),
            ("Export trace as JSON", "token ids, texts, attention and top-k of the current window (F5)", app.action_export_trace),
            ("Next layer", "attention heatmap: next layer (l)", partial(app.action_layer, 1)),
            ("Next head", "attention heatmap: next head (h)", partial(app.action_head, 1)),
            ("Average over heads", "attention heatmap: mean of all heads (a)", app.action_average),
            ("Show chat", "the Chat tab", partial(app.show_tab, "chat")),
            ("Show training", "the Training tab", partial(app.show_tab, "training")),
            ("Show inside", "the Inside tab", partial(app.show_tab, "inside")),
            ("Inside: next stage", "the next stage of the forward pass (n or ])", partial(app.run_inside, "next_stage")),
            ("Inside: previous stage", "the previous stage of the forward pass (p or [)", partial(app.run_inside, "previous_stage")),
            ("Inside: next token", "explain the next token of the window (.)", partial(app.run_inside, "next_token")),
            ("Inside: previous token", "explain the previous token of the window (,)", partial(app.run_inside, "previous_token")),
            *(
                (f"Inside: {stage.title}", f"stage {number} of the forward pass ({number})", partial(app.run_inside, "show_stage", number - 1))
                for number, stage in enumerate(STAGES, start=1)
            ),
            ("Open run folder", "follow another run's metrics.jsonl (ctrl+o)", app.action_open_run),
            ("Start training run", "train a model in the background (ctrl+n)", app.action_start_training),
            ("Stop training run", "stop the training run this app started (F8)", app.action_stop_training),
            ("Help", "keys and what the panels show (F1)", app.action_help),
        ]

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
