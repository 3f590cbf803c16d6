import numpy as np
import pytest
import torch

from nsn2n.guard import band_noise_std, residual_guard, split_bands


def noise_stack(sigma=0.1, shape=(12, 64, 64), seed=0):
    return np.random.default_rng(seed).normal(0.0, sigma, shape).astype(np.float32)


def test_bands_sum_to_the_input():
    x = torch.from_numpy(noise_stack(1.0, (3, 20, 17)))
    bands = split_bands(x)
    assert len(bands) == 3
    assert torch.allclose(sum(bands), x, atol=1e-5)


def test_band_noise_matches_the_noise_itself():
    noise = noise_stack()
    expected = [float(b.std()) for b in split_bands(torch.from_numpy(noise))]
    estimated = band_noise_std(noise + 0.5)
    assert estimated == pytest.approx(expected, rel=0.1)


def test_band_noise_ignores_voxels_that_never_change():
    noise = noise_stack()
    expected = band_noise_std(noise)
    noise[:, :, :24] = 0.0  # e.g. outside a CT reconstruction circle
    assert band_noise_std(noise)[0] == pytest.approx(expected[0], rel=0.15)


def test_identical_slices_have_no_noise():
    stack = np.repeat(noise_stack(shape=(1, 32, 32)), 4, axis=0)
    assert band_noise_std(stack) == [0.0, 0.0, 0.0]
    denoised = np.zeros_like(stack)
    guarded, returned = residual_guard(stack, denoised)
    np.testing.assert_allclose(guarded, stack, atol=1e-6)
    assert returned == pytest.approx(1.0, abs=1e-4)


def test_removed_noise_stays_removed():
    noisy = 0.5 + noise_stack()
    clean = np.full_like(noisy, 0.5)
    guarded, returned = residual_guard(noisy, clean)
    assert returned < 0.05
    assert np.abs(guarded - clean).std() < 0.25 * np.abs(noisy - clean).std()


def test_removed_structure_comes_back():
    clean = np.zeros((12, 64, 64), np.float32)
    clean[:, 20:44, 20:44] = 1.0  # a square ten noise sigmas bright
    noisy = clean + noise_stack()
    blurred = np.full_like(noisy, float(clean.mean()))  # a "denoiser" that lost the square
    guarded, _ = residual_guard(noisy, blurred)
    inside = (slice(None), slice(24, 40), slice(24, 40))
    assert abs(float(guarded[inside].mean()) - 1.0) < 0.05


def test_output_equal_to_input_is_kept():
    noisy = noise_stack()
    guarded, returned = residual_guard(noisy, noisy.copy())
    np.testing.assert_allclose(guarded, noisy, atol=1e-6)
    assert returned == 0.0


@pytest.mark.parametrize("kwargs", [dict(factor=0.0), dict(window=-1.0)])
def test_bad_settings(kwargs):
    noisy = noise_stack(shape=(3, 16, 16))
    with pytest.raises(ValueError):
        residual_guard(noisy, noisy, **kwargs)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        residual_guard(noise_stack(shape=(3, 16, 16)), noise_stack(shape=(3, 16, 15)))


def test_inplace_writes_into_the_denoised_stack():
    noisy = 0.5 + noise_stack(shape=(5, 32, 32))
    denoised = np.full_like(noisy, 0.5)
    denoised[:, 8:16, 8:16] = 0.0  # lost structure the guard gives back
    expected, _ = residual_guard(noisy, denoised.copy())
    result, _ = residual_guard(noisy, denoised, inplace=True)
    assert result is denoised
    np.testing.assert_array_equal(result, expected)
    with pytest.raises(ValueError, match="float32"):
        residual_guard(noisy, denoised.astype(np.float64), inplace=True)
