"""Image quality metrics with the project's conventions (docs/benchmarks.md, "Data").

PSNR and SSIM use data range = clean max - clean min; "inside" figures restrict PSNR to
a head or body mask.  SSIM is 3-D (scikit-image, part of the ``bench`` extra).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

# A residual above these reads as removed anatomy (MethodNoise): more than the noise
# itself, or a fifth of it explained by the output's edges and folds.  Measured on real
# MRI (docs/benchmarks.md, "Real acquisitions"): non-local means and BM4D given the noise
# 0.00-0.09, the product 0.11-0.14, curvature diffusion 0.12-0.17, a 0.5-voxel Gaussian
# blur 0.75-0.83; the product before its noise estimate was fixed, which removed anatomy,
# 0.22-0.34.
RATIO_LIMIT = 1.2
STRUCTURE_LIMIT = 0.2
# ... unless the edge-shaped part is below a tenth of the noise (its rms, sqrt(structure) x
# ratio x sigma): then it is invisible next to the noise the output keeps, and backing off
# cannot lower the share (the guard gives back a fraction of the whole residual, whose
# shape stays).  The real 2 mm DWI volume with the Wiener and non-local stages mixed by
# their risk: share 0.23 of a residual of 0.18 sigma (edge-shaped part 0.09 sigma),
# 0.04 dB closer to the reference than the plain mean of the stages, which passed with
# 0.17 of 0.10 sigma; curvature diffusion there: 0.15 of 1.33 sigma, 0.2 dB worse than the
# input (docs/nsn2n.md, "Mixing the two stages").
STRUCTURE_FLOOR = 0.1


def data_range(clean: np.ndarray) -> float:
    return float(clean.max() - clean.min())


def psnr(estimate: np.ndarray, clean: np.ndarray, mask: Optional[np.ndarray] = None,
         value_range: Optional[float] = None) -> float:
    """PSNR in dB; the range is the clean image's unless given."""
    error = (estimate.astype(np.float64) - clean.astype(np.float64)) ** 2
    mse = float(error[mask].mean() if mask is not None else error.mean())
    if mse == 0:
        return float("inf")
    value_range = data_range(clean) if value_range is None else value_range
    return 10.0 * np.log10(value_range ** 2 / mse)


def ssim(estimate: np.ndarray, clean: np.ndarray, value_range: Optional[float] = None) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(
        clean.astype(np.float64), estimate.astype(np.float64),
        data_range=data_range(clean) if value_range is None else value_range))


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


def structure_in_residual(residual: np.ndarray, output: np.ndarray,
                          mask: Optional[np.ndarray] = None,
                          scales: Sequence[float] = (0.7, 1.5, 3.0)) -> float:
    """Share of the residual's variance that a linear fit on the output's in-plane
    Laplacians (Gaussian-smoothed at ``scales`` px) explains, over ``mask``: 0 for a
    residual that is noise, large when the residual holds blurred-away edges and folds
    (removed anatomy is where the output curves).  Both arrays ``(D, H, W)``, slices first.
    """
    import torch

    from .filters import gaussian_lowpass

    keep = np.ones(residual.shape, bool) if mask is None else mask
    if keep.sum() < 10 or not np.any(residual[keep]):
        return 0.0
    out = torch.from_numpy(np.ascontiguousarray(output, dtype=np.float32))
    features = []
    for sigma in scales:
        g = gaussian_lowpass(out, sigma)
        laplacian = (torch.roll(g, 1, 1) + torch.roll(g, -1, 1) + torch.roll(g, 1, 2)
                     + torch.roll(g, -1, 2) - 4 * g)
        features.append(laplacian.numpy()[keep].astype(np.float64))
    design = np.stack(features + [np.ones(int(keep.sum()))], axis=1)
    target = residual[keep].astype(np.float64)
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    left = np.var(target - design @ coefficients)
    return float(max(0.0, 1.0 - left / max(np.var(target), 1e-30)))


@dataclasses.dataclass(frozen=True)
class MethodNoise:
    """What a denoiser removed (the residual input - output) compared with the noise.

    ``ratio`` is the residual's rms over the noise sigma: a denoiser that removes only
    noise stays below 1.  ``structure`` is :func:`structure_in_residual`: near 0 for a
    residual that is noise (0.00-0.09 for non-local means and BM4D given the repeat-
    measured noise on real MRI), high where edges were blurred away (0.75-0.83 for a
    Gaussian blur of 0.5 voxel on the same scans).
    """

    residual_rms: float
    ratio: float
    structure: float

    def removed_anatomy(self, ratio_limit: float = RATIO_LIMIT,
                        structure_limit: float = STRUCTURE_LIMIT,
                        structure_floor: float = STRUCTURE_FLOOR) -> bool:
        edges = float(np.sqrt(max(self.structure, 0.0))) * self.ratio  # rms / sigma
        return self.ratio > ratio_limit or (self.structure > structure_limit
                                            and edges > structure_floor)


def method_noise(noisy: np.ndarray, output: np.ndarray, sigma: float,
                 max_slices: int = 16) -> MethodNoise:
    """:class:`MethodNoise` of ``output`` for ``noisy`` (both ``(D, H, W)``, slices first),
    over the anatomy (``noise.tissue_mask``) of at most ``max_slices`` evenly spaced
    slices."""
    import torch

    from .noise import tissue_mask

    picks = np.unique(np.linspace(0, noisy.shape[0] - 1, min(max_slices, noisy.shape[0]))
                      .round().astype(int))
    x = np.ascontiguousarray(noisy[picks], dtype=np.float32)
    y = np.ascontiguousarray(output[picks], dtype=np.float32)
    mask = tissue_mask(torch.from_numpy(x)).numpy()
    residual = x - y
    rms = float(np.sqrt(np.mean(residual[mask] ** 2))) if mask.any() else 0.0
    return MethodNoise(rms, rms / sigma if sigma > 0 else float("inf") if rms > 0 else 0.0,
                       structure_in_residual(residual, y, mask))
