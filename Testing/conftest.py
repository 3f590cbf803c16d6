"""Shared fixtures.  The module folder goes on sys.path the way Slicer puts it there."""

import sys
from pathlib import Path

import numpy as np
import pytest

MODULE_DIR = Path(__file__).resolve().parents[1] / "NSN2NDenoise"
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))


def smooth_phantom(shape=(8, 32, 32), seed=0):
    """A smooth positive phantom: a few blobs that drift slowly across slices."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    volume = np.full(shape, 0.1)
    for _ in range(4):
        cz, cy, cx = rng.uniform(-0.5, 0.5, 3)
        r = rng.uniform(0.2, 0.5)
        volume += 0.8 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + 0.2 * (z - cz) ** 2) / r ** 2)
    return (volume / volume.max()).astype(np.float32)


@pytest.fixture
def phantom():
    return smooth_phantom()


@pytest.fixture
def noisy_phantom(phantom):
    rng = np.random.default_rng(1)
    return phantom, (phantom + rng.normal(0, 0.08, phantom.shape)).astype(np.float32)
