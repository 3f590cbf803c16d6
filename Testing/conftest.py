"""Shared fixtures (the arrays come from ``helpers.py``)."""

import os

import numpy as np
import pytest
from hypothesis import settings

from Testing.helpers import smooth_phantom

# The property tests draw the same examples on every run (CI included), so a failure
# reproduces anywhere; HYPOTHESIS_PROFILE=explore draws new ones to look for more.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture
def phantom():
    return smooth_phantom()


@pytest.fixture
def noisy_phantom(phantom):
    rng = np.random.default_rng(1)
    return phantom, (phantom + rng.normal(0, 0.08, phantom.shape)).astype(np.float32)
