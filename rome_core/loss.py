"""The output layer and its cross-entropy, fused and computed in row chunks.

The usual recipe, `F.cross_entropy(unembed(x).float(), targets)`, builds the whole
(tokens, vocab) logits matrix, an fp32 copy of it, an fp32 log-softmax and, in the backward
pass, a full gradient that the output layer's matrix multiplies then read transposed. For a
16 x 512-token batch and a 3000-token vocabulary each of those is 50-100 MB, and on a CPU the
copies and the allocator churn they cause are a real cost on a CPU. Here each chunk of rows
gets its logits computed, reduced to one log-sum-exp per row and dropped. The backward pass
recomputes them chunk by chunk and feeds the gradient straight into the weight and input
gradients. The result equals the unfused path up to rounding (tests/test_loss.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Rows per chunk: 512 rows x 3000 fp32 logits is 6 MB, and 512 rows keep the matrix multiplies efficient.
CHUNK_ROWS = 512


class HeadCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of softmax(x W^T + b) against `targets`, x of shape (rows, width).

    The matrix multiplies run in `dtype` (bf16 under autocast); softmax and its sums run in fp32.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, targets: Tensor, dtype: torch.dtype) -> Tensor:
        rows = x.shape[0]
        xc, wc, bc = x.to(dtype), weight.to(dtype), bias.to(dtype)
        log_sum_exp = torch.empty(rows, dtype=torch.float32, device=x.device)
        total = torch.zeros((), dtype=torch.float32, device=x.device)
        for start in range(0, rows, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, rows)
            logits = torch.addmm(bc, xc[start:end], wc.t()).float()
            lse = torch.logsumexp(logits, dim=-1)
            log_sum_exp[start:end] = lse
            total += (lse - logits.gather(1, targets[start:end, None]).squeeze(1)).sum()
        ctx.save_for_backward(xc, wc, bc, targets, log_sum_exp)
        ctx.x_dtype = x.dtype
        return total / rows

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        xc, wc, bc, targets, log_sum_exp = ctx.saved_tensors
        rows = xc.shape[0]
        scale = grad_output.float() / rows
        grad_x = torch.empty(xc.shape, dtype=ctx.x_dtype, device=xc.device)
        grad_weight = torch.zeros(wc.shape, dtype=torch.float32, device=xc.device)
        grad_bias = torch.zeros(bc.shape, dtype=torch.float32, device=xc.device)
        for start in range(0, rows, CHUNK_ROWS):
            end = min(start + CHUNK_ROWS, rows)
            logits = torch.addmm(bc, xc[start:end], wc.t()).float()
            # d loss / d logits = (softmax(logits) - one_hot(target)) / rows.
            probs = torch.exp(logits.sub_(log_sum_exp[start:end, None]))
            index = targets[start:end, None]
            probs.scatter_add_(1, index, torch.full(index.shape, -1.0, device=xc.device))
            probs.mul_(scale)
            grad_bias += probs.sum(0)
            grad_logits = probs.to(xc.dtype)
            grad_x[start:end] = grad_logits @ wc
            grad_weight += grad_logits.t() @ xc[start:end]
        return grad_x, grad_weight, grad_bias, None, None


def head_cross_entropy(x: Tensor, head: torch.nn.Linear, targets: Tensor) -> Tensor:
    """Mean next-token cross-entropy of `head(x)`, for x (batch, seq, width) and targets (batch, seq).

    Under autocast the matrix multiplies run in the autocast dtype, as `head(x)` would.
    """
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    return HeadCrossEntropy.apply(x.flatten(0, 1), head.weight, head.bias, targets.flatten(), dtype)
