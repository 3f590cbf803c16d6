import numpy as np
import torch

from nsn2n.inference import predict_volume, tile_spans
from nsn2n.nets import UNet2d


def test_tile_cores_partition_the_axis():
    for length in (1, 7, 64, 100):
        spans = tile_spans(length, 32, 8)
        covered = [i for core0, core1, _, _ in spans for i in range(core0, core1)]
        assert covered == list(range(length))
        assert all(r0 <= c0 and c1 <= r1 for c0, c1, r0, r1 in spans)


def test_tiled_prediction_equals_untiled():
    torch.manual_seed(0)
    net = UNet2d(4, 2)
    for p in net.parameters():  # make it non-trivial: the head starts at zero
        torch.nn.init.normal_(p, std=0.1)
    slices = np.random.default_rng(0).random((3, 40, 52)).astype(np.float32)
    whole = predict_volume(net, slices, torch.device("cpu"), 4, tile=512)
    tiled = predict_volume(net, slices, torch.device("cpu"), 4, tile=16, margin=24)
    np.testing.assert_allclose(tiled, whole, atol=2e-2)


def test_identity_network_with_test_time_augmentation_returns_the_input():
    slices = np.random.default_rng(0).random((2, 24, 20)).astype(np.float32)
    out = predict_volume(UNet2d(4, 2), slices, torch.device("cpu"), 4, transforms=range(8))
    np.testing.assert_allclose(out, slices, atol=1e-6)
