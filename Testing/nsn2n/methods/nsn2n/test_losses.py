import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nsn2n.methods.nsn2n.losses import (interslice_continuity_loss, nsn2n_loss, reconstruction_loss,
                          regional_consistency_loss, weighted_mse)


def tensors(seed, shape=(2, 3, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_weighted_mse_is_the_mean_over_active_pixels(seed):
    a, b = tensors(seed), tensors(seed + 1)
    w = (tensors(seed + 2) > 0.5).float()
    if w.sum() == 0:
        w[0, 0, 0, 0] = 1
    expected = ((a - b) ** 2)[w.bool()].mean()
    assert torch.allclose(weighted_mse(a, b, w), expected, atol=1e-6)


def test_weighted_mse_ignores_masked_pixels_and_survives_empty_mask():
    a, b = torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    b[0, 0, 0, 0] = 100.0
    w = torch.ones_like(a)
    w[0, 0, 0, 0] = 0
    assert weighted_mse(a, b, w) == 0
    assert weighted_mse(a, b, torch.zeros_like(a)) == 0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_losses_are_nonnegative_and_zero_for_perfect_agreement(seed):
    x = tensors(seed)
    w = torch.ones(2, 2, 4, 4)
    total, parts = nsn2n_loss(x, x, w, 0.5 * (x[:, :-1] + x[:, 1:]), 0.5, 1.0)
    assert total >= 0 and all(v >= 0 for v in parts.values())
    same = x[:, :1].expand(-1, 3, -1, -1)
    total, parts = nsn2n_loss(same, same, w, same[:, :2], 0.5, 1.0)
    assert float(total) == 0


def test_reconstruction_uses_both_directions():
    # Output equal to the next slice satisfies one direction only.
    inputs = torch.stack([torch.zeros(4, 4), torch.ones(4, 4)])[None]
    outputs = inputs.flip(1)  # y_0 = x_1, y_1 = x_0: both directions perfect
    w = torch.ones(1, 1, 4, 4)
    assert reconstruction_loss(outputs, inputs, w) == 0
    assert reconstruction_loss(inputs, inputs, w) == 1.0  # each direction off by 1


def test_symmetric_recon_equals_mse_to_neighbour_mean_plus_constant():
    # 0.5(|y-a|^2 + |y-b|^2) = |y - (a+b)/2|^2 + |a-b|^2 / 4: the same gradient as the mean.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 4, 4, generator=g)
    y = torch.rand(1, 3, 4, 4, generator=g, requires_grad=True)
    w = torch.ones(1, 2, 4, 4)
    reconstruction_loss(y, x, w).backward()
    grad_middle = y.grad[0, 1]
    # y_1 is the forward output of pair (1, 2) and the backward output of pair (0, 1);
    # each weighted mean runs over 2 pairs x 16 active pixels.
    expected = 2 * (y[0, 1] - 0.5 * (x[0, 0] + x[0, 2])) / 32
    assert torch.allclose(grad_middle, expected.detach(), atol=1e-6)


def test_regional_consistency_flows_into_both_outputs():
    y = torch.rand(1, 2, 3, 3, requires_grad=True)
    regional_consistency_loss(y, torch.ones(1, 1, 3, 3)).backward()
    assert y.grad[0, 0].abs().sum() > 0 and y.grad[0, 1].abs().sum() > 0


def test_interslice_continuity_target_is_detached():
    y = torch.rand(1, 2, 3, 3, requires_grad=True)
    mid = torch.rand(1, 1, 3, 3, requires_grad=True)
    interslice_continuity_loss(mid, y).backward()
    assert y.grad is None or float(y.grad.abs().sum()) == 0
    assert float(mid.grad.abs().sum()) > 0


def test_lambda_zero_drops_terms_and_ic_requires_midpoints():
    x = tensors(3)
    w = torch.ones(2, 2, 4, 4)
    total, parts = nsn2n_loss(x, x.flip(1), w, None, 0.0, 0.0)
    assert set(parts) == {"recon"} and torch.isclose(total, torch.tensor(parts["recon"]))
    import pytest

    with pytest.raises(ValueError):
        nsn2n_loss(x, x, w, None, 0.5, 1.0)
