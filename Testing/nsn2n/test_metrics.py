import numpy as np
import pytest

from nsn2n import metrics


def test_psnr_uses_the_clean_range_and_the_mask():
    clean = np.array([[0.0, 10.0], [0.0, 10.0]])
    estimate = clean + np.array([[1.0, 0.0], [0.0, 0.0]])
    assert metrics.psnr(estimate, clean) == pytest.approx(10 * np.log10(100 / 0.25))
    mask = np.array([[False, True], [True, True]])
    assert metrics.psnr(estimate, clean, mask) == float("inf")


def test_affine_fit_removes_gain_and_offset_only():
    clean = np.random.default_rng(0).random((4, 8, 8))
    assert np.allclose(metrics.affine_fit(3 * clean - 2, clean), clean, atol=1e-5)


def test_gcnr_is_one_for_separate_and_zero_for_identical_regions():
    image = np.concatenate([np.zeros(100), np.ones(100)])
    first, second = np.arange(200) < 100, np.arange(200) >= 100
    assert metrics.gcnr(image, first, second) == pytest.approx(1.0)
    noise = np.random.default_rng(1).random(200)
    assert metrics.gcnr(noise, first, first) == pytest.approx(0.0)


def test_enl_of_a_constant_region_is_large_and_of_speckle_about_one():
    rng = np.random.default_rng(2)
    intensity = rng.exponential(1.0, 100_000)  # fully developed speckle in intensity
    assert metrics.enl(intensity, np.ones(intensity.size, bool)) == pytest.approx(1.0, rel=0.05)


def test_method_noise_tells_noise_from_removed_anatomy():
    from Testing.helpers import changing_anatomy

    clean, noisy = changing_anatomy(sigma=0.02, blobs=12)
    perfect = metrics.method_noise(noisy, clean, 0.02)
    assert perfect.ratio == pytest.approx(1.0, rel=0.1) and perfect.structure < 0.05
    assert not perfect.removed_anatomy()
    from scipy import ndimage

    blurred = np.stack([ndimage.gaussian_filter(s, 1.5) for s in noisy])
    check = metrics.method_noise(noisy, blurred, 0.02)
    assert check.structure > 0.3 and check.removed_anatomy()
    too_much = metrics.method_noise(noisy, clean, 0.01)  # twice the noise removed
    assert too_much.ratio > 1.5 and too_much.removed_anatomy()


def test_an_edge_shaped_residual_counts_only_above_a_tenth_of_the_noise():
    from scipy import ndimage

    from Testing.helpers import changing_anatomy

    clean, noisy = changing_anatomy(sigma=0.02, blobs=12)
    blurred = np.stack([ndimage.gaussian_filter(s, 1.5) for s in noisy])
    full = metrics.method_noise(noisy, blurred, 0.02)
    # The same residual, scaled down: still shaped like edges, but faint.
    faint = metrics.method_noise(noisy, noisy - 0.02 * (noisy - blurred), 0.02)
    assert faint.structure > 0.3 and full.structure > 0.3
    edges = np.sqrt(faint.structure) * faint.ratio
    assert edges < metrics.STRUCTURE_FLOOR and not faint.removed_anatomy()
    assert full.removed_anatomy()
    assert metrics.MethodNoise(1.0, 0.5, 0.25).removed_anatomy()  # edges 0.25 sigma
    assert not metrics.MethodNoise(1.0, 0.18, 0.23).removed_anatomy()  # 0.09 sigma
