"""A stage-by-stage account of one forward pass, for the "Inside" view and `romegpt explain`.

`explain` runs the model once with tracing on and turns the traced tensors into plain
dataclasses, one per stage: lowercasing, tokenization, token embedding, positional
embedding, the transformer layers and the final linear layer. Every number comes from the
trace or from the helpers in `rome_core.trace`; nothing here draws anything.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import torch
from torch import Tensor

from rome_core.checkpoint import LoadedModel
from rome_core.errors import RomeError
from rome_core.model import Trace
from rome_core.tokenizer import Encoding
from rome_core.trace import logit_lens, nearest_tokens, position_similarity, run_with_trace, sublayer_norms

NEIGHBOURS = 8  # nearest tokens listed for the token embedding
ATTENTION_TOP = 3  # most-attended keys listed per head
LENS_TOP = 5  # predictions listed per layer in the logit lens
MAP_POSITIONS = 16  # maximum positions in the positional similarity map


# -- stage records ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseChange:
    """One typed character that lowercasing changed, and the span it became in the lowercased text."""

    typed_index: int
    seen_start: int
    seen_end: int


@dataclass
class LowercaseStage:
    typed: str
    seen: str
    changes: list[CaseChange]


@dataclass(frozen=True)
class TokenInfo:
    """A token of the model's window. `index` counts from the start of the whole prompt, `position` from the window."""

    index: int
    position: int
    id: int
    text: str
    start: int
    end: int
    unknown: bool
    covered: str


@dataclass
class TokenizationStage:
    tokens: list[TokenInfo]  # the tokens the model sees (the window)
    prompt_tokens: int  # tokens in the whole prompt
    dropped: int  # leading tokens cut off because the prompt is longer than the context
    context_length: int
    vocab_size: int


@dataclass(frozen=True)
class VectorSummary:
    values: list[float]
    mean: float
    std: float
    min: float
    max: float
    norm: float

    @classmethod
    def of(cls, vector: Tensor) -> "VectorSummary":
        vector = vector.float()
        return cls(
            values=vector.tolist(),
            mean=float(vector.mean()),
            std=float(vector.std(unbiased=False)),
            min=float(vector.min()),
            max=float(vector.max()),
            norm=float(vector.norm()),
        )


@dataclass(frozen=True)
class Neighbour:
    id: int
    text: str
    similarity: float


@dataclass
class TokenEmbeddingStage:
    token: TokenInfo
    embedding: VectorSummary
    neighbours: list[Neighbour]  # by cosine similarity of rows of the embedding table


@dataclass
class PositionalEmbeddingStage:
    position: int
    embedding: VectorSummary
    similarity: list[float]  # cosine similarity of this position's embedding to every position's
    map_positions: list[int]
    map: list[list[float]]  # cosine similarity between the map positions, row by column


@dataclass(frozen=True)
class AttendedToken:
    position: int
    text: str
    weight: float


@dataclass
class HeadAttention:
    head: int
    top: list[AttendedToken]
    weights: list[float]  # the selected query's attention over keys 0 .. position


@dataclass(frozen=True)
class Prediction:
    id: int
    text: str
    logit: float
    prob: float


@dataclass
class LayerStage:
    layer: int
    heads: list[HeadAttention]
    attention_norm: float  # L2 norm of what the attention sublayer adds to the residual stream
    mlp_norm: float  # L2 norm of what the MLP sublayer adds
    residual_norm: float  # L2 norm of the residual stream after the layer
    lens: list[Prediction]  # logit lens: the top next tokens if the model stopped after this layer
    final_token_prob: float  # the lens probability of the final top token
    final_token_rank: int  # its rank in the lens (0 = on top)


@dataclass
class LayersStage:
    layers: list[LayerStage]
    final_token: Prediction
    first_layer_on_top: int  # the first layer whose logit lens already puts final_token on top


@dataclass
class OutputStage:
    top: list[Prediction]
    chosen: Prediction  # the most likely token (greedy choice)
    actual_next: Prediction | None  # the prompt's own next token, when the selected one is not the last
    actual_next_rank: int | None


@dataclass
class Explanation:
    checkpoint: str
    n_layers: int
    n_heads: int
    d_model: int
    selected: TokenInfo
    note: str | None  # set when the prompt was cut to fit the context
    lowercase: LowercaseStage
    tokenization: TokenizationStage
    token_embedding: TokenEmbeddingStage
    positional_embedding: PositionalEmbeddingStage
    layers: LayersStage
    output: OutputStage
    top_k: int = field(default=10)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Serialize the whole trace summary as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"


# -- the traced run -----------------------------------------------------------------------------


@dataclass
class PromptTrace:
    """One traced forward pass over a prompt's window; reusable for every selected position."""

    typed: str
    encoding: Encoding
    window_start: int
    trace: Trace

    @property
    def ids(self) -> list[int]:
        return self.encoding.ids[self.window_start :]


def trace_prompt(loaded: LoadedModel, text: str, encoding: Encoding | None = None) -> PromptTrace:
    """Tokenize `text` and run the model over its last context_length tokens with tracing on.

    A caller that already has the tokens (a chat whose replies were generated token by token,
    which a fresh tokenization could split differently) passes them as `encoding`.
    """
    if encoding is None:
        encoding = loaded.tokenizer.encode(text)
    if not encoding.tokens:
        raise RomeError("the prompt is empty; give some text to explain")
    window_start = max(0, len(encoding.tokens) - loaded.model.config.context_length)
    trace = run_with_trace(loaded.model, encoding.ids[window_start:])
    return PromptTrace(typed=text, encoding=encoding, window_start=window_start, trace=trace)


def explain(loaded: LoadedModel, text: str, position: int | None = None, top_k: int = 10) -> Explanation:
    """Run `text` through the model and describe each stage for the token at `position` (None: the last).

    `position` indexes the prompt's tokens. A prompt longer than the context is cut to its last
    context_length tokens, as generation does, and `note` records the cut.
    """
    return explain_trace(loaded, trace_prompt(loaded, text), position, top_k)


def explain_trace(loaded: LoadedModel, prompt: PromptTrace, position: int | None = None, top_k: int = 10) -> Explanation:
    """Build the `Explanation` for one selected position from an existing traced run."""
    config = loaded.model.config
    if top_k < 1:
        raise RomeError(f"invalid top-k {top_k}; use 1 or more")
    top_k = min(top_k, config.vocab_size)

    count = len(prompt.encoding.tokens)
    index = count - 1 if position is None else position
    if not 0 <= index < count:
        raise RomeError(f"position {position} is out of range: the prompt has {count} tokens, so use 0 to {count - 1}")
    if index < prompt.window_start:
        raise RomeError(
            f"position {position} is outside the model's window: the prompt has {count} tokens and the model sees "
            f"only the last {config.context_length}, so use {prompt.window_start} to {count - 1}"
        )

    tokenization = _tokenization(loaded, prompt)
    selected = tokenization.tokens[index - prompt.window_start]
    note = None
    if prompt.window_start:
        note = (
            f"the prompt has {count} tokens but the context holds {config.context_length}: "
            f"the model sees only the last {config.context_length} (tokens {prompt.window_start} to {count - 1})"
        )
    layers = _layers(loaded, prompt, selected, tokenization.tokens)
    return Explanation(
        checkpoint=str(loaded.path),
        n_layers=config.n_layers,
        n_heads=config.n_heads,
        d_model=config.d_model,
        selected=selected,
        note=note,
        lowercase=_lowercase(prompt.typed, prompt.encoding.text),
        tokenization=tokenization,
        token_embedding=_token_embedding(loaded, prompt, selected),
        positional_embedding=_positional_embedding(loaded, prompt, selected),
        layers=layers,
        output=_output(loaded, prompt, selected, top_k),
        top_k=top_k,
    )


# -- the six stages -----------------------------------------------------------------------------


def _lowercase(typed: str, seen: str) -> LowercaseStage:
    # Lowercasing may lengthen a character ("İ" becomes two), so walk the typed text one
    # character at a time and track where each one lands in the lowercased text.
    changes = []
    offset = 0
    for typed_index, char in enumerate(typed):
        width = len(char.lower())
        if seen[offset : offset + width] != char:
            changes.append(CaseChange(typed_index=typed_index, seen_start=offset, seen_end=offset + width))
        offset += width
    return LowercaseStage(typed=typed, seen=seen, changes=changes)


def _tokenization(loaded: LoadedModel, prompt: PromptTrace) -> TokenizationStage:
    encoding = prompt.encoding
    tokens = [
        TokenInfo(
            index=index,
            position=index - prompt.window_start,
            id=token.id,
            text=token.text,
            start=token.start,
            end=token.end,
            unknown=token.unknown,
            covered=encoding.covered(token),
        )
        for index, token in enumerate(encoding.tokens)
        if index >= prompt.window_start
    ]
    return TokenizationStage(
        tokens=tokens,
        prompt_tokens=len(encoding.tokens),
        dropped=prompt.window_start,
        context_length=loaded.model.config.context_length,
        vocab_size=loaded.tokenizer.vocab_size,
    )


def _token_embedding(loaded: LoadedModel, prompt: PromptTrace, selected: TokenInfo) -> TokenEmbeddingStage:
    vector = prompt.trace["hook_embed"][0, selected.position]
    neighbours = [
        Neighbour(id=n.id, text=loaded.tokenizer.id_to_token(n.id), similarity=n.similarity)
        for n in nearest_tokens(loaded.model, selected.id, NEIGHBOURS)
    ]
    return TokenEmbeddingStage(token=selected, embedding=VectorSummary.of(vector), neighbours=neighbours)


def _map_positions(window: int) -> list[int]:
    """At most MAP_POSITIONS positions spread evenly over the window, first and last included."""
    if window <= MAP_POSITIONS:
        return list(range(window))
    return sorted({round(i * (window - 1) / (MAP_POSITIONS - 1)) for i in range(MAP_POSITIONS)})


def _positional_embedding(loaded: LoadedModel, prompt: PromptTrace, selected: TokenInfo) -> PositionalEmbeddingStage:
    vector = prompt.trace["hook_pos_embed"][0, selected.position]
    positions = _map_positions(len(prompt.ids))
    columns = torch.tensor(positions)
    similarity_map = [position_similarity(loaded.model, row)[columns].tolist() for row in positions]
    return PositionalEmbeddingStage(
        position=selected.position,
        embedding=VectorSummary.of(vector),
        similarity=position_similarity(loaded.model, selected.position).tolist(),
        map_positions=positions,
        map=similarity_map,
    )


def _predictions(loaded: LoadedModel, logits: Tensor, k: int) -> list[Prediction]:
    probs = torch.softmax(logits.float(), dim=-1)
    top = torch.topk(probs, k)
    return [_prediction(loaded, int(i), logits, probs) for i in top.indices]


def _prediction(loaded: LoadedModel, token_id: int, logits: Tensor, probs: Tensor) -> Prediction:
    return Prediction(
        id=token_id,
        text=loaded.tokenizer.id_to_token(token_id),
        logit=float(logits[token_id]),
        prob=float(probs[token_id]),
    )


def _attention(prompt: PromptTrace, layer: int, selected: TokenInfo, tokens: list[TokenInfo]) -> list[HeadAttention]:
    pattern = prompt.trace[f"blocks.{layer}.attn.hook_pattern"][0, :, selected.position, : selected.position + 1]
    heads = []
    for head, row in enumerate(pattern.float()):
        top = torch.topk(row, min(ATTENTION_TOP, row.shape[0]))
        attended = [
            AttendedToken(position=int(key), text=tokens[int(key)].text, weight=float(weight))
            for weight, key in zip(top.values, top.indices)
        ]
        heads.append(HeadAttention(head=head, top=attended, weights=row.tolist()))
    return heads


def _layers(loaded: LoadedModel, prompt: PromptTrace, selected: TokenInfo, tokens: list[TokenInfo]) -> LayersStage:
    n_layers = loaded.model.config.n_layers
    pos = selected.position
    # The logit lens of only the selected position: the same function, fed a one-position trace.
    one_position = {
        f"blocks.{layer}.hook_resid_post": prompt.trace[f"blocks.{layer}.hook_resid_post"][:, pos : pos + 1]
        for layer in range(n_layers)
    }
    lens = logit_lens(loaded.model, one_position)[:, 0]  # (layer, vocab)
    final_id = int(torch.argmax(prompt.trace["logits"][0, pos]))

    layers = []
    for layer in range(n_layers):
        logits = lens[layer]
        probs = torch.softmax(logits, dim=-1)
        attention_norms, mlp_norms = sublayer_norms(prompt.trace, layer)
        layers.append(
            LayerStage(
                layer=layer,
                heads=_attention(prompt, layer, selected, tokens),
                attention_norm=float(attention_norms[pos]),
                mlp_norm=float(mlp_norms[pos]),
                residual_norm=float(prompt.trace[f"blocks.{layer}.hook_resid_post"][0, pos].float().norm()),
                lens=_predictions(loaded, logits, min(LENS_TOP, logits.shape[0])),
                final_token_prob=float(probs[final_id]),
                final_token_rank=int((logits > logits[final_id]).sum()),
            )
        )
    # The last layer's lens is the real output, so it always qualifies. The default covers a
    # float tie that ranks the lens differently from the traced logits.
    first_on_top = next((stage.layer for stage in layers if stage.final_token_rank == 0), n_layers - 1)
    real_logits = prompt.trace["logits"][0, pos].float()
    final_token = _prediction(loaded, final_id, real_logits, torch.softmax(real_logits, dim=-1))
    return LayersStage(layers=layers, final_token=final_token, first_layer_on_top=first_on_top)


def _output(loaded: LoadedModel, prompt: PromptTrace, selected: TokenInfo, top_k: int) -> OutputStage:
    logits = prompt.trace["logits"][0, selected.position].float()
    probs = torch.softmax(logits, dim=-1)
    top = _predictions(loaded, logits, top_k)
    actual_next = None
    actual_rank = None
    if selected.position + 1 < len(prompt.ids):
        next_id = prompt.ids[selected.position + 1]
        actual_next = _prediction(loaded, next_id, logits, probs)
        actual_rank = int((logits > logits[next_id]).sum())
    return OutputStage(top=top, chosen=top[0], actual_next=actual_next, actual_next_rank=actual_rank)
