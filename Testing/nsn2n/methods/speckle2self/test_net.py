import pytest
import torch

from nsn2n.methods.speckle2self.net import SpeckleNet


def test_speckle_net_has_the_published_size_and_no_shortcut():
    net = SpeckleNet()  # width 32, four levels: the authors' layer list
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert [count(e) for e in net.encoders] == [1_955_520] * 3
    assert count(net.decoder) == 1_955_265 and net.multiple == 16
    # Skip-free: the code of a 32x32 input is 2x2; the output never sees the input directly.
    x = torch.rand(2, 1, 32, 32)
    assert net.encoders[0](x).shape == (2, 256, 2, 2)


def test_speckle_net_branches_share_the_decoder_and_inference_uses_the_full_scale():
    torch.manual_seed(0)
    net = SpeckleNet(width=4, levels=2)
    copies = [torch.rand(2, 1, 8, 12) for _ in range(3)]
    outputs = net.forward_scales(copies)
    assert [o.shape for o in outputs] == [(2, 1, 8, 12)] * 3
    assert torch.allclose(outputs[0], net(copies[0]), atol=1e-6)
    assert (outputs[0] >= 0).all()  # instance norm then ReLU, as published
    sum(o.sum() for o in outputs).backward()
    assert all(p.grad is not None for p in net.parameters())


def test_published_output_layer_zeroes_a_fixed_share_of_any_output():
    """Instance norm then ReLU: a fraction p >= m^2 / (1 - m^2 - s^2) of the pixels is exactly
    zero, m and s the output's mean and std.  Why Speckle2Self's published layer cannot fit a
    mid-gray B-mode image (docs/speckle2self.md)."""

    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = SpeckleNet(width=4, levels=2, output_norm="instance").eval()
    with torch.no_grad():
        for _ in range(5):
            image = torch.rand(1, 1, 32, 32, generator=generator)
            y = model(image * torch.rand(1, generator=generator))[0, 0].double()
            m, second = y.mean(), (y ** 2).mean()
            bound = m ** 2 / (1 - second)
            assert bound > 0.05  # not vacuous
            assert (y == 0).double().mean() >= bound * 0.999
