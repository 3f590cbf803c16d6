import torch

from nsn2n.nets import UNet2d


def test_untrained_network_is_the_identity():
    x = torch.rand(2, 1, 16, 24)
    assert torch.equal(UNet2d(8, 2)(x), x)


def test_shapes_and_gradients():
    net = UNet2d(8, 3)
    x = torch.rand(3, 1, 32, 16, requires_grad=True)
    y = net(x)
    assert y.shape == x.shape and net.multiple == 8
    y.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
