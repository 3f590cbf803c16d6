import numpy as np
import pytest
import torch

from nsn2n.inference import (BYTES_PER_PIXEL_CHANNEL, CPU_TILE, MAX_TILE, MIN_TILE, fallbacks,
                             predict_volume, tile_side, tile_spans)
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


class RunsOutOfMemoryAbove(torch.nn.Module):
    """A network that raises the out-of-memory error of a GPU on inputs wider than
    ``limit`` pixels, as a card would on tiles too large for it."""

    def __init__(self, net: torch.nn.Module, limit: int):
        super().__init__()
        self.net, self.limit, self.refusals = net, limit, 0

    def forward(self, x):
        if x.shape[-1] > self.limit:
            self.refusals += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)


def test_out_of_memory_retries_with_smaller_tiles_and_the_same_result():
    torch.manual_seed(0)
    net = UNet2d(4, 2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    slices = np.random.default_rng(0).random((2, 200, 200)).astype(np.float32)
    expected = predict_volume(net, slices, torch.device("cpu"), 4, tile=64, margin=24)
    picky = RunsOutOfMemoryAbove(net, limit=150)
    out = predict_volume(picky, slices, torch.device("cpu"), 4, tile=256, margin=24)
    assert picky.refusals == 2  # 256 and 128 px tiles (with margins) were refused
    np.testing.assert_array_equal(out, expected)


def test_out_of_memory_on_the_smallest_cpu_tiles_is_a_memory_error():
    slices = np.zeros((1, 300, 300), np.float32)
    with pytest.raises(MemoryError):
        predict_volume(RunsOutOfMemoryAbove(UNet2d(4, 2), limit=10), slices,
                       torch.device("cpu"), 4, tile=128)


def test_fallbacks_halve_the_tile_then_move_to_the_cpu():
    plan = list(fallbacks(torch.device("cuda"), 512))
    assert plan == [(torch.device("cuda"), 512), (torch.device("cuda"), 256),
                    (torch.device("cuda"), 128), (torch.device("cuda"), 64),
                    (torch.device("cpu"), CPU_TILE)]
    assert list(fallbacks(torch.device("cpu"), 384)) == [
        (torch.device("cpu"), 384), (torch.device("cpu"), 192), (torch.device("cpu"), 96)]


def test_tile_side_grows_with_free_memory_and_stays_in_bounds():
    net, cpu = UNet2d(16, 3), torch.device("cpu")
    assert tile_side(cpu, net, 8, 32) == CPU_TILE
    small = tile_side(cpu, net, 8, 32, free_bytes=2 ** 30)
    large = tile_side(cpu, net, 8, 32, free_bytes=16 * 2 ** 30)
    assert MIN_TILE <= small < large <= MAX_TILE and small % 32 == 0
    # a batch of tiles with their margins fits in half of the free memory
    assert 8 * 16 * BYTES_PER_PIXEL_CHANNEL * (small + 64) ** 2 <= 2 ** 29
    assert tile_side(cpu, net, 8, 32, free_bytes=10 ** 6) == MIN_TILE
