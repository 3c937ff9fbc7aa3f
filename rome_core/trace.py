"""Assembling and reading traces: the tensors a traced forward pass stores under hook names.

Hook names follow TransformerLens, with a batch dimension first:
  hook_tokens                      (batch, pos)              token ids
  hook_embed, hook_pos_embed       (batch, pos, d_model)     token and positional embeddings
  blocks.{i}.hook_resid_pre        (batch, pos, d_model)     residual stream entering block i
  blocks.{i}.attn.hook_pattern     (batch, head, query, key) attention weights
  blocks.{i}.hook_resid_mid        (batch, pos, d_model)     after the attention sublayer
  blocks.{i}.hook_resid_post       (batch, pos, d_model)     after the MLP sublayer
  ln_final.hook_normalized         (batch, pos, d_model)     after the final layer norm
  logits                           (batch, pos, vocab)       next-token logits
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rome_core.model import RomeGPT, Trace


def hook_names(n_layers: int) -> list[str]:
    """Every hook name a traced forward pass of an `n_layers` model stores, in computation order."""
    names = ["hook_tokens", "hook_embed", "hook_pos_embed"]
    for layer in range(n_layers):
        names += [
            f"blocks.{layer}.hook_resid_pre",
            f"blocks.{layer}.attn.hook_pattern",
            f"blocks.{layer}.hook_resid_mid",
            f"blocks.{layer}.hook_resid_post",
        ]
    return names + ["ln_final.hook_normalized", "logits"]


@torch.inference_mode()
def run_with_trace(model: RomeGPT, ids: list[int]) -> Trace:
    """Run one traced forward pass over `ids` (at most the context length) and return the trace."""
    trace: Trace = {}
    device = next(model.parameters()).device
    model(torch.tensor([ids], device=device), trace=trace)
    return trace


class SequenceTrace:
    """The trace of a whole window (prompt plus generated tokens), assembled from generation steps.

    A cached generation step traces only its newest query position; this class places each
    step's rows at their absolute positions, so panels can read the full (query, key) attention
    matrix and every position's logits as one forward pass over the window would give them.
    When the window slides, the generator recomputes the whole window and the rows restart.
    """

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.window_start = 0
        self._rows: dict[str, list[Tensor]] = {}

    @property
    def length(self) -> int:
        """Number of positions traced so far (in the current window)."""
        return len(self._rows.get("logits", []))

    def add(self, trace: Trace, positions: range, window_start: int) -> None:
        """Add a step's trace, which covers absolute positions `positions` of a window starting at `window_start`."""
        if window_start != self.window_start or positions.start == window_start:
            self.window_start = window_start
            self._rows = {}
        expected = positions.start - window_start
        if expected != self.length:
            raise ValueError(f"trace rows arrive out of order: expected position {expected}, got {positions.start}")
        for name, tensor in trace.items():
            if name.endswith("hook_pattern"):
                rows = list(tensor[0].transpose(0, 1))  # (query, head, key)
            else:
                rows = list(tensor[0])
            self._rows.setdefault(name, []).extend(rows)

    def __contains__(self, name: str) -> bool:
        return name in self._rows

    def get(self, name: str) -> Tensor:
        """The tensor under hook `name` for the whole window, shaped as a full forward pass would store it."""
        rows = self._rows[name]
        if name.endswith("hook_pattern"):
            keys = len(rows)
            padded = [torch.nn.functional.pad(row, (0, keys - row.shape[-1])) for row in rows]
            return torch.stack(padded, dim=1).unsqueeze(0)  # (1, head, query, key)
        return torch.stack(rows).unsqueeze(0)

    def as_trace(self) -> Trace:
        return {name: self.get(name) for name in self._rows}


@dataclass(frozen=True)
class Neighbour:
    id: int
    similarity: float


@torch.inference_mode()
def nearest_tokens(model: RomeGPT, token_id: int, k: int = 8) -> list[Neighbour]:
    """Return the `k` tokens whose learned embeddings have the highest cosine similarity to `token_id`'s."""
    table = model.embed.weight.float()
    sims = torch.nn.functional.cosine_similarity(table, table[token_id].unsqueeze(0), dim=-1)
    sims[token_id] = -float("inf")
    top = torch.topk(sims, min(k, table.shape[0] - 1))
    return [Neighbour(id=int(i), similarity=float(s)) for s, i in zip(top.values, top.indices)]


@torch.inference_mode()
def logit_lens(model: RomeGPT, trace: Trace) -> Tensor:
    """Next-token logits read off the residual stream after each block, shape (n_layers, pos, vocab).

    Row i passes `blocks.{i}.hook_resid_post` through the model's own final layer norm and head,
    so the last row equals the real `logits`.
    """
    rows = []
    for layer in range(model.config.n_layers):
        resid = trace[f"blocks.{layer}.hook_resid_post"][0].to(model.ln_final.weight.dtype)
        rows.append(model.unembed(model.ln_final(resid)).float())
    return torch.stack(rows)


def sublayer_norms(trace: Trace, layer: int) -> tuple[Tensor, Tensor]:
    """L2 norms (per position) of what block `layer`'s attention and MLP add to the residual stream."""
    pre = trace[f"blocks.{layer}.hook_resid_pre"][0].float()
    mid = trace[f"blocks.{layer}.hook_resid_mid"][0].float()
    post = trace[f"blocks.{layer}.hook_resid_post"][0].float()
    return (mid - pre).norm(dim=-1), (post - mid).norm(dim=-1)


@torch.inference_mode()
def position_similarity(model: RomeGPT, position: int) -> Tensor:
    """Return the cosine similarity of `position`'s positional embedding to every position's, shape (context_length,)."""
    table = model.pos_embed.weight.float()
    return torch.nn.functional.cosine_similarity(table, table[position].unsqueeze(0), dim=-1)


# -- Readers for the app's panels -------------------------------------------------------------


def attention_grid(pattern: Tensor, head: int | None, queries: range, keys: range) -> list[list[float]]:
    """Attention weights of one head (or the mean over heads when `head` is None) as nested lists.

    `pattern` is a `hook_pattern` tensor shaped (1, head, query, key); `queries` and `keys` index
    its query and key axes. Row r, column c is the weight query `queries[r]` gives key `keys[c]`.
    """
    weights = pattern[0].float().mean(dim=0) if head is None else pattern[0, head].float()
    return weights[queries.start : queries.stop, keys.start : keys.stop].tolist()


def top_next_tokens(logits_row: Tensor, k: int) -> list[tuple[int, float]]:
    """Return the `k` most likely next tokens of one logits row (shape (vocab,)) at temperature 1, as (id, probability)."""
    probs = torch.softmax(logits_row.float(), dim=-1)
    top = torch.topk(probs, min(k, probs.shape[-1]))
    return [(int(i), float(p)) for p, i in zip(top.values, top.indices)]


def token_probability(logits_row: Tensor, token_id: int) -> tuple[float, int]:
    """Return the probability (temperature 1) of `token_id` under one logits row, and its rank (1 = most likely)."""
    probs = torch.softmax(logits_row.float(), dim=-1)
    prob = probs[token_id]
    return float(prob), int((probs > prob).sum()) + 1


def trace_to_dict(trace: SequenceTrace, k: int = 10, decimals: int = 5) -> dict:
    """Copy a window's trace into JSON-ready lists: token ids, every layer's attention and each position's top-k.

    attention[layer][head][query] lists the weights of keys 0..query (the causal part only, because
    later keys are always 0). top_k[position] lists the `k` most likely next tokens as [id, probability].
    NOTE: a full 512-token window of the 22M model gives about 6 million attention weights.
    """
    tokens = trace.get("hook_tokens")[0].tolist() if "hook_tokens" in trace else []
    attention = []
    for layer in range(trace.n_layers):
        pattern = trace.get(f"blocks.{layer}.attn.hook_pattern")[0].float()
        attention.append([
            [[round(w, decimals) for w in pattern[head, query, : query + 1].tolist()] for query in range(pattern.shape[1])]
            for head in range(pattern.shape[0])
        ])
    logits = trace.get("logits")[0]
    top_k = [[[i, round(p, decimals)] for i, p in top_next_tokens(row, k)] for row in logits]
    return {"window_start": trace.window_start, "token_ids": tokens, "attention": attention, "top_k": top_k}
