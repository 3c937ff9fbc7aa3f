import torch
import torch.nn.functional as F

from rome_core.loss import CHUNK_ROWS, cross_entropy


def test_chunked_loss_matches_cross_entropy():
    torch.manual_seed(0)
    # More rows than one chunk and not a multiple of it, so the last chunk is partial.
    logits = torch.randn(3, CHUNK_ROWS // 2 + 7, 50, requires_grad=True)
    targets = torch.randint(0, 50, (3, CHUNK_ROWS // 2 + 7))
    loss = cross_entropy(logits, targets)
    loss.backward()
    reference_logits = logits.detach().clone().requires_grad_(True)
    reference = F.cross_entropy(reference_logits.flatten(0, 1), targets.flatten())
    reference.backward()
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(logits.grad, reference_logits.grad)


def test_chunked_loss_keeps_bf16_gradient():
    logits = torch.randn(2, 8, 30, dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, 30, (2, 8))
    loss = cross_entropy(logits, targets)
    loss.backward()
    assert loss.dtype == torch.float32
    assert logits.grad.dtype == torch.bfloat16
    reference = F.cross_entropy(logits.detach().float().flatten(0, 1), targets.flatten())
    torch.testing.assert_close(loss, reference)
