"""Small synthetic arrays shared by the tests (imported as ``Testing.helpers``)."""

import numpy as np


def white_noise(sigma=0.1, shape=(12, 64, 64), seed=0):
    """Gaussian noise, float32."""
    return np.random.default_rng(seed).normal(0.0, sigma, shape).astype(np.float32)


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
