import threading

import numpy as np
import pytest
import torch

from nsn2n.errors import Cancelled
from nsn2n.metrics import psnr
from nsn2n.refine import wiener
from nsn2n.refine.wiener import empirical_wiener


def noise_stack(sigma=0.1, shape=(12, 48, 40), seed=0):
    return np.random.default_rng(seed).normal(0.0, sigma, shape).astype(np.float32)


def white(noisy, sigma=0.1):
    """White noise of ``sigma`` for the Wiener stage's patch clipped to ``noisy``."""
    return torch.full(tuple(min(8, n) for n in noisy.shape), sigma ** 2)


def smooth_phantom(shape=(12, 48, 40)):
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    ball = ((x ** 2 + y ** 2 + 0.5 * z ** 2) < 0.5).astype(np.float32)
    return (0.3 + 0.5 * ball + 0.1 * np.sin(3 * x) * np.cos(2 * y)).astype(np.float32)


def test_without_noise_the_input_comes_back():
    clean = smooth_phantom()
    pilot = np.full_like(clean, 0.5)
    out = empirical_wiener(clean, pilot, noise_variance=torch.zeros(8, 8, 8))
    np.testing.assert_allclose(out, clean, atol=1e-5)


def test_a_good_pilot_removes_noise_and_keeps_the_signal():
    clean = smooth_phantom()
    noisy = clean + noise_stack(0.1)
    out = empirical_wiener(noisy, clean, white(noisy))
    assert psnr(out, clean) > psnr(noisy, clean) + 6.0
    assert abs(float(out.mean()) - float(clean.mean())) < 0.01


def test_the_noisy_values_are_used_not_the_pilot():
    # A pilot with the right structure but the wrong contrast: the output takes the
    # amplitude from the data.
    clean = smooth_phantom()
    noisy = clean + noise_stack(0.05)
    out = empirical_wiener(noisy, 0.5 * clean, white(noisy))
    assert psnr(out, clean) > psnr(0.5 * clean, clean) + 10.0


@pytest.mark.parametrize("shape", [(3, 17, 23), (5, 8, 8), (9, 31, 12), (11, 9, 10)])
def test_odd_and_small_shapes_keep_their_shape(shape):
    noisy = smooth_phantom(shape) + noise_stack(0.1, shape)
    out = empirical_wiener(noisy, smooth_phantom(shape), white(noisy))
    assert out.shape == shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert psnr(out, smooth_phantom(shape)) > psnr(noisy, smooth_phantom(shape))
    # In place, rows are overwritten while the mirrored rows past the end are still read.
    pilot = smooth_phantom(shape)
    np.testing.assert_allclose(
        empirical_wiener(noisy, pilot, white(noisy), stride=2, inplace=True),
        empirical_wiener(noisy, smooth_phantom(shape), white(noisy), stride=2), atol=1e-6)


def test_inplace_writes_into_the_pilot_and_matches():
    clean = smooth_phantom()
    noisy = clean + noise_stack(0.1)
    expected = empirical_wiener(noisy, clean.copy(), white(noisy))
    pilot = clean.copy()
    result = empirical_wiener(noisy, pilot, white(noisy), inplace=True)
    assert result is pilot
    np.testing.assert_allclose(pilot, expected, atol=1e-6)
    with pytest.raises(ValueError, match="float32"):
        empirical_wiener(noisy, clean.astype(np.float64), white(noisy), inplace=True)


def test_bands_of_patch_rows_give_the_same_result(monkeypatch):
    clean = smooth_phantom((9, 37, 29))
    noisy = clean + noise_stack(0.1, clean.shape)
    whole = empirical_wiener(noisy, clean, white(noisy), stride=2)
    monkeypatch.setattr(wiener, "BAND_PATCHES", 20)  # one or two patch rows per band
    np.testing.assert_allclose(empirical_wiener(noisy, clean, white(noisy), stride=2), whole,
                               atol=1e-6)


def test_bad_arguments_and_cancel():
    noisy = noise_stack()
    with pytest.raises(ValueError, match="shapes"):
        empirical_wiener(noisy, noisy[:-1], white(noisy))
    with pytest.raises(ValueError, match="stride"):
        empirical_wiener(noisy, noisy, white(noisy), stride=0)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        empirical_wiener(noisy, noisy, white(noisy), cancel=cancel)


def test_progress_counts_slabs_up_to_the_total_and_does_not_change_the_result():
    clean = smooth_phantom((20, 24, 24))
    noisy = clean + noise_stack(0.1, clean.shape)
    seen = []
    with_progress = empirical_wiener(noisy, clean, white(noisy), stride=2,
                                     progress=seen.append)
    steps = [p.step for p in seen]
    assert {p.phase for p in seen} == {"refine"} and len({p.total for p in seen}) == 1
    assert seen[-1].total == 7  # slabs start at 0, 2, .., 20 - 8
    assert steps == list(range(seen[-1].total + 1))
    np.testing.assert_array_equal(with_progress,
                                  empirical_wiener(noisy, clean, white(noisy), stride=2))
