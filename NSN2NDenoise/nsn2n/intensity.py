"""Intensity handling: robust normalization with an exact inverse, modality, noise level,
and the Rician bias correction for magnitude MRI.

Everything here is a pure function of numpy arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

CT, MR, US = "CT", "MR", "US"

# Percentiles that set the training scale.  Robust to a few hot voxels (metal, flow
# artefacts) that would otherwise squeeze the tissue range to a sliver of [0, 1].
LOW_PERCENTILE, HIGH_PERCENTILE = 0.5, 99.5


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Affine map ``(x - offset) / scale`` and its exact inverse."""

    offset: float
    scale: float

    @classmethod
    def fit(cls, array: np.ndarray, keep_zero: bool = False) -> "Normalization":
        low, high = np.percentile(array, [LOW_PERCENTILE, HIGH_PERCENTILE])
        if keep_zero:  # magnitude MRI: zero must stay zero for the Rician model
            low = min(0.0, float(low))
        if high <= low:  # mostly constant with a few outliers: fall back to full range
            low, high = float(array.min()), float(array.max())
        return cls(float(low), float(high - low))

    def apply(self, array: np.ndarray) -> np.ndarray:
        return ((array.astype(np.float64) - self.offset) / self.scale).astype(np.float32)

    def invert(self, array: np.ndarray) -> np.ndarray:
        return array.astype(np.float64) * self.scale + self.offset


def infer_modality(array: np.ndarray, declared: Optional[str] = None) -> Optional[str]:
    """Modality from the file when it says so, else from the intensity range.

    CT in Hounsfield units has air near -1000; magnitude MRI is never negative.  Anything
    else stays unknown, and unknown gets no modality-specific processing.
    """
    if declared:
        declared = declared.upper()
        return {"MRI": MR, "MR": MR, "CT": CT, "US": US}.get(declared, declared)
    low = float(array.min())
    if low <= -900 and float(np.percentile(array, 1)) < -500:
        return CT
    if low >= 0:
        return MR
    return None


def slice_noise_sigma(array: np.ndarray, axis: int = 0) -> float:
    """Noise standard deviation from second differences across slices.

    ``x_k - (x_{k-1} + x_{k+1}) / 2`` has variance ``1.5 sigma^2`` for noise that is
    independent across slices, whatever its in-plane correlation (CT), so this also works
    where in-plane estimators under-read.  Anatomy only raises the estimate; the median of
    absolute values keeps edges from dominating it.
    """
    x = np.moveaxis(array, axis, 0).astype(np.float32)
    if x.shape[0] < 3:
        raise ValueError("need at least 3 slices")
    second = x[1:-1] - 0.5 * (x[:-2] + x[2:])
    mad = float(np.median(np.abs(second - np.median(second))))
    return mad / 0.6745 / np.sqrt(1.5)


def rician_background_sigma(array: np.ndarray) -> Optional[float]:
    """Rician sigma from the background of a magnitude image, or None without background.

    In air the magnitude is Rayleigh distributed, and the mode of a Rayleigh law is sigma:
    the lowest significant peak of the intensity histogram is that mode when the image has
    a real background.  The peak is accepted only if the voxels around it have a Rayleigh
    shape (about 12 % of those below 2 sigma lie below sigma / 2); otherwise it is dark
    tissue and None is returned.  Exact zeros (padding, skull-stripping) are not noise and
    are ignored.
    """
    values = array[array > 0].astype(np.float64).ravel()
    if values.size < 1000:
        return None
    hist, edges = np.histogram(values, bins=512, range=(0.0, np.percentile(values, 90)))
    smooth = np.convolve(hist, np.ones(9) / 9, mode="same")
    significant = 0.1 * smooth.max()
    peak = next((i for i in range(1, len(smooth) - 5)
                 if smooth[i] >= significant and smooth[i] >= smooth[i - 1]
                 and smooth[i] >= smooth[i + 1:i + 6].max()), None)
    if peak is None:
        return None
    sigma = 0.5 * (edges[peak] + edges[peak + 1])
    below_two = np.count_nonzero(values < 2 * sigma)
    ratio = np.count_nonzero(values < 0.5 * sigma) / max(below_two, 1)
    if below_two < 0.05 * values.size or not 0.04 <= ratio <= 0.3:
        return None
    return float(sigma)


def _rician_mean_table(size: int = 2048):
    """E|nu + n| / sigma as a function of nu / sigma (the Rician mean), tabulated."""
    import torch

    snr = np.linspace(0.0, 40.0, size)
    z = torch.as_tensor(snr ** 2 / 4.0, dtype=torch.float64)
    mean = np.sqrt(np.pi / 2) * ((1 + 2 * z) * torch.special.i0e(z)
                                 + 2 * z * torch.special.i1e(z)).numpy()
    return snr, mean


def rician_bias_correct(estimate: np.ndarray, sigma: float) -> np.ndarray:
    """Map an estimate of the Rician mean back to the underlying magnitude.

    Noise2Noise on magnitude MRI learns E|nu + n|, which is sigma*sqrt(pi/2) in air.  In
    tissue (estimate >= 4 sigma) this inverts the exact Rician mean function, where the
    usual ``sqrt(y^2 - 2 sigma^2)`` over-corrects by about sigma^2 / 2nu.  Near the noise
    floor the exact inverse is so steep that the estimate's own small fluctuations become
    visible noise (measured: whole-volume SSIM 0.82 instead of 0.98 on the MRI slab), so
    below 2 sigma the robust ``sqrt(max(y^2 - 2 sigma^2, 0))`` is used, which zeroes air;
    in between the two are blended linearly.
    """
    if sigma <= 0:
        return estimate
    ratio = np.asarray(estimate, dtype=np.float64) / sigma
    snr, mean = _rician_mean_table()
    exact = np.interp(ratio, mean, snr)
    high = ratio > mean[-1]  # beyond the table the mean is sqrt(nu^2 + sigma^2)
    exact[high] = np.sqrt(ratio[high] ** 2 - 1.0)
    robust = np.sqrt(np.maximum(ratio ** 2 - 2.0, 0.0))
    weight = np.clip((ratio - 2.0) / 2.0, 0.0, 1.0)
    return (weight * exact + (1.0 - weight) * robust) * sigma
