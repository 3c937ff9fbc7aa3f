"""The top-k panel: what the model predicted for the selected token's position, as probability bars."""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from rome_core.trace import token_probability, top_next_tokens
from rome_tui.conversation import Conversation
from rome_tui.widgets.token_strip import visible

SHOWN = 8
LABEL_WIDTH = 10
BAR_STYLE = Style(color="#6ece58")
CHOSEN_STYLE = Style(color="#fde725", bold=True)
BLOCKS = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True)
class Row:
    """One candidate line: token id and text, model probability and, for sampled positions, the sampling probability."""

    id: int
    text: str
    prob: float
    sample_prob: float | None
    chosen: bool


def bar(fraction: float, width: int) -> str:
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


def row_layout(panel_width: int, sampled: bool) -> tuple[int, int]:
    """Return the label and bar widths that fit a candidate row in `panel_width` columns.

    A row is the marker, the label, a space, the bar, the model percentage and, when sampled,
    the sampling percentage (7 columns each). Narrow panels shorten the bar, then the label,
    then drop the bar, so a row never wraps.
    """
    fixed = 1 + 1 + 7 + (7 if sampled else 0)
    label_width = LABEL_WIDTH
    bar_width = panel_width - fixed - label_width
    if bar_width < 3:
        label_width = max(5, label_width - (3 - bar_width))
        bar_width = panel_width - fixed - label_width
    return label_width, max(0, bar_width) if bar_width >= 2 else 0


class TopKPanel(Widget):
    """For position p it shows the distribution the model computed at p - 1, with the real token at p marked."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.conversation: Conversation | None = None
        self.selected: int | None = None
        self.rows: list[Row] = []
        self.summary = ""

    def show(self, conversation: Conversation, selected: int | None) -> None:
        self.conversation = conversation
        self.selected = selected
        self.rows, self.summary = self._collect()
        self.refresh()

    def _collect(self) -> tuple[list[Row], str]:
        conversation = self.conversation
        if conversation is None or not conversation.chips:
            return [], "Send a message to see the model's candidates for each token."
        chips = conversation.chips
        position = self.selected if self.selected is not None else len(chips) - 1
        chip = chips[position]
        choice = conversation.choices.get(position)
        if choice is not None:
            rows = [Row(c.id, c.text, c.prob, c.sample_prob, c.id == choice.token.id) for c in choice.candidates[:SHOWN]]
            if not any(row.chosen for row in rows):
                token = choice.token
                rows.append(Row(token.id, token.text, token.prob, token.sample_prob, True))
            settings = choice.settings
            summary = (
                f"predicted at token {position - 1} · ▶ sampled · kept {choice.kept} of {conversation.tokenizer.vocab_size} (top-k {settings.top_k or 'off'}, "
                f"top-p {settings.top_p:g}, temperature {settings.temperature:g})"
            )
            return rows, summary
        logits = conversation.logits()
        previous = position - 1
        if previous < conversation.trace.window_start:
            return [], "This is the first token of the window: nothing comes before it, so the model did not predict it."
        if logits is None or not conversation.traced(previous):
            return [], "Not computed yet."
        row = logits[0, previous - conversation.trace.window_start]
        rows = [
            Row(token_id, conversation.tokenizer.id_to_token(token_id), prob, None, token_id == chip.id)
            for token_id, prob in top_next_tokens(row, SHOWN)
        ]
        prob, rank = token_probability(row, chip.id)
        if not any(r.chosen for r in rows):
            rows.append(Row(chip.id, chip.text, prob, None, True))
        return rows, f"predicted at token {previous} · ▶ your token: probability {prob:.3f} (rank {rank})"

    def render(self) -> Text:
        text = Text("Candidates", style="bold")
        if self.conversation is not None and self.conversation.chips:
            position = self.selected if self.selected is not None else len(self.conversation.chips) - 1
            chip = self.conversation.chips[position]
            text.append(f" for token {position} {visible(chip.text)!r}", style="bold")
        text.truncate(max(1, self.size.width), overflow="ellipsis")
        text.append("\n")
        sampled = any(row.sample_prob is not None for row in self.rows)
        label_width, width = row_layout(self.size.width, sampled)
        # Short panels show fewer candidates, but always the chosen one and the column heads,
        # because without them the two percentages look alike.
        room = max(1, self.size.height - 3)
        if sampled:
            text.append(f"{'':{label_width + 2 + width}}{'model':>7}{'sample':>7}\n", style="dim")
            if len(self.rows) >= room:
                room = max(1, room - 1)
        rows = self.rows[:room]
        if not any(row.chosen for row in rows):
            rows = [*rows[: room - 1], *[row for row in self.rows if row.chosen]]
        for row in rows:
            style = CHOSEN_STYLE if row.chosen else Style()
            label = visible(row.text)[:label_width]
            text.append(f"{'▶' if row.chosen else ' '}{label:<{label_width}} ", style=style)
            if width:
                text.append(bar(row.prob, width), style=CHOSEN_STYLE if row.chosen else BAR_STYLE)
            text.append(f" {row.prob:6.1%}", style=style)
            if row.sample_prob is not None:
                text.append(f" {row.sample_prob:6.1%}", style=Style(dim=True))
            text.append("\n")
        text.append(self.summary, style="italic")
        return text
