import torch
import torch.nn.functional as F

from adaptlab.train.losses import linear_cross_entropy


def test_linear_cross_entropy_matches_torch_value_and_gradients():
    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (37,))
    ours = linear_cross_entropy(h, w, y, chunk=8)
    ref = F.cross_entropy(h @ w.t(), y, reduction="sum")
    torch.testing.assert_close(ours, ref)
    gh, gw = torch.autograd.grad(ours * 0.5, (h, w))
    rh, rw = torch.autograd.grad(ref * 0.5, (h, w))
    torch.testing.assert_close(gh, rh)
    torch.testing.assert_close(gw, rw)


def test_frozen_head_gets_no_gradient():
    h = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(9, 4)
    loss = linear_cross_entropy(h, w, torch.tensor([1, 2, 3, 4, 5]))
    loss.backward()
    assert h.grad is not None and w.grad is None
