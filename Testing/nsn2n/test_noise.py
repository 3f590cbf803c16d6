import numpy as np
import pytest
import torch

from nsn2n.filters import split_bands
from nsn2n.noise import (band_noise_std, coefficient_noise_variance, rician_background_sigma,
                         robust_std, slice_noise_sigma)
from nsn2n.refine.guard import BAND_SCALES, residual_guard
from Testing.helpers import white_noise
from Testing.simulators.volumes import add_rician


def test_band_noise_matches_the_noise_itself():
    noise = white_noise()
    expected = [float(b.std()) for b in split_bands(torch.from_numpy(noise), BAND_SCALES)]
    estimated = band_noise_std(noise + 0.5, BAND_SCALES)
    assert estimated == pytest.approx(expected, rel=0.1)


def test_band_noise_ignores_voxels_that_never_change():
    noise = white_noise()
    expected = band_noise_std(noise, BAND_SCALES)
    noise[:, :, :24] = 0.0  # e.g. outside a CT reconstruction circle
    assert band_noise_std(noise, BAND_SCALES)[0] == pytest.approx(expected[0], rel=0.15)


def test_identical_slices_have_no_noise():
    stack = np.repeat(white_noise(shape=(1, 32, 32)), 4, axis=0)
    assert band_noise_std(stack, BAND_SCALES) == [0.0, 0.0, 0.0]
    denoised = np.zeros_like(stack)
    guarded, returned = residual_guard(stack, denoised)
    np.testing.assert_allclose(guarded, stack, atol=1e-6)
    assert returned == pytest.approx(1.0, abs=1e-4)


def test_noise_variance_of_white_noise_is_flat_and_right():
    sigma = 0.1
    variance = coefficient_noise_variance(white_noise(sigma, (48, 96, 96)) + 0.5, (8, 8, 8))
    assert variance.shape == (8, 8, 8)
    assert torch.allclose(variance, torch.full_like(variance, sigma ** 2), rtol=0.15)


def test_noise_variance_follows_in_plane_correlated_noise():
    # CT-like noise: low-pass within each slice, independent across slices.
    noise = torch.from_numpy(white_noise(1.0, (24, 64, 64)))
    kernel = torch.ones(1, 1, 3, 3) / 9.0
    smooth = torch.nn.functional.conv2d(noise[:, None], kernel, padding=1)[:, 0].numpy()
    variance = coefficient_noise_variance(smooth, (8, 8, 8))
    assert float(variance[0, 0, 0]) > 10 * float(variance[0, -1, -1])
    assert torch.allclose(variance[0], variance[-1])  # white across slices


def test_noise_variance_ignores_voxels_that_never_change():
    noise = white_noise(0.1, (24, 64, 64))
    expected = coefficient_noise_variance(noise, (8, 8, 8))
    noise[:, :, :24] = 0.0  # outside a CT reconstruction circle
    estimated = coefficient_noise_variance(noise, (8, 8, 8))
    assert torch.allclose(estimated, expected, rtol=0.2)


def test_slice_sigma_reads_correlated_in_plane_noise_correctly():
    rng = np.random.default_rng(0)
    white = rng.normal(0, 1, (20, 64, 64))
    # strongly correlated in-plane: a 3x3 box blur of white noise, rescaled to std 10
    from scipy import ndimage

    correlated = np.stack([ndimage.uniform_filter(s, 3) for s in white])
    correlated *= 10 / correlated.std()
    assert slice_noise_sigma(correlated) == pytest.approx(10, rel=0.1)


@pytest.mark.parametrize("sigma", [0.02, 0.05, 0.1])
def test_rician_background_sigma(sigma):
    clean = np.zeros((10, 64, 64))
    clean[:, 16:48, 16:48] = 0.8  # an object in air
    noisy = add_rician(clean, sigma, seed=0)
    assert rician_background_sigma(noisy) == pytest.approx(sigma, rel=0.15)


def test_no_background_gives_none():
    rng = np.random.default_rng(0)
    assert rician_background_sigma(rng.uniform(0.5, 1.0, (10, 32, 32))) is None


def test_robust_std_reads_gaussian_noise_and_ignores_a_minority_of_outliers():
    noise = torch.from_numpy(white_noise(2.0, (200_000,)))
    assert robust_std(noise) == pytest.approx(2.0, rel=0.02)
    noise[:20_000] = 1e6  # 10 % outliers (edges, anatomy) barely move it
    assert robust_std(noise) < 2.6
    shifted = torch.from_numpy(white_noise(2.0, (200_000,))) + 50.0
    assert robust_std(shifted, centre=True) == pytest.approx(2.0, rel=0.02)
    columns = torch.from_numpy(white_noise(1.0, (50_000, 3))) * torch.tensor([1.0, 2.0, 4.0])
    assert robust_std(columns, dim=0).tolist() == pytest.approx([1.0, 2.0, 4.0], rel=0.03)
    assert robust_std(torch.zeros(0)) == 0.0
