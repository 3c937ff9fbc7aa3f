"""The conversation as the model sees it: one running token list, its turns and the trace of its window."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from rome_core.generate import Candidate, SamplingSettings, Step
from rome_core.tokenizer import Encoding, RomeTokenizer, Token
from rome_core.trace import SequenceTrace

# Each new user message is separated from what came before by a blank line.
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Chip:
    """One token of the conversation. `source` is the text it stands for (what an [UNK] swallowed)."""

    id: int
    text: str
    source: str
    generated: bool
    unknown: bool


@dataclass(frozen=True)
class Choice:
    """Record of one sampling decision: the sampled token, the top candidates and how many survived the filters."""

    token: Candidate
    candidates: list[Candidate]
    kept: int
    settings: SamplingSettings


@dataclass
class Turn:
    """One message. `start` and `end` index `Conversation.chips`; `end` grows while a reply streams.

    `typed` is a user message as the user typed it, before lowercasing (None for replies).
    """

    role: str
    start: int
    end: int
    lowercased: bool = False
    finish_reason: str | None = None
    typed: str | None = None


@dataclass
class Conversation:
    tokenizer: RomeTokenizer
    n_layers: int
    context_length: int
    chips: list[Chip] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    choices: dict[int, Choice] = field(default_factory=dict)
    window_start: int = 0
    slid: bool = False

    def __post_init__(self) -> None:
        self.trace = SequenceTrace(self.n_layers)
        self._pattern_cache: dict[int, tuple[tuple[int, int], Tensor]] = {}
        self._logits_cache: tuple[tuple[int, int], Tensor] | None = None

    @property
    def ids(self) -> list[int]:
        return [chip.id for chip in self.chips]

    def add_user_message(self, text: str) -> Turn:
        """Append a user message (after the separator when the conversation is not empty)."""
        # The first message starts the text; later ones continue it after the separator.
        first = not self.chips
        encoding = self.tokenizer.encode(text if first else SEPARATOR + text, start_of_text=first)
        start = len(self.chips)
        for token in encoding.tokens:
            self.chips.append(Chip(token.id, token.text, encoding.covered(token), generated=False, unknown=token.unknown))
        turn = Turn("user", start, len(self.chips), lowercased=text != text.lower(), typed=text)
        self.turns.append(turn)
        self.window_start = max(0, len(self.chips) - self.context_length)
        return turn

    def start_reply(self) -> Turn:
        turn = Turn("model", len(self.chips), len(self.chips))
        self.turns.append(turn)
        return turn

    def add_step(self, step: Step, settings: SamplingSettings) -> None:
        """Append a generated token and place its trace rows in the window's trace."""
        if step.trace is not None:
            self.trace.add(step.trace, step.positions, step.window_start)
        self.slid = self.slid or step.slid
        self.window_start = step.window_start
        position = len(self.chips)
        token = step.token
        self.chips.append(Chip(token.id, token.text, token.text, generated=True, unknown=token.id == self.tokenizer.unk_id))
        self.choices[position] = Choice(token, step.candidates, step.kept, settings)
        self.turns[-1].end = len(self.chips)

    def clear(self) -> None:
        self.chips.clear()
        self.turns.clear()
        self.choices.clear()
        self.window_start = 0
        self.slid = False
        self.trace = SequenceTrace(self.n_layers)

    # -- reading the trace -------------------------------------------------------------------------

    def traced(self, position: int) -> bool:
        """Return whether the trace contains the forward pass of the token at absolute `position`."""
        return self.trace.window_start <= position < self.trace.window_start + self.trace.length

    def pattern(self, layer: int) -> Tensor | None:
        """Layer `layer`'s attention weights over the traced window, (1, head, query, key); cached per trace state."""
        if self.trace.length == 0:
            return None
        state = (self.trace.window_start, self.trace.length)
        cached = self._pattern_cache.get(layer)
        if cached is None or cached[0] != state:
            cached = (state, self.trace.get(f"blocks.{layer}.attn.hook_pattern"))
            self._pattern_cache[layer] = cached
        return cached[1]

    def logits(self) -> Tensor | None:
        """Next-token logits of every traced position, (1, pos, vocab)."""
        if self.trace.length == 0:
            return None
        state = (self.trace.window_start, self.trace.length)
        if self._logits_cache is None or self._logits_cache[0] != state:
            self._logits_cache = (state, self.trace.get("logits"))
        return self._logits_cache[1]

    # -- text --------------------------------------------------------------------------------------

    def encoding_from(self, start: int = 0) -> Encoding:
        """Return the tokens from position `start` exactly as the model read them, with spans into
        their lowercased text."""
        chips = self.chips[start:]
        tokens = []
        offset = 0
        for chip in chips:
            tokens.append(Token(chip.id, chip.text, offset, offset + len(chip.source), chip.unknown))
            offset += len(chip.source)
        return Encoding(text="".join(chip.source for chip in chips), tokens=tokens)

    def text_from(self, start: int = 0) -> str:
        """Return the text from position `start`, with user messages as typed (before lowercasing).

        A user message that `start` cuts into keeps only its lowercased chips' text, because
        lowercasing may change a text's length and the cut cannot be mapped back to the typed text.
        """
        pieces = []
        for turn in self.turns:
            if turn.end <= start:
                continue
            if turn.role == "user" and turn.typed is not None and turn.start >= start:
                separator = SEPARATOR if turn.start > 0 else ""
                pieces.append(separator + turn.typed)
            else:
                pieces.append("".join(chip.source for chip in self.chips[max(turn.start, start) : turn.end]))
        return "".join(pieces)

    def turn_text(self, turn: Turn) -> str:
        """A message's text: user messages as typed, replies as generated."""
        if turn.role == "user" and turn.typed is not None:
            return turn.typed
        chips = self.chips[turn.start : turn.end]
        text = "".join(chip.source for chip in chips)
        return text.removeprefix(SEPARATOR) if turn.role == "user" else text

    def transcript(self) -> str:
        """The conversation as plain text, one labelled block per message, user messages as typed."""
        blocks = []
        for turn in self.turns:
            label = "romegpt"
            if turn.role == "user":
                label = "you (the model read it lowercased)" if turn.lowercased else "you"
            blocks.append(f"{label}: {self.turn_text(turn)}")
        return "\n\n".join(blocks) + "\n"
