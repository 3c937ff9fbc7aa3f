"""Causal self-attention for training on the CPU, with a faster backward pass.

PyTorch's CPU flash-attention forward is quick, but its backward took about 85 ms of a
113 ms forward-and-backward per layer here (rome-22m, batch 16, bf16), nearly a third of a
training step. `CausalAttention` keeps that forward and replaces the backward with batched
matrix multiplies over blocks of queries, skipping the key blocks the causal mask hides:

    P  = exp(Q K^T / sqrt(d) - lse)        softmax rows, rebuilt from the forward's log-sum-exp
    dV = P^T dO
    dS = P * (dO V^T - delta)              delta = rowsum(dO * O), the softmax backward
    dQ = dS K / sqrt(d),  dK = dS^T Q / sqrt(d)

`lse` and `delta` ride along as two extra columns of the operands (as a high and a low bf16
part), so the subtraction happens inside the fp32 accumulation of the matrix multiply and
the result is rounded to bf16 once. bench/attention_speed.py measures it against SDPA.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# Queries per block of the backward pass: blocks of 128 measured fastest at context 512.
QUERY_BLOCK = 128


class CausalAttention(torch.autograd.Function):
    """softmax(Q K^T / sqrt(d) + causal mask) V for q, k, v of shape (batch, heads, seq, d_head)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, 0.0, True)[:2]
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v, out, lse = ctx.saved_tensors
        batch, heads, seq, d_head = q.shape
        n = batch * heads
        dtype = q.dtype
        scale = 1.0 / math.sqrt(d_head)
        delta = (grad_out.float() * out.float()).sum(-1)

        # Row operands carry [-lse] or [-delta] in two extra columns; column operands carry ones
        # there. Each is written once, straight from whatever layout autograd hands over.
        q_ext = _extended_rows(q, scale, -lse).view(n, seq, d_head + 2)
        grad_ext = _extended_rows(grad_out, 1.0, -delta).view(n, seq, d_head + 2)
        k_ext_t = _extended_columns(k).view(n, d_head + 2, seq)
        v_ext_t = _extended_columns(v).view(n, d_head + 2, seq)
        q_scaled, grad = q_ext[..., :d_head], grad_ext[..., :d_head]
        k_scaled = torch.mul(k, scale, out=q.new_empty(q.shape)).view(n, seq, d_head)

        dq = torch.empty(n, seq, d_head, dtype=dtype)
        dk = torch.zeros(n, seq, d_head, dtype=dtype)
        dv = torch.zeros(n, seq, d_head, dtype=dtype)
        hidden = torch.ones(QUERY_BLOCK, QUERY_BLOCK, dtype=torch.bool).triu(1)
        for start in range(0, seq, QUERY_BLOCK):
            end = min(start + QUERY_BLOCK, seq)
            # Queries start..end see keys 0..end; inside the diagonal block, only keys up to their own position.
            probs = torch.bmm(q_ext[:, start:end], k_ext_t[:, :, :end]).exp_()
            probs[:, :, start:end].masked_fill_(hidden[: end - start, : end - start], 0.0)
            dv[:, :end].baddbmm_(probs.transpose(1, 2), grad[:, start:end])
            dscores = torch.bmm(grad_ext[:, start:end], v_ext_t[:, :, :end]).mul_(probs)
            dq[:, start:end] = torch.bmm(dscores, k_scaled[:, :end])
            dk[:, :end].baddbmm_(dscores.transpose(1, 2), q_scaled[:, start:end])
        shape = q.shape
        return dq.view(shape), dk.view(shape), dv.view(shape)


def _extended_rows(x: Tensor, scale: float, offset: Tensor) -> Tensor:
    """[x * scale, hi, lo] of shape (..., seq, d + 2), where hi + lo is `offset` (fp32, (..., seq))
    split into two parts of x's dtype, so bf16 keeps about 16 bits of it."""
    ext = x.new_empty(*x.shape[:-1], x.shape[-1] + 2)
    torch.mul(x, scale, out=ext[..., :-2])
    hi = offset.to(x.dtype)
    ext[..., -2] = hi
    ext[..., -1] = offset - hi.float()
    return ext


def _extended_columns(x: Tensor) -> Tensor:
    """x transposed to (..., d, seq) with two rows of ones below it: (..., d + 2, seq)."""
    ext = x.new_empty(*x.shape[:-2], x.shape[-1] + 2, x.shape[-2])
    ext[..., :-2, :].copy_(x.transpose(-1, -2))
    ext[..., -2:, :] = 1.0
    return ext


def causal_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Causal attention for training: the blocked backward on the CPU, PyTorch's SDPA elsewhere."""
    if q.device.type == "cpu" and torch.is_grad_enabled() and q.requires_grad:
        return CausalAttention.apply(q, k, v)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
