"""The attention heatmap: one layer's (or head-averaged) weights, queries as rows and keys as columns.

Each character cell holds two query rows: the upper half block (▀) takes the colour of the upper
query, the cell background that of the lower one. Keys get one column each. Only a window of
queries and keys around the selected token is drawn, so long sequences stay fast and fit.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import groupby

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from rome_core.trace import attention_grid
from rome_tui.conversation import Conversation
from rome_tui.widgets.token_strip import visible

# Viridis, dark (weight 0) to bright (weight 1).
SCALE = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"]
MASKED = "#262626"  # keys after the query, which causal attention masks out
LABEL_WIDTH = 5
GUTTER = 2 * LABEL_WIDTH + 4  # selection marker, two half-block glyphs and labels, a space
KEY_LABEL_ROWS = 3
FOOTER_ROWS = 2


def colour(weight: float | None) -> str:
    if weight is None:
        return MASKED
    index = min(len(SCALE) - 1, max(0, int(weight * len(SCALE))))
    return SCALE[index]


@lru_cache(maxsize=None)
def _cell_style(foreground: str, background: str) -> Style:
    return Style(color=foreground, bgcolor=background)


def centred(selected: int, count: int, size: int) -> range:
    """Return a range of at most `size` indices out of `count`, containing `selected`, as centred as the edges allow."""
    size = min(size, count)
    start = max(0, min(selected - size // 2, count - size))
    return range(start, start + size)


class AttentionHeatmap(Widget):
    """Draws layer `layer_index`, head `head_index` (None = mean over heads) of the conversation's traced window."""

    layer_index: reactive[int] = reactive(0)
    head_index: reactive[int | None] = reactive(0)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.conversation: Conversation | None = None
        self.n_layers = 1
        self.n_heads = 1
        self.selected: int | None = None
        # What the last render drew (window-relative indices), for tests and the export.
        self.drawn_queries = range(0)
        self.drawn_keys = range(0)
        self.drawn_grid: list[list[float]] = []
        self.drawn_position: int | None = None  # absolute position of the marked query row

    def show(self, conversation: Conversation, n_layers: int, n_heads: int, selected: int | None) -> None:
        self.conversation = conversation
        self.n_layers, self.n_heads = n_layers, n_heads
        self.selected = selected
        self.refresh()

    def cycle_layer(self, delta: int) -> None:
        self.layer_index = (self.layer_index + delta) % self.n_layers

    def cycle_head(self, delta: int) -> None:
        # Heads 0..n-1, then the average (None), then round again.
        order: list[int | None] = [*range(self.n_heads), None]
        self.head_index = order[(order.index(self.head_index) + delta) % len(order)]

    def toggle_average(self) -> None:
        self.head_index = 0 if self.head_index is None else None

    def title(self, subject: str, note: str = "") -> Text:
        """Build the one-line title: whose row is marked, the layer and head, and the keys if they fit."""
        wide = self.size.width >= 70
        if self.head_index is None:
            head = "average of heads" if wide else "h avg"
        else:
            head = f"head h{self.head_index} of h0–h{self.n_heads - 1}" if wide else f"h{self.head_index}"
        # Counted from 0, like the hook names (blocks.0.attn.hook_pattern), the Inside tab and `romegpt explain`.
        layer = f"layer {self.layer_index} of 0–{self.n_layers - 1}" if wide else f"L{self.layer_index}"
        title = Text("Attention ", style="bold")
        title.append(f"{layer} · {head}", style="bold")
        title.append(f"  {subject}")
        if note:
            title.append(f" {note}", style="dim italic")
        hint = "  l/L layer · h/H head · a average" if wide else "  l h a"
        if len(title) + len(hint) <= self.size.width:
            title.append(hint, style="dim")
        return title

    def render(self) -> Text:
        conversation = self.conversation
        pattern = conversation.pattern(self.layer_index) if conversation is not None else None
        if conversation is None or pattern is None:
            text = self.title("")
            text.append("\nSend a message to see where each token looks.", style="dim")
            return text
        start = conversation.trace.window_start
        count = conversation.trace.length
        selected = self.selected if self.selected is not None else start + count - 1
        note = ""
        if not conversation.traced(selected):
            # The newest token has not been through the model yet (the next step would read it),
            # so show the newest query that has.
            note = f"(token {selected} not read by the model yet)" if self.size.width >= 70 else f"({selected} not read yet)"
            selected = start + count - 1
        local = selected - start
        chips = conversation.chips
        chip_text = visible(chips[selected].text) if selected < len(chips) else "?"
        subject = f"▶ row: what token {selected} {chip_text!r} attends to" if self.size.width >= 70 else f"▶ {selected} {chip_text!r}"
        text = self.title(subject, note)
        text.append("\n")

        # Short panels (80x24 terminals) get one row of key labels and no summary line.
        compact = self.size.height < 14
        label_rows = 1 if compact else KEY_LABEL_ROWS
        columns = max(1, self.size.width - GUTTER)
        rows = max(1, self.size.height - 1 - label_rows - (1 if compact else FOOTER_ROWS))
        queries = centred(local, count, 2 * rows)
        # Causal attention: keys after the newest query in view are all zero, so the key window ends there.
        keys = centred(local, queries.stop, columns)
        grid = attention_grid(pattern, self.head_index, queries, keys)
        self.drawn_queries, self.drawn_keys, self.drawn_grid = queries, keys, grid
        self.drawn_position = selected

        def label(position: int) -> str:
            return visible(chips[start + position].text) if start + position < len(chips) else "?"

        # Key labels: the first characters of each key token, written downwards.
        for row in range(label_rows):
            text.append(" " * GUTTER)
            for key in keys:
                piece = label(key)
                piece = piece.lstrip("·") or piece  # most tokens start with a space; show the word
                char = piece[row] if row < len(piece) else " "
                text.append(char, style=Style(reverse=True, bold=True) if key == local else Style(dim=True))
            text.append("\n")

        for pair in range(0, len(queries), 2):
            upper = queries[pair]
            lower = queries[pair + 1] if pair + 1 < len(queries) else None
            marker = "▶" if local in (upper, lower) else " "
            text.append(marker)
            for query, glyph in ((upper, "▀"), (lower, "▄")):
                if query is None:
                    text.append(" " * (LABEL_WIDTH + 1))
                    continue
                style = Style(reverse=True, bold=True) if query == local else Style()
                text.append(glyph, style=Style(dim=True))
                text.append(f"{label(query)[:LABEL_WIDTH]:<{LABEL_WIDTH}}", style=style)
            text.append(" ")
            cells = []
            for column, key in enumerate(keys):
                top = grid[pair][column] if key <= upper else None
                bottom = None
                if lower is not None and key <= lower:
                    bottom = grid[pair + 1][column]
                cells.append((colour(top), colour(bottom) if lower is not None else "default"))
            # One span per run of equal cells: Textual converts every span's style on each redraw,
            # and runs (the masked triangle, faint weights) are common.
            for (foreground, background), run in groupby(cells):
                text.append("▀" * len(list(run)), style=_cell_style(foreground, background))
            text.append("\n")

        text.append("0 ", style="dim")
        for shade in SCALE:
            text.append("█", style=Style(color=shade))
        text.append(" 1  attention weight", style="dim")
        if compact:
            return text
        text.append("\n")
        # The strongest keys of the selected query, over all its keys (not just the ones in view).
        row = attention_grid(pattern, self.head_index, range(local, local + 1), range(0, local + 1))[0]
        ranked = sorted(enumerate(row), key=lambda pair: pair[1], reverse=True)[:3]
        text.append(f"{label(local)!r} looks at ", style="dim")
        text.append(", ".join(f"{label(key)!r} {weight:.2f}" for key, weight in ranked))
        return text
