import numpy as np
import pytest

from nsn2n import intensity
from Testing.simulators.volumes import add_rician


def test_normalization_inverts_exactly_and_keeps_zero_for_magnitude():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 4000, (4, 8, 8)).astype(np.int16)
    norm = intensity.Normalization.fit(x, keep_zero=True)
    assert norm.offset <= 0
    back = norm.invert(norm.apply(x))
    np.testing.assert_allclose(back, x, atol=1e-3 * x.max())
    assert norm.apply(np.zeros(1))[0] == pytest.approx(-norm.offset / norm.scale)


def test_normalization_is_robust_to_a_few_hot_voxels():
    x = np.random.default_rng(0).random((8, 16, 16))
    x[0, 0, 0] = 1e6
    norm = intensity.Normalization.fit(x)
    assert norm.scale < 10  # the outlier does not set the scale


@pytest.mark.parametrize("declared, values, expected", [
    ("MR", [0, 1], "MR"), ("ct", [0, 1], "CT"), (None, [-1024, -1000, 40, 900], "CT"),
    (None, [0, 10, 200], "MR"), (None, [-50, 10, 200], None), ("US", [0, 1], "US"),
])
def test_modality(declared, values, expected):
    array = np.array(values * 50, dtype=np.float32)
    assert intensity.infer_modality(array, declared) == expected


def test_rician_bias_correction_recovers_the_magnitude_from_the_rician_mean():
    sigma = 0.05
    nu = np.array([0.0, 0.3, 1.0])  # air, and tissue at 6 and 20 sigma
    samples = add_rician(np.repeat(nu[:, None], 200_000, axis=1), sigma, seed=1)
    rician_mean = samples.mean(axis=1)
    corrected = intensity.rician_bias_correct(rician_mean, sigma)
    np.testing.assert_allclose(corrected, nu, atol=0.004)
    # in tissue the exact inverse beats the rough formula
    rough = np.sqrt(np.maximum(rician_mean ** 2 - 2 * sigma ** 2, 0))
    assert abs(corrected[1] - nu[1]) < abs(rough[1] - nu[1])


def test_small_fluctuations_around_the_air_floor_stay_near_zero():
    sigma = 1.0
    floor = np.sqrt(np.pi / 2) * sigma
    wobble = floor + np.random.default_rng(0).normal(0, 0.15 * sigma, 10_000)
    corrected = intensity.rician_bias_correct(wobble, sigma)
    # the exact inverse alone gives a mean of 0.29 sigma and a 90th percentile of 0.8 sigma
    assert corrected.mean() < 0.1 * sigma and np.percentile(corrected, 90) < 0.4 * sigma


def test_rician_correction_is_identity_without_noise_and_monotone():
    y = np.linspace(0, 2, 50)
    np.testing.assert_array_equal(intensity.rician_bias_correct(y, 0.0), y)
    assert np.all(np.diff(intensity.rician_bias_correct(y, 0.1)) >= 0)
