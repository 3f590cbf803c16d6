import numpy as np
import pytest
import torch

from nsn2n.noise import band_stds
from nsn2n.refine.guard import BAND_SCALES, residual_guard
from Testing.helpers import white_noise

BANDS = band_stds(torch.full((8, 8), 0.1 ** 2), BAND_SCALES)  # white noise, sigma 0.1


def noise_stack(sigma=0.1, shape=(12, 64, 64), seed=0):
    return white_noise(sigma, shape, seed)


def test_removed_noise_stays_removed():
    noisy = 0.5 + noise_stack()
    clean = np.full_like(noisy, 0.5)
    guarded, returned = residual_guard(noisy, clean, noise_std=BANDS)
    assert returned < 0.05
    assert np.abs(guarded - clean).std() < 0.25 * np.abs(noisy - clean).std()


def test_removed_structure_comes_back():
    clean = np.zeros((12, 64, 64), np.float32)
    clean[:, 20:44, 20:44] = 1.0  # a square ten noise sigmas bright
    noisy = clean + noise_stack()
    blurred = np.full_like(noisy, float(clean.mean()))  # a "denoiser" that lost the square
    guarded, _ = residual_guard(noisy, blurred, noise_std=BANDS)
    inside = (slice(None), slice(24, 40), slice(24, 40))
    assert abs(float(guarded[inside].mean()) - 1.0) < 0.05


def test_output_equal_to_input_is_kept():
    noisy = noise_stack()
    guarded, returned = residual_guard(noisy, noisy.copy(), noise_std=BANDS)
    np.testing.assert_allclose(guarded, noisy, atol=1e-6)
    assert returned == 0.0


@pytest.mark.parametrize("kwargs", [dict(factor=0.0), dict(window=-1.0)])
def test_bad_settings(kwargs):
    noisy = noise_stack(shape=(3, 16, 16))
    with pytest.raises(ValueError):
        residual_guard(noisy, noisy, **kwargs, noise_std=BANDS)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        residual_guard(noise_stack(shape=(3, 16, 16)), noise_stack(shape=(3, 16, 15)),
                       noise_std=BANDS)


def test_inplace_writes_into_the_denoised_stack():
    noisy = 0.5 + noise_stack(shape=(5, 32, 32))
    denoised = np.full_like(noisy, 0.5)
    denoised[:, 8:16, 8:16] = 0.0  # lost structure the guard gives back
    expected, _ = residual_guard(noisy, denoised.copy(), noise_std=BANDS)
    result, _ = residual_guard(noisy, denoised, inplace=True, noise_std=BANDS)
    assert result is denoised
    np.testing.assert_array_equal(result, expected)
    with pytest.raises(ValueError, match="float32"):
        residual_guard(noisy, denoised.astype(np.float64), inplace=True, noise_std=BANDS)
