import numpy as np
import pytest
import torch

from nsn2n.bench.speckle import SpeckleCase, simulate
from nsn2n.guard import residual_guard
from nsn2n.pairs import gaussian_lowpass
from nsn2n.speckle_restore import (GRAIN_RANGE, half_max_width, restore, restore_local_mean,
                                   speckle_band_std, speckle_grain)


def test_half_max_width_interpolates_and_saturates():
    assert half_max_width(np.array([1.0, 0.75, 0.25, 0.0])) == pytest.approx(1.5)
    assert half_max_width(np.array([1.0, 0.5, 0.4])) == pytest.approx(1.0)
    assert half_max_width(np.array([1.0, 0.9, 0.8])) == 3.0


@pytest.mark.parametrize("axial, lateral", [(1.0, 2.5), (1.5, 4.0), (3.0, 1.2)])
def test_grain_follows_the_larger_psf_width(axial, lateral):
    noisy = simulate(SpeckleCase("grain", shape=(4, 128, 128), axial_sigma=axial,
                                 lateral_sigma=lateral, seed=5))["noisy"]
    assert speckle_grain(noisy) == pytest.approx(max(axial, lateral), rel=0.2)


def test_grain_of_constant_frames_is_the_floor():
    assert speckle_grain(np.ones((2, 32, 32))) == GRAIN_RANGE[0]
    with pytest.raises(ValueError):
        speckle_grain(np.ones((32, 32)))


def test_a_lost_offset_comes_back_exactly():
    rng = np.random.default_rng(0)
    noisy = rng.random((3, 40, 30))
    restored = restore_local_mean(noisy, noisy - 0.3, sigma=4.0)
    assert np.allclose(restored, noisy, atol=1e-9)


def test_removed_fine_noise_stays_removed_and_coarse_loss_returns():
    y, x = np.mgrid[0:64, 0:64]
    clean = np.where((y - 32) ** 2 + (x - 32) ** 2 < 15 ** 2, 1.0, 0.0)[None]
    checker = 0.5 * (-1.0) ** (y + x)[None]  # the finest possible noise
    # A "denoiser" that removed the noise and also half of the disk's contrast.
    restored = restore_local_mean(clean + checker, 0.5 * clean, sigma=3.0)
    assert np.abs(restored - clean)[0, 28:37, 28:37].max() < 0.05  # disk interior back
    assert np.std(restored[0, :10, :10]) < 0.02  # checkerboard not given back


def test_sigma_zero_is_the_identity_and_shapes_must_match():
    denoised = np.arange(24.0).reshape(2, 3, 4)
    assert np.array_equal(restore_local_mean(denoised + 1, denoised, 0.0), denoised)
    with pytest.raises(ValueError):
        restore_local_mean(np.zeros((1, 3, 4)), np.zeros((1, 4, 3)), 1.0)


def grainy(frames=3, size=64, std=0.1, seed=0):
    """Spatially correlated noise (a speckle stand-in) around 0.5."""
    rng = np.random.default_rng(seed)
    white = torch.from_numpy(rng.standard_normal((frames, size, size)).astype(np.float32))
    noise = gaussian_lowpass(white, 1.5).numpy().astype(np.float64)
    return 0.5 + std * noise / noise.std()


def test_band_std_scales_with_the_speckle_and_is_zero_without():
    base = grainy()
    one = speckle_band_std(base, (1.5, 4.5))
    two = speckle_band_std(0.5 + 2 * (base - 0.5), (1.5, 4.5))
    assert len(one) == 3 and one[0] > 0
    # The detail bands scale with the speckle; the last one also holds the mean.
    assert two[:2] == pytest.approx([2 * v for v in one[:2]], rel=1e-4)
    flat = speckle_band_std(np.full((2, 32, 32), 0.7), (1.0, 3.0))
    assert flat[:2] == pytest.approx([0, 0], abs=1e-5)


def test_restore_gives_back_a_thin_line_but_not_the_speckle():
    noisy = grainy()
    noisy[:, 30:32, 16:48] += 1.0  # a bright reflector, far above the speckle
    smoothed = gaussian_lowpass(torch.from_numpy(noisy), 6.0).numpy().astype(np.float64)
    restored, info = restore(noisy, smoothed)
    assert info["guard_returned"] > 0 and info["speckle_grain_px"] > 0
    line = np.s_[:, 30:32, 20:44]
    assert np.abs(restored[line] - noisy[line]).mean() < 0.25 * np.abs(smoothed[line]
                                                                       - noisy[line]).mean()
    flat = np.s_[:, 44:60, 8:-8]
    assert restored[flat].std() < 0.6 * noisy[flat].std()
    alone, off = restore(noisy, smoothed, guard_factor=0)
    assert off["guard_returned"] == 0
    assert np.abs(alone[line] - noisy[line]).mean() > np.abs(restored[line] - noisy[line]).mean()


def test_guard_checks_the_number_of_band_levels():
    stack = np.zeros((3, 8, 8), np.float32)
    with pytest.raises(ValueError):
        residual_guard(stack, stack, scales=(1.0, 3.0), noise_std=[0.1, 0.1])
