"""Rich renderables for an `Explanation`: one per forward-pass stage, shared by the Inside view and `romegpt explain`.

Given a `height`, `render_stage` fits a stage into that many lines, which is what the Inside
view passes. It draws the full layout when that fits and a compact one otherwise, and long
lists shrink to the lines left. With no height, as on the command line, every stage is drawn
in full. 80 columns is the narrowest layout.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from rome_core.explain import Explanation, PositionalEmbeddingStage, Prediction, TokenInfo, VectorSummary

# Meta keys the Inside view reads from the style under a mouse click.
STAGE_META = "inside.stage"
TOKEN_META = "inside.token"

VISIBLE_WHITESPACE = str.maketrans({" ": "·", "\n": "↵", "\t": "⇥", "\r": "␍"})
SPARK_CHARS = "▁▂▃▄▅▆▇█"
SHADES = " ░▒▓█"  # similarity -1 .. +1 in the positional similarity map
HEAT_COLUMNS = 64  # values per row of a heat strip; two rows share one line of half blocks


@dataclass(frozen=True)
class StageInfo:
    label: str  # short name for the stage bar
    title: str


STAGES = (
    StageInfo("Lowercase", "Lowercasing"),
    StageInfo("Tokens", "Tokenization"),
    StageInfo("Embedding", "Token embedding"),
    StageInfo("Position", "Positional embedding"),
    StageInfo("Layers", "Transformer layers"),
    StageInfo("Output", "Final linear layer"),
)


# -- small pieces -------------------------------------------------------------------------------


def token_label(text: str) -> str:
    """Return a token's text with whitespace made visible, marked as the chat's token strip marks it."""
    return text.translate(VISIBLE_WHITESPACE)


def count_lines(renderable: RenderableType, width: int) -> int:
    """Return how many terminal lines `renderable` takes at `width` columns."""
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    return len(console.render_lines(renderable, console.options, pad=False))


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _diverging(value: float, scale: float) -> str:
    """Return a hex colour for `value`: blue below zero, red above, brighter as |value| nears `scale`."""
    amount = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    low = 40
    strong = int(low + (255 - low) * amount)
    weak = int(low + 30 * (1 - amount))
    if value < 0:
        return f"#{weak:02x}{weak:02x}{strong:02x}"
    return f"#{strong:02x}{weak:02x}{weak:02x}"


def heat_strip(values: list[float], columns: int = HEAT_COLUMNS) -> Text:
    """Draw `values` as rows of `columns` coloured cells, two rows per line (upper and lower half blocks)."""
    scale = max((abs(v) for v in values), default=1.0)
    rows = [values[i : i + columns] for i in range(0, len(values), columns)]
    text = Text()
    for line in range(0, len(rows), 2):
        upper = rows[line]
        lower = rows[line + 1] if line + 1 < len(rows) else []
        for column, value in enumerate(upper):
            background = _diverging(lower[column], scale) if column < len(lower) else None
            text.append("▀", Style(color=_diverging(value, scale), bgcolor=background))
        if line + 2 < len(rows):
            text.append("\n")
    return text


def sparkline(values: list[float], low: float, high: float) -> Text:
    """Draw `values` as one line of block characters, `low` the lowest and `high` the highest bar."""
    span = high - low or 1.0
    chars = []
    for value in values:
        level = round((min(max(value, low), high) - low) / span * (len(SPARK_CHARS) - 1))
        chars.append(SPARK_CHARS[level])
    return Text("".join(chars), style="cyan")


def _stats_line(summary: VectorSummary) -> Text:
    line = Text()
    for name, value in (("mean", summary.mean), ("std", summary.std), ("min", summary.min), ("max", summary.max)):
        line.append(f"{name} ", style="dim")
        line.append(f"{value:+.3f}  ")
    line.append("norm ", style="dim")
    line.append(f"{summary.norm:.3f}")
    line.append("  (", style="dim")
    line.append("blue", style="bold #5050ff")
    line.append(" < 0 < ", style="dim")
    line.append("red", style="bold #ff5050")
    line.append(")", style="dim")
    return line


def _prob_bar(prob: float, width: int) -> Text:
    filled = round(prob * width)
    return Text("█" * filled + "·" * (width - filled), style="green")


def _token_text(text: str, width: int = 14, style: str = "bold") -> Text:
    return Text(_clip(token_label(text), width), style=style)


def _heading(index: int, description: str) -> list[RenderableType]:
    title = Text()
    title.append(f"Stage {index + 1} of {len(STAGES)}: ", style="dim")
    title.append(STAGES[index].title, style="bold")
    return [title, Text(description, style="italic")]


def _heat_columns(width: int, d_model: int) -> int:
    return min(HEAT_COLUMNS if width < 140 else 2 * HEAT_COLUMNS, d_model, max(width - 4, 8))


def _rows_left(height: int | None, width: int, fixed: list[RenderableType], extra_lines: int, total: int) -> int:
    """Return how many list rows fit in `height` beside the `fixed` parts and `extra_lines` more (all rows when unbounded)."""
    if height is None:
        return total
    used = sum(count_lines(part, width) for part in fixed) + extra_lines
    return max(3, min(total, height - used))


# -- stage bar and token strip (the Inside view's navigation, clickable through style meta) ---------


def stage_bar(current: int, width: int) -> Text:
    """Build one line naming every stage, the current one highlighted. Each name carries STAGE_META for clicks."""
    bar = Text(no_wrap=True, overflow="ellipsis")
    for index, stage in enumerate(STAGES):
        label = stage.title if width >= 130 else stage.label
        style = Style(bold=True, reverse=True) if index == current else Style()
        bar.append(f" {index + 1} {label} ", style + Style(meta={STAGE_META: index}))
        if index + 1 < len(STAGES):
            bar.append("│", style="dim")
    return bar


def token_strip(tokens: list[TokenInfo], selected: int, width: int) -> Text:
    """Build one line of the window's tokens around `selected` (a token index). Each token carries TOKEN_META."""
    position = next(token.position for token in tokens if token.index == selected)
    sizes = [len(token_label(token.text)) + 1 for token in tokens]

    # Grow a run of tokens outwards from the selected one until the line is full.
    start = end = position
    used = sizes[position]
    grew = True
    while grew:
        grew = False
        if end + 1 < len(tokens) and used + sizes[end + 1] <= width - 2:
            end += 1
            used += sizes[end]
            grew = True
        if start > 0 and used + sizes[start - 1] <= width - 2:
            start -= 1
            used += sizes[start]
            grew = True

    strip = Text(no_wrap=True, overflow="ellipsis")
    strip.append("…" if start > 0 else " ", style="dim")
    for token in tokens[start : end + 1]:
        if token.index == selected:
            style = Style(bold=True, reverse=True)
        elif token.unknown:
            style = Style(bold=True, color="red")
        else:
            style = Style(underline=token.position % 2 == 1)
        strip.append(token_label(token.text), style + Style(meta={TOKEN_META: token.index}))
        strip.append(" ")
    if end + 1 < len(tokens):
        strip.append("…", style="dim")
    return strip


# -- the six stages -----------------------------------------------------------------------------


def _tail(text: str, limit: int) -> tuple[int, str]:
    start = max(0, len(text) - limit)
    return start, text[start:]


def render_lowercase(explanation: Explanation, width: int, height: int | None, compact: bool) -> RenderableType:
    stage = explanation.lowercase
    description = (
        "The model only ever saw lowercase text, so the text is lowercased first."
        if compact
        else "RomeGPT was trained on lowercase text only, so every letter is lowercased before anything else."
    )
    parts = _heading(0, description)

    # Long conversations show their end: the part closest to the next token.
    limit = len(stage.typed) if height is None else max(2, (height - 5) // 2) * max(width - 7, 10)
    typed_start, typed_tail = _tail(stage.typed, limit)
    seen_start, seen_tail = _tail(stage.seen, limit)
    typed = Text(typed_tail)
    seen = Text(seen_tail)
    for change in stage.changes:
        if change.typed_index >= typed_start:
            typed.stylize("bold black on yellow", change.typed_index - typed_start, change.typed_index - typed_start + 1)
        if change.seen_start >= seen_start:
            seen.stylize("bold black on yellow", change.seen_start - seen_start, change.seen_end - seen_start)

    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("typed", typed)
    table.add_row("seen", seen)
    parts.append(table)
    if typed_start:
        parts.append(Text(f"(the last {len(typed_tail)} of {len(stage.typed)} characters)", style="dim"))
    count = len(stage.changes)
    if count:
        parts.append(Text(f"{count} character{'s' if count != 1 else ''} changed (highlighted)."))
    else:
        parts.append(Text("Nothing changed: the text is already lowercase."))
    return Group(*parts)


def render_tokenization(explanation: Explanation, width: int, height: int | None, compact: bool) -> RenderableType:
    stage = explanation.tokenization
    if compact:
        description = f"The text is cut into tokens from a vocabulary of {stage.vocab_size}; the model reads their ids."
    else:
        description = (
            f"The text is cut into pieces from a vocabulary of {stage.vocab_size} tokens, and each piece becomes its id, "
            "the only thing the model reads. Characters outside the vocabulary become [UNK]."
        )
    head = _heading(1, description)
    count = len(stage.tokens)
    summary = Text(f"{count} tokens in the model's window; vocabulary size {stage.vocab_size}, context {stage.context_length}.")
    if explanation.note:
        summary.append(f" Note: {explanation.note}.", style="yellow")
    head.append(summary)

    tail: list[RenderableType] = []
    unknown = [token for token in stage.tokens if token.unknown]
    if unknown:
        swallowed = ", ".join(repr(token.covered) for token in unknown[:8])
        tail.append(Text(f"{len(unknown)} unknown token{'s' if len(unknown) != 1 else ''}, swallowing {swallowed}", style="red"))
    if not compact:
        tail.append(Text("· is a space, ↵ a newline; chars is the span in the lowercased text.", style="dim"))

    # One line for the table header and one for the "tokens a to b" line.
    rows = _rows_left(height, width, head + tail, 2, count)
    position = explanation.selected.position
    first = max(0, min(position - rows // 2, count - rows))
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
    table.add_column("#", justify="right")
    table.add_column("token", no_wrap=True)
    table.add_column("id", justify="right")
    table.add_column("chars", justify="right", no_wrap=True)
    table.add_column("note", overflow="fold")
    for token in stage.tokens[first : first + rows]:
        text = _token_text(token.text, 20, "bold red" if token.unknown else "bold")
        note = Text("")
        if token.unknown and token.covered == token.text:
            # A chat reply's [UNK] was chosen by the model, so it covers no typed characters.
            note = Text("[UNK] generated by the model: no text", style="red")
        elif token.unknown:
            note = Text(f"[UNK] swallowed {token.covered!r}", style="red")
        table.add_row(str(token.index), text, str(token.id), f"{token.start}-{token.end}", note, style="reverse" if token.position == position else None)
    parts = [*head, table]
    if rows < count:
        listed = f"(tokens {stage.tokens[first].index} to {stage.tokens[first + rows - 1].index} of {stage.tokens[0].index} to {stage.tokens[-1].index} listed)"
        parts.append(Text(listed, style="dim"))
    return Group(*parts, *tail)


def render_token_embedding(explanation: Explanation, width: int, height: int | None, compact: bool) -> RenderableType:
    stage = explanation.token_embedding
    token = stage.token
    description = f"Token {token_label(token.text)!r} (id {token.id}) picks row {token.id} of a learned table: {explanation.d_model} numbers."
    if not compact:
        description += " Tokens used in similar ways end up with similar rows."
    parts = _heading(2, description)
    parts.append(heat_strip(stage.embedding.values, _heat_columns(width, explanation.d_model)))
    parts.append(_stats_line(stage.embedding))
    if compact:
        line = Text("nearest by cosine similarity: ", style="dim")
        for neighbour in stage.neighbours:
            line.append(token_label(neighbour.text), style="bold")
            line.append(f" {neighbour.similarity:.2f}  ")
        parts.append(line)
        return Group(*parts)
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
    table.add_column("nearest token", no_wrap=True)
    table.add_column("id", justify="right")
    table.add_column("cosine", justify="right")
    table.add_column("", no_wrap=True)
    for neighbour in stage.neighbours:
        bar = Text("█" * round(max(neighbour.similarity, 0.0) * 20), style="cyan")
        table.add_row(_token_text(neighbour.text), str(neighbour.id), f"{neighbour.similarity:+.3f}", bar)
    parts.append(table)
    return Group(*parts)


def _similarity_map(stage: PositionalEmbeddingStage) -> Table:
    table = Table.grid(padding=0)
    table.add_column(justify="right", style="dim")
    for _ in stage.map_positions:
        table.add_column()
    for row_position, row in zip(stage.map_positions, stage.map):
        cells = []
        for value in row:
            level = round((min(max(value, -1.0), 1.0) + 1) / 2 * (len(SHADES) - 1))
            cells.append(Text(SHADES[level] * 2, style=_diverging(value, 1.0)))
        table.add_row(f"{row_position} ", *cells)
    return table


def render_positional_embedding(explanation: Explanation, width: int, height: int | None, compact: bool) -> RenderableType:
    stage = explanation.positional_embedding
    context = len(stage.similarity)
    description = f"Position {stage.position} has its own {explanation.d_model} learned numbers, added to the token's."
    if not compact:
        description += " Attention by itself cannot tell where a token sits, so positions must look different."
    parts = _heading(3, description)
    parts.append(heat_strip(stage.embedding.values, _heat_columns(width, explanation.d_model)))
    parts.append(_stats_line(stage.embedding))

    # Similarity to the other positions: the neighbourhood on one line when compact, else the whole context.
    span = min(context, max(width - 12, 16))
    if compact:
        first = max(0, min(stage.position - span // 2, context - span))
        shown_positions = range(first, first + span)
    else:
        shown_positions = range(context)
    values = [stage.similarity[p] for p in shown_positions]
    parts.append(Text(f"cosine similarity of position {stage.position} to positions {shown_positions.start}-{shown_positions.stop - 1} (▁ -1, █ +1):", style="dim"))
    for line_start in range(0, len(values), span):
        parts.append(sparkline(values[line_start : line_start + span], -1.0, 1.0))
    others = [(value, p) for p, value in enumerate(stage.similarity) if p != stage.position]
    if others:
        closest = max(others)
        farthest = min(others)
        parts.append(Text(f"most similar: position {closest[1]} ({closest[0]:+.2f}); least similar: position {farthest[1]} ({farthest[0]:+.2f})"))
    if not compact:
        parts.append(Text("similarity between positions of the window (blank -1, █ +1; blue below 0, red above):", style="dim"))
        parts.append(_similarity_map(stage))
    return Group(*parts)


def _lens_cell(predictions: list[Prediction], count: int, width: int) -> Text:
    cell = Text()
    for prediction in predictions[:count]:
        cell.append(_clip(token_label(prediction.text), width), style="bold")
        cell.append(f" {prediction.prob:.0%}  ")
    return cell


def render_layers(explanation: Explanation, width: int, height: int | None, compact: bool) -> RenderableType:
    stage = explanation.layers
    selected = explanation.selected
    if compact:
        description = "Attention (top token per head, weight %) and MLP each add to the stream."
    else:
        description = (
            f"{explanation.n_layers} layers update each position's residual stream: attention adds information from earlier "
            "tokens, then an MLP transforms it. The logit lens reads a prediction off the stream after each layer."
        )
    parts = _heading(4, description)
    # Each head's cell shows its most-attended tokens with their weights in percent: "·caes 13".
    keys_per_head = 2 if width >= 140 else 1
    per_head = (width - 6) // explanation.n_heads - 1
    cell_width = max(3, min(12, (per_head + 1) // keys_per_head - 4))

    attention = Table(box=None, padding=(0, 1, 0, 0), show_edge=False, header_style="dim")
    attention.add_column("layer", justify="right", no_wrap=True, min_width=5)
    for head in range(explanation.n_heads):
        attention.add_column(f"head {head}" if cell_width >= 6 else f"h{head}", no_wrap=True)
    for layer in stage.layers:
        cells = []
        for head in layer.heads:
            cell = Text()
            for rank, attended in enumerate(head.top[:keys_per_head]):
                if rank:
                    cell.append(" ")
                cell.append(_clip(token_label(attended.text), cell_width), style="bold")
                cell.append(f" {round(attended.weight * 100):2d}", style="dim")
            cells.append(cell)
        attention.add_row(str(layer.layer), *cells)
    if not compact:
        parts.append(Text(f"What {token_label(selected.text)!r} (position {selected.position}) attends to most, per head, with the attention weight in %:", style="dim"))
    parts.append(attention)

    stream = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
    stream.add_column("layer", justify="right", no_wrap=True, min_width=5)
    stream.add_column("+attn", justify="right", no_wrap=True, min_width=6)
    stream.add_column("+mlp", justify="right", no_wrap=True, min_width=6)
    stream.add_column("stream", justify="right", no_wrap=True, min_width=6)
    stream.add_column("logit lens: next token if it stopped here", no_wrap=True, overflow="ellipsis")
    lens_count = 3 if width < 120 else 5
    for layer in stage.layers:
        lens = _lens_cell(layer.lens, lens_count, 10)
        if layer.layer == stage.first_layer_on_top:
            lens.append("◀ first", style="green")
        stream.add_row(str(layer.layer), f"{layer.attention_norm:.1f}", f"{layer.mlp_norm:.1f}", f"{layer.residual_norm:.1f}", lens)
    parts.append(stream)
    final = stage.final_token
    summary = Text.assemble(
        ("The final top token ", ""), (token_label(final.text), "bold green"),
        (f" is first on top after layer {stage.first_layer_on_top}.", ""),
    )
    if not compact:
        summary.append(f" Its lens probability per layer: {', '.join(f'{layer.final_token_prob:.0%}' for layer in stage.layers)}.", style="dim")
    parts.append(summary)
    if not compact:
        parts.append(Text("+attn and +mlp: L2 norms of what each sublayer adds to the residual stream; stream: its norm after the layer.", style="dim"))
    return Group(*parts)


def render_output(explanation: Explanation, width: int, height: int | None, compact: bool) -> RenderableType:
    stage = explanation.output
    vocab = explanation.tokenization.vocab_size
    selected = explanation.selected
    if compact:
        description = f"A linear layer scores all {vocab} tokens; softmax makes the scores probabilities."
    else:
        description = (
            f"The final layer norm and a linear layer turn the stream at {token_label(selected.text)!r} into one score (logit) "
            f"for each of the {vocab} tokens; softmax turns the scores into next-token probabilities."
        )
    head = _heading(5, description)
    chosen = stage.chosen
    tail: list[RenderableType] = [
        Text.assemble(
            ("Chosen: ", "bold"), (token_label(chosen.text), "bold green"), (f" ({chosen.prob:.1%}), the most likely token. ", ""),
            ("Sampling above temperature 0 may pick another.", "dim"),
        )
    ]
    if stage.actual_next is not None:
        actual = stage.actual_next
        tail.append(Text(f"The prompt's own next token is {token_label(actual.text)!r}: {actual.prob:.1%}, rank {stage.actual_next_rank + 1}."))

    # One line for the table header and one for the "top n of k" line.
    rows = _rows_left(height, width, head + tail, 2, len(stage.top))
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
    table.add_column("rank", justify="right")
    table.add_column("token", no_wrap=True)
    table.add_column("id", justify="right")
    table.add_column("prob", justify="right")
    table.add_column("logit", justify="right")
    table.add_column("", no_wrap=True)
    bar_width = max(10, min(30, width - 45))
    for rank, prediction in enumerate(stage.top[:rows], start=1):
        table.add_row(
            str(rank), _token_text(prediction.text, 16), str(prediction.id),
            f"{prediction.prob:.1%}", f"{prediction.logit:+.2f}", _prob_bar(prediction.prob, bar_width),
            style="green" if rank == 1 else None,
        )
    parts = [*head, table]
    if rows < len(stage.top):
        parts.append(Text(f"(top {rows} of {len(stage.top)} shown; a taller window shows all)", style="dim"))
    return Group(*parts, *tail)


RENDERERS = (render_lowercase, render_tokenization, render_token_embedding, render_positional_embedding, render_layers, render_output)


def render_stage(explanation: Explanation, index: int, width: int, height: int | None = None) -> RenderableType:
    """Render stage `index` (0-5) in `width` columns: in full, or compact when the full layout needs more than `height` lines."""
    renderer = RENDERERS[index]
    full = renderer(explanation, width, height, False)
    if height is None or count_lines(full, width) <= height:
        return full
    return renderer(explanation, width, height, True)


def render_explanation(explanation: Explanation, width: int) -> RenderableType:
    """Render every stage in full, one after another, for the command line."""
    selected = explanation.selected
    header = Text.assemble(
        ("Inside RomeGPT ", "bold"),
        (f"({explanation.checkpoint}), selected token {selected.index}: ", "dim"),
        (token_label(selected.text), "bold reverse"),
    )
    parts: list[RenderableType] = [header]
    if explanation.note:
        parts.append(Text(f"Note: {explanation.note}.", style="yellow"))
    for index in range(len(STAGES)):
        parts.append(Text(""))
        parts.append(render_stage(explanation, index, width))
    return Group(*parts)
