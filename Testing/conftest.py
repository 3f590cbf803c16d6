"""Shared fixtures (the arrays come from ``helpers.py``)."""

import numpy as np
import pytest

from Testing.helpers import smooth_phantom


@pytest.fixture
def phantom():
    return smooth_phantom()


@pytest.fixture
def noisy_phantom(phantom):
    rng = np.random.default_rng(1)
    return phantom, (phantom + rng.normal(0, 0.08, phantom.shape)).astype(np.float32)
