import numpy as np
import pytest

from Testing.simulators.volumes import shared_across_slices


@pytest.mark.parametrize("kernel", [0.25, 0.5])
def test_noise_shared_across_slices_keeps_its_variance_and_has_the_stated_correlation(kernel):
    white = np.random.default_rng(0).normal(0.0, 2.0, (4002, 8, 8))
    shared = shared_across_slices(white, kernel)
    assert shared.shape == (4000, 8, 8)
    assert shared.std() == pytest.approx(2.0, rel=0.02)
    neighbours = np.corrcoef(shared[1:].ravel(), shared[:-1].ravel())[0, 1]
    assert neighbours == pytest.approx(2 * kernel / (1 + 2 * kernel ** 2), abs=0.02)
