import torch

from nsn2n.nets import MeanOf, UNet2d


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


def test_decoder_without_concatenation_is_the_block_on_the_concatenation():
    torch.manual_seed(0)
    net = UNet2d(4, 2)
    for level in range(net.depth):
        upsampled = torch.randn(2, 4 * 2 ** level, 8, 12)
        skip = torch.randn(2, 4 * 2 ** level, 8, 12)
        concatenated = net.decoders[level](torch.cat([upsampled, skip], dim=1))
        assert torch.allclose(net._decode(level, upsampled, skip), concatenated, atol=1e-6)
        # Swapping the halves gives another function: the test can tell them apart.
        assert not torch.allclose(net._decode(level, skip, upsampled), concatenated, atol=1e-3)


def test_mean_of_networks_is_the_mean_of_their_outputs():
    torch.manual_seed(0)
    first, second = UNet2d(4, 2), UNet2d(4, 2)
    for net in (first, second):
        for p in net.parameters():
            torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(2, 1, 16, 16)
    expected = 0.5 * (first(x) + second(x))
    torch.testing.assert_close(MeanOf([first, second])(x), expected)
