"""Image quality metrics with the project's conventions (docs/benchmarks.md, "Data").

PSNR and SSIM use data range = clean max - clean min; "inside" figures restrict PSNR to
a head or body mask.  SSIM is 3-D (scikit-image, part of the ``bench`` extra).
"""

from __future__ import annotations

from typing import Optional

import numpy as np


def data_range(clean: np.ndarray) -> float:
    return float(clean.max() - clean.min())


def psnr(estimate: np.ndarray, clean: np.ndarray, mask: Optional[np.ndarray] = None) -> float:
    error = (estimate.astype(np.float64) - clean.astype(np.float64)) ** 2
    mse = float(error[mask].mean() if mask is not None else error.mean())
    if mse == 0:
        return float("inf")
    return 10.0 * np.log10(data_range(clean) ** 2 / mse)


def ssim(estimate: np.ndarray, clean: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(clean.astype(np.float64), estimate.astype(np.float64),
                                       data_range=data_range(clean)))


def ssim_frames(estimate: np.ndarray, clean: np.ndarray) -> float:
    """Mean 2-D SSIM over the frames of ``(N, H, W)``: ultrasound frames are separate images."""
    from skimage.metrics import structural_similarity

    rng = data_range(clean)
    return float(np.mean([structural_similarity(c.astype(np.float64), e.astype(np.float64),
                                                data_range=rng)
                          for e, c in zip(estimate, clean)]))


def affine_fit(estimate: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """``a * estimate + b`` with least-squares a, b against ``clean``.

    Ultrasound comparisons need a stated normalisation: denoisers return different
    intensity scales (the log-Rayleigh offset, instance-normalised outputs), and the fit
    removes exactly that, for every method alike, without changing structure.
    """
    x = estimate.astype(np.float64).ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, clean.astype(np.float64).ravel(), rcond=None)
    return (a * estimate + b).astype(np.float32)


def cnr(image: np.ndarray, target: np.ndarray, background: np.ndarray) -> float:
    """``|mu_T - mu_B| / sqrt(var_T + var_B)`` (linear, on the image as given)."""
    t, b = image[target].astype(np.float64), image[background].astype(np.float64)
    return float(abs(t.mean() - b.mean()) / np.sqrt(t.var() + b.var()))


def gcnr(image: np.ndarray, target: np.ndarray, background: np.ndarray,
         bins: int = 256) -> float:
    """Generalized CNR (Rodriguez-Molares et al. 2020): 1 - overlap of the two histograms
    over common bins spanning both regions."""
    t, b = image[target].astype(np.float64), image[background].astype(np.float64)
    edges = np.linspace(min(t.min(), b.min()), max(t.max(), b.max()), bins + 1)
    p_t = np.histogram(t, edges)[0] / t.size
    p_b = np.histogram(b, edges)[0] / b.size
    return float(1.0 - np.minimum(p_t, p_b).sum())


def enl(image: np.ndarray, region: np.ndarray) -> float:
    """Equivalent number of looks ``mu^2 / sigma^2`` in a homogeneous region; only a
    before/after ratio on the same intensity scale is meaningful."""
    values = image[region].astype(np.float64)
    return float(values.mean() ** 2 / max(values.var(), 1e-30))
