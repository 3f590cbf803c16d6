import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nsn2n.methods.speckle2self.losses import speckle2self_loss


def tensors(seed, shape):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_speckle2self_loss_reconstructs_own_input_and_compares_every_output_pair():
    inputs = [torch.full((1, 1, 2, 2), v) for v in (0.0, 1.0, 2.0)]
    loss, parts = speckle2self_loss(inputs, inputs)  # outputs equal their own inputs
    # reconstruction 0; consistency L1 |0-1| + |0-2| + |1-2| = 4
    assert parts["reconstruction"] == 0 and parts["consistency"] == pytest.approx(4.0)
    same = [torch.full((1, 1, 2, 2), 1.0)] * 3
    loss, parts = speckle2self_loss(same, inputs)
    # consistency 0; reconstruction MSE 1 + 0 + 1
    assert parts["consistency"] == 0 and float(loss) == pytest.approx(2.0)


def test_speckle2self_consistency_weight_scales_only_the_consistency_term():
    inputs = [torch.full((1, 1, 2, 2), v) for v in (0.0, 1.0, 2.0)]
    outputs = [torch.full((1, 1, 2, 2), v) for v in (0.5, 1.0, 1.0)]
    # reconstruction 0.25 + 0 + 1; consistency 0.5 + 0.5 + 0
    for weight in (0.0, 0.1, 1.0, 3.0):
        loss, parts = speckle2self_loss(outputs, inputs, consistency_weight=weight)
        assert parts == pytest.approx({"reconstruction": 1.25, "consistency": 1.0})
        assert float(loss) == pytest.approx(1.25 + weight)
    with pytest.raises(ValueError):
        speckle2self_loss(outputs, inputs, consistency_weight=-0.1)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_speckle2self_loss_gradients_reach_every_branch(seed):
    outputs = [tensors(seed + k, (1, 1, 4, 4)).requires_grad_() for k in range(3)]
    inputs = [tensors(seed + 10 + k, (1, 1, 4, 4)) for k in range(3)]
    loss, _ = speckle2self_loss(outputs, inputs)
    loss.backward()
    assert loss >= 0 and all(o.grad is not None and o.grad.abs().sum() > 0 for o in outputs)
