"""Cross-entropy over the vocabulary, computed in row chunks.

`F.cross_entropy(logits.float(), targets)` on bf16 logits makes a full fp32 copy of the
(tokens, vocab) logits, a full fp32 log-softmax and, in the backward pass, a full fp32 gradient
that is cast back to bf16. For a 16 x 512-token batch and a 3000-token vocabulary each of those
is about 100 MB. This version walks the rows in chunks that stay in the CPU cache, keeps only the
log-sum-exp per row, and writes the gradient straight into the logits' dtype. The result equals
F.cross_entropy up to fp32 rounding; bench/train_speed.py measures the gain.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Rows per chunk: 256 rows x 3000 fp32 values is about 3 MB, which fits in L2 on current CPUs.
CHUNK_ROWS = 256


class ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `logits` (rows, vocab) against `targets` (rows,)."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor) -> Tensor:
        rows = logits.shape[0]
        log_sum_exp = torch.empty(rows, dtype=torch.float32, device=logits.device)
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, rows, CHUNK_ROWS):
            chunk = logits[start : start + CHUNK_ROWS].float()
            lse = torch.logsumexp(chunk, dim=-1)
            log_sum_exp[start : start + CHUNK_ROWS] = lse
            target_logits = chunk.gather(1, targets[start : start + CHUNK_ROWS, None]).squeeze(1)
            total += (lse - target_logits).sum()
        ctx.save_for_backward(logits, targets, log_sum_exp)
        return total / rows

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:
        logits, targets, log_sum_exp = ctx.saved_tensors
        rows = logits.shape[0]
        grad = torch.empty_like(logits)
        scale = grad_output.float() / rows
        for start in range(0, rows, CHUNK_ROWS):
            chunk = logits[start : start + CHUNK_ROWS].float()
            # d loss / d logits = softmax(logits) - one_hot(target), averaged over rows.
            probs = torch.exp(chunk - log_sum_exp[start : start + CHUNK_ROWS, None])
            index = targets[start : start + CHUNK_ROWS, None]
            probs.scatter_add_(1, index, torch.full(index.shape, -1.0, device=logits.device))
            grad[start : start + CHUNK_ROWS] = probs * scale
        return grad, None


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy for logits (batch, seq, vocab) and targets (batch, seq)."""
    return ChunkedCrossEntropy.apply(logits.flatten(0, 1), targets.flatten())
