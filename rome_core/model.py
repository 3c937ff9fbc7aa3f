"""The RomeGPT transformer.

token ids -> token embedding + positional embedding -> n pre-norm blocks
(causal self-attention, then an MLP, each added to the residual stream)
-> final layer norm -> linear head over the vocabulary.

Passing a `trace` dict to `forward` records the intermediate tensors under
TransformerLens hook names (`blocks.3.attn.hook_pattern`, ...). Traced runs
compute attention explicitly so the pattern can be stored; untraced runs use
the fused `scaled_dot_product_attention` kernel (with a faster backward pass for
training on the CPU, rome_core/attention.py). All give the same logits. Passing
`targets` returns the training loss from a fused output layer (rome_core/loss.py).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rome_core.attention import causal_attention
from rome_core.config import ModelConfig
from rome_core.loss import head_cross_entropy

Trace = dict[str, Tensor]


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to the context length."""

    def __init__(self, config: ModelConfig, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        shape = (config.n_layers, batch, config.n_heads, config.context_length, config.d_head)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store this step's keys and values for one layer; return all keys and values so far."""
        start, end = self.length, self.length + k.shape[2]
        self.keys[layer, :, :, start:end] = k
        self.values[layer, :, :, start:end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.d_head = config.d_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout
        self.blocked_backward = True

    def forward(self, x: Tensor, layer: int, kv_cache: KVCache | None, trace: Trace | None) -> Tensor:
        batch, seq, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        # (batch, seq, width) -> (batch, heads, seq, d_head)
        q, k, v = (t.view(batch, seq, self.n_heads, self.d_head).transpose(1, 2) for t in (q, k, v))

        past = 0
        if kv_cache is not None:
            past = kv_cache.length
            k, v = kv_cache.append(layer, k, v)

        # A single new query after a cache may see every cached key, so it needs no mask.
        # A multi-token chunk appended after a cache still needs the causal mask, offset by `past`.
        single_query = seq == 1 and past > 0
        if trace is None:
            if past == 0 and self.blocked_backward and not (self.training and self.dropout > 0):
                out = causal_attention(q, k, v)
            elif past == 0:
                out = F.scaled_dot_product_attention(
                    q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
                )
            elif single_query:
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=_causal_mask(seq, past, x.device))
        else:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.d_head)
            if not single_query:
                scores = scores.masked_fill(~_causal_mask(seq, past, x.device), float("-inf"))
            pattern = torch.softmax(scores.float(), dim=-1).to(q.dtype)
            trace[f"blocks.{layer}.attn.hook_pattern"] = pattern.detach()
            out = pattern @ v

        out = out.transpose(1, 2).contiguous().view(batch, seq, width)
        return self.proj(out)


def _causal_mask(seq: int, past: int, device: torch.device) -> Tensor:
    """Boolean (seq, past + seq) mask: query i may attend to keys 0 .. past + i."""
    rows = torch.arange(seq, device=device).unsqueeze(1) + past
    cols = torch.arange(past + seq, device=device).unsqueeze(0)
    return cols <= rows


def _dropout(x: Tensor, p: float, training: bool) -> Tensor:
    # A plain function rather than nn.Dropout: traced generation calls it 13 times a token, and
    # with p = 0 or in eval mode it should cost nothing.
    return F.dropout(x, p, training=True) if training and p > 0 else x


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.fc_in = nn.Linear(config.d_model, config.d_mlp)
        self.fc_out = nn.Linear(config.d_mlp, config.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_out(F.gelu(self.fc_in(x)))


class Block(nn.Module):
    """One pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)
        self.dropout = config.dropout

    def forward(self, x: Tensor, layer: int, kv_cache: KVCache | None = None, trace: Trace | None = None) -> Tensor:
        if trace is not None:
            trace[f"blocks.{layer}.hook_resid_pre"] = x.detach()
        x = x + _dropout(self.attn(self.ln1(x), layer, kv_cache, trace), self.dropout, self.training)
        if trace is not None:
            trace[f"blocks.{layer}.hook_resid_mid"] = x.detach()
        x = x + _dropout(self.mlp(self.ln2(x)), self.dropout, self.training)
        if trace is not None:
            trace[f"blocks.{layer}.hook_resid_post"] = x.detach()
        return x


class RomeGPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_embed = nn.Embedding(config.context_length, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_final = nn.LayerNorm(config.d_model)
        # Not tied to the embedding, by design: input and output token vectors are learned separately.
        self.unembed = nn.Linear(config.d_model, config.vocab_size)
        self.apply(self._init_weights)
        # Scale the projections that write into the residual stream by 1/sqrt(2 * layers), as GPT-2 does,
        # so the stream's variance does not grow with depth at initialisation.
        for name, param in self.named_parameters():
            if name.endswith("attn.proj.weight") or name.endswith("mlp.fc_out.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        ids: Tensor,
        kv_cache: KVCache | None = None,
        trace: Trace | None = None,
        targets: Tensor | None = None,
    ) -> Tensor:
        """Return next-token logits of shape (batch, seq, vocab) for `ids` of shape (batch, seq).

        With `kv_cache`, `ids` continue the cached tokens and positions count on from the cache.
        With `trace`, every hook point is stored in it. With `targets` (batch, seq), return the
        mean cross-entropy instead, computed without materialising the logits (rome_core/loss.py).
        """
        batch, seq = ids.shape
        start = kv_cache.length if kv_cache is not None else 0
        if start + seq > self.config.context_length:
            raise ValueError(
                f"sequence of {start + seq} tokens exceeds the context length {self.config.context_length}"
            )
        positions = torch.arange(start, start + seq, device=ids.device)
        tok = self.embed(ids)
        pos = self.pos_embed(positions).unsqueeze(0)
        if trace is not None:
            trace["hook_tokens"] = ids.detach()
            trace["hook_embed"] = tok.detach()
            trace["hook_pos_embed"] = pos.detach().expand(batch, -1, -1)
        x = _dropout(tok + pos, self.config.dropout, self.training)
        for layer, block in enumerate(self.blocks):
            x = block(x, layer, kv_cache, trace)
        if kv_cache is not None:
            kv_cache.length += seq
        x = self.ln_final(x)
        if targets is not None and trace is None:
            return head_cross_entropy(x, self.unembed, targets)
        logits = self.unembed(x)
        if trace is not None:
            trace["ln_final.hook_normalized"] = x.detach()
            trace["logits"] = logits.detach()
        if targets is not None:
            return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        return logits

    def use_blocked_attention(self, enabled: bool) -> None:
        """Choose the blocked CPU attention backward (rome_core/attention.py) or plain SDPA for training."""
        for block in self.blocks:
            block.attn.blocked_backward = enabled

    def new_kv_cache(self, batch: int = 1) -> KVCache:
        param = next(self.parameters())
        return KVCache(self.config, batch, param.device, param.dtype)


class FlatDecoder:
    """RomeGPT's single-token inference step, written flat: `forward` on one cached token, faster.

    A step's 25 matrix-vector products take about 1.7 ms on a 2-core CPU. Through `forward`, the
    module calls, attribute look-ups, reshapes and cache slices around them add about as much
    again. This class reads the weights into plain tuples once, at construction, so build one per
    generation run, after any change to the weights.
    """

    def __init__(self, model: RomeGPT) -> None:
        self.config = model.config
        self.n_heads, self.d_head = model.config.n_heads, model.config.d_head
        self.embed, self.pos_embed = model.embed.weight, model.pos_embed.weight
        self.layers = [
            (
                block.ln1.weight, block.ln1.bias,
                block.attn.qkv.weight, block.attn.qkv.bias,
                block.attn.proj.weight, block.attn.proj.bias,
                block.ln2.weight, block.ln2.bias,
                block.mlp.fc_in.weight, block.mlp.fc_in.bias,
                block.mlp.fc_out.weight, block.mlp.fc_out.bias,
            )
            for block in model.blocks
        ]
        self.final = (model.ln_final.weight, model.ln_final.bias, model.unembed.weight, model.unembed.bias)

    def step(self, token: int, kv_cache: KVCache) -> Tensor:
        """Return the next-token logits (vocab,) after one new `token` of a batch-1 sequence, extending `kv_cache`."""
        position = kv_cache.length
        if position >= self.config.context_length:
            raise ValueError(f"cache full at the context length {position}; slide the window first")
        width = (self.config.d_model,)
        x = self.embed[token] + self.pos_embed[position]
        for layer, (ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, in_w, in_b, out_w, out_b) in enumerate(self.layers):
            h = F.layer_norm(x, width, ln1_w, ln1_b)
            # (3 * width,) -> q, k, v of shape (batch 1, heads, 1 query, d_head)
            q, k, v = torch.addmv(qkv_b, qkv_w, h).view(3, 1, self.n_heads, 1, self.d_head)
            keys, values = kv_cache.append(layer, k, v)
            out = F.scaled_dot_product_attention(q, keys, values)  # one query attends to every cached key
            x = x + torch.addmv(proj_b, proj_w, out.view(-1))
            h = F.layer_norm(x, width, ln2_w, ln2_b)
            x = x + torch.addmv(out_b, out_w, F.gelu(torch.addmv(in_b, in_w, h)))
        kv_cache.length += 1
        ln_w, ln_b, unembed_w, unembed_b = self.final
        return torch.addmv(unembed_b, unembed_w, F.layer_norm(x, width, ln_w, ln_b))
