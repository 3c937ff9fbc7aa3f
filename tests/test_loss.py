"""The fused output layer + cross-entropy against the plain PyTorch computation."""

import pytest
import torch
import torch.nn.functional as F

from rome_core.config import PRESETS
from rome_core.loss import CHUNK_ROWS, head_cross_entropy
from rome_core.model import RomeGPT


def _plain(x, head, targets):
    return F.cross_entropy(head(x).flatten(0, 1).float(), targets.flatten())


def _loss_and_grads(loss_fn, x, head, targets):
    x = x.detach().clone().requires_grad_(True)
    head.zero_grad(set_to_none=True)
    loss = loss_fn(x, head, targets)
    loss.backward()
    return loss.detach(), x.grad, head.weight.grad.clone(), head.bias.grad.clone()


def test_fused_loss_fp32():
    torch.manual_seed(0)
    head = torch.nn.Linear(24, 50)
    # More rows than one chunk and not a multiple of it, so the last chunk is partial.
    x = torch.randn(3, CHUNK_ROWS // 2 + 7, 24)
    targets = torch.randint(0, 50, (3, CHUNK_ROWS // 2 + 7))
    fused = _loss_and_grads(head_cross_entropy, x, head, targets)
    plain = _loss_and_grads(_plain, x, head, targets)
    for name, got, want in zip(("loss", "dx", "dW", "db"), fused, plain):
        assert got.dtype == want.dtype, name
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6, msg=name)


def test_fused_loss_bf16_autocast():
    torch.manual_seed(0)
    head = torch.nn.Linear(64, 300)
    x = torch.randn(2, 700, 64)
    targets = torch.randint(0, 300, (2, 700))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = _loss_and_grads(head_cross_entropy, x, head, targets)
        plain = _loss_and_grads(_plain, x, head, targets)
    assert fused[0].dtype == torch.float32
    assert fused[2].dtype == torch.float32  # the fp32 parameter gets an fp32 gradient
    for name, got, want in zip(("loss", "dx", "dW", "db"), fused, plain):
        torch.testing.assert_close(got, want.to(got.dtype), rtol=2e-2, atol=2e-3, msg=name)


def test_model_targets_loss():
    torch.manual_seed(0)
    model = RomeGPT(PRESETS["tiny"])
    ids = torch.randint(0, model.config.vocab_size, (2, 33))
    targets = torch.randint(0, model.config.vocab_size, (2, 33))
    logits = model(ids)
    expected = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert model(ids, targets=targets).item() == pytest.approx(expected.item(), rel=1e-6)
    assert model(ids, trace={}, targets=targets).item() == pytest.approx(expected.item(), rel=1e-6)
