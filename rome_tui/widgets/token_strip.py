"""The token strip: every token of the window as a chip with its text and id."""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Region, Size
from textual.reactive import reactive
from textual.widget import Widget

from rome_tui.conversation import Chip
from rome_tui.messages import TokenSelected

PROMPT_STYLE = Style(color="#dbe9ff", bgcolor="#1f3a5f")
GENERATED_STYLE = Style(color="#dcffe4", bgcolor="#1e5631")
UNKNOWN_STYLE = Style(color="#ffffff", bgcolor="#a01818", bold=True)
ID_STYLE = Style(dim=True)
SELECTED = Style(reverse=True, bold=True, underline=True)


def _chip_styles(unknown: bool, generated: bool, selected: bool) -> tuple[Style, Style]:
    if unknown:
        style = UNKNOWN_STYLE
    elif generated:
        style = GENERATED_STYLE
    else:
        style = PROMPT_STYLE
    if selected:
        style = style + SELECTED
    return style, style + ID_STYLE


# (label style, id style) for every (unknown, generated, selected), built once. Combining rich
# Styles for each of hundreds of chips on every redraw took a visible share of the app's time.
CHIP_STYLES = {
    (unknown, generated, selected): _chip_styles(unknown, generated, selected)
    for unknown in (False, True)
    for generated in (False, True)
    for selected in (False, True)
}

VISIBLE_WHITESPACE = str.maketrans({" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"})


def visible(text: str) -> str:
    """Return `text` with spaces, newlines and tabs drawn as visible marks."""
    return text.translate(VISIBLE_WHITESPACE)


def chip_label(chip: Chip) -> str:
    if chip.unknown:
        return f"[UNK]={visible(chip.source)}" if chip.source and chip.source != chip.text else "[UNK]"
    return visible(chip.text)


@dataclass(frozen=True)
class Placed:
    """A chip's row, column and width in the wrapped layout."""

    position: int
    row: int
    x: int
    width: int


class TokenStrip(Widget, can_focus=True):
    """Chips of the window's tokens: blue for the prompt, green for the reply, red for [UNK]."""

    BINDINGS = [
        Binding("left", "move(-1)", "Previous token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("up", "move_row(-1)", "Row up", show=False),
        Binding("down", "move_row(1)", "Row down", show=False),
        Binding("home", "jump(0)", "First token", show=False),
        Binding("end", "jump(-1)", "Last token", show=False),
        # The heatmap keys live here, not on the app, so letters typed into the message box never reach them.
        Binding("l", "app.layer(1)", "Next layer"),
        Binding("L", "app.layer(-1)", "Previous layer", show=False),
        Binding("h", "app.head(1)", "Next head"),
        Binding("H", "app.head(-1)", "Previous head", show=False),
        Binding("a", "app.average", "Average heads"),
        Binding("escape", "app.stop", "Message box"),
    ]

    selected: reactive[int | None] = reactive(None, layout=False)

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.chips: list[Chip] = []
        self.start = 0
        self._layout: list[Placed] = []
        self._layout_width = -1

    # -- data --------------------------------------------------------------------------------------

    def show_chips(self, chips: list[Chip], start: int) -> None:
        """Show `chips`, whose first one sits at absolute position `start`."""
        self.chips = chips
        self.start = start
        self._layout_width = -1
        if self.selected is not None and not self.start <= self.selected < self.start + len(chips):
            self.selected = None
        self.refresh(layout=True)

    @property
    def last_position(self) -> int | None:
        return self.start + len(self.chips) - 1 if self.chips else None

    def select(self, position: int) -> None:
        """Select the chip at absolute `position` and tell the app (posts TokenSelected)."""
        if not self.chips:
            return
        position = max(self.start, min(position, self.start + len(self.chips) - 1))
        self.selected = position
        self.post_message(TokenSelected(position))

    def watch_selected(self) -> None:
        self.refresh()
        self.call_after_refresh(self.scroll_to_selected)

    def on_resize(self) -> None:
        # A new width rewraps the chips, which moves the selected one to another row.
        if self.selected is not None:
            self.call_after_refresh(self.scroll_to_selected)

    def scroll_to_selected(self) -> None:
        """Scroll the surrounding container so the selected chip's row is in view."""
        placed = self._placed(self.selected)
        container = self.parent
        if placed is None or not isinstance(container, Widget):
            return
        # The strip is the container's only child, so a strip row is the same row of the container's content.
        row = self.virtual_region.y + placed.row
        # Focusing the strip starts an animated scroll, which would otherwise carry on past this one.
        self.app.animator.force_stop_animation(container, "scroll_y")
        container.scroll_to_region(Region(0, row, 1, 1), animate=False, immediate=True)

    # -- layout ------------------------------------------------------------------------------------

    def _lay_out(self, width: int) -> list[Placed]:
        if width == self._layout_width:
            return self._layout
        placed = []
        row = x = 0
        for index, chip in enumerate(self.chips):
            chip_width = len(chip_label(chip)) + len(str(chip.id)) + 3
            if x and x + chip_width > width:
                row += 1
                x = 0
            placed.append(Placed(self.start + index, row, x, min(chip_width, width)))
            x += chip_width + 1
        self._layout, self._layout_width = placed, width
        return placed

    def _placed(self, position: int | None) -> Placed | None:
        if position is None:
            return None
        layout = self._lay_out(self.size.width)
        index = position - self.start
        return layout[index] if 0 <= index < len(layout) else None

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        layout = self._lay_out(width)
        return (layout[-1].row + 1) if layout else 1

    def render(self) -> Text:
        if not self.chips:
            return Text("Tokens appear here when you send a message.", style="dim")
        layout = self._lay_out(self.size.width)
        text = Text(no_wrap=True, overflow="crop")
        row = 0
        for chip, placed in zip(self.chips, layout):
            if placed.row != row:
                text.append("\n")
                row = placed.row
            elif placed.x:
                text.append(" ")
            style, id_style = CHIP_STYLES[chip.unknown, chip.generated, placed.position == self.selected]
            text.append(" " + chip_label(chip) + " ", style=style)
            text.append(str(chip.id) + " ", style=id_style)
        return text

    # -- input -------------------------------------------------------------------------------------

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        for placed in self._lay_out(self.size.width):
            if placed.row == offset.y and placed.x <= offset.x < placed.x + placed.width:
                self.focus()
                self.select(placed.position)
                return

    def action_move(self, delta: int) -> None:
        if self.selected is None:
            self.select(self.last_position if delta < 0 else self.start)
        else:
            self.select(self.selected + delta)

    def action_move_row(self, delta: int) -> None:
        current = self._placed(self.selected if self.selected is not None else self.last_position)
        if current is None:
            return
        candidates = [p for p in self._lay_out(self.size.width) if p.row == current.row + delta]
        if candidates:
            nearest = min(candidates, key=lambda p: abs(p.x - current.x))
            self.select(nearest.position)

    def action_jump(self, where: int) -> None:
        if self.chips:
            self.select(self.start if where == 0 else self.start + len(self.chips) - 1)
