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


def changing_anatomy(depth=12, size=96, sigma=0.01, blobs=12, seed=0, air=0.0):
    """A head in ``air`` whose inner structures (tissue at 0.3 and 0.9 in a 0.6 base)
    change completely from one slice to the next, as with thick slices; returns
    ``(clean, noisy)`` with Gaussian noise ``sigma``."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    head = ((yy - size / 2) / (0.42 * size)) ** 2 + ((xx - size / 2) / (0.36 * size)) ** 2 <= 1
    clean = np.zeros((depth, size, size))
    for k in range(depth):
        image = np.where(head, 0.6, air)
        for _ in range(blobs):
            cy, cx = rng.uniform(0.15 * size, 0.85 * size, 2)
            ry, rx = rng.uniform(3, 8, 2)
            image[(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1) & head] = \
                rng.choice([0.3, 0.9])
        clean[k] = ndimage.gaussian_filter(image, 1.0)
    noisy = clean + rng.normal(0.0, sigma, clean.shape)
    return clean.astype(np.float32), noisy.astype(np.float32)


def write_ct(path, seed=0, shape=(6, 32, 32)):
    """A small noisy CT volume in HU (int16, a geometry of its own) written at ``path``."""
    import SimpleITK as sitk

    rng = np.random.default_rng(seed)
    hu = np.rint(smooth_phantom(shape, seed) * 1200 - 1000
                 + rng.normal(0, 40, shape)).astype(np.int16)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.8, 0.8, 2.0))
    image.SetOrigin((1.0, 2.0, 3.0 + seed))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path
