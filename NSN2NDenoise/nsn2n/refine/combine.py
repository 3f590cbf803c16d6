"""Mix the Wiener stage and the guided non-local means by Stein's unbiased risk estimate.

Both stages are linear in the noisy data once their pilot / guide is fixed, so each one's
expected error can be estimated without a clean image (SURE): for ``f`` linear in
``y = x + n``,

    E |f - x|^2 = E |f - y|^2 - sum_i Var(n_i) + 2 sum_i Cov(f_i, n_i),

where ``Cov(f_i, n_i) = sum_j J_ij C_ji`` is the noise of voxel ``i`` that ``f`` keeps
(``J`` the stage's linear map, ``C`` the noise covariance: in-plane correlated for CT,
independent across slices).  The mix ``f_N + alpha (f_W - f_N)`` has a risk quadratic in
``alpha``; its minimum is

    alpha = -(sum (f_W - f_N)(f_N - y) + K_W - K_N) / sum (f_W - f_N)^2,

clipped to [0, 1], with ``K`` each stage's kept noise summed over the same voxels: the
whole stack.  Over the anatomy alone (``noise.tissue_mask``, which leaves out dark anatomy
such as CSF, where the non-local stage is the better one) ``alpha`` was 0.77 on the
synthetic MRI 10 % case, 0.3 dB below the plain mean; over the whole stack 0.53, level
with it.  An exactly constant background (zero-filled, outside a CT's field of view) adds
the same to both risks but for their kept noise there, about 0.2 % of the noise for either
stage (605 equal non-local weights; one DCT coefficient of 512).  One ``alpha`` per
volume: a per-voxel ``alpha`` from Gaussian windows of 4-16 px scored within 0.04 dB of it
on MRI and 0.1-0.24 dB below it on CT 1e4 (docs/nsn2n.md, "Mixing the two stages").
Until 2026-12-04 the product took the plain mean (``alpha`` 0.5), which halved the Wiener
stage's gain wherever the non-local stage found no similar voxels (nearly clean MRI:
1.3 dB; real 6 mm MRI).  The pilot and the guide are the network output, which itself
depends on the noise; SURE treats them as fixed, so ``alpha`` is an estimate, measured as
such in the benchmarks.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..filters import dct_basis

# Without a risk to compare (no anatomy, or identical stages), the plain mean.
FALLBACK_WEIGHT = 0.5


class KeptNoise:
    """Accumulates ``sum_i Cov(f_i, n_i)`` of a linear stage over every voxel.

    A stage calls :meth:`add` with the kept noise of its voxels as it produces them;
    :meth:`covariance` gives it the noise covariance between two voxels.  ``lags`` is
    the in-plane autocovariance ``(2r+1, 2r+1)`` (lag 0 at the centre; from
    :func:`in_plane_autocovariance`); voxels on different slices or further apart than
    ``r`` are taken as independent.
    """

    def __init__(self, lags: torch.Tensor):
        if lags.ndim != 2 or lags.shape[0] % 2 == 0 or lags.shape[0] != lags.shape[1]:
            raise ValueError("lags must be a square (2r+1, 2r+1) table")
        self.lags = lags
        self.total = 0.0

    @property
    def variance(self) -> float:
        radius = self.lags.shape[0] // 2
        return float(self.lags[radius, radius])

    def covariance(self, offset) -> float:
        """The noise covariance of two voxels ``offset`` (slices, rows, columns) apart."""
        radius = self.lags.shape[0] // 2
        dz, dy, dx = offset
        if dz != 0 or abs(dy) > radius or abs(dx) > radius:
            return 0.0
        return float(self.lags[dy + radius, dx + radius])

    def add(self, kept: torch.Tensor) -> None:
        """Count the kept noise of some voxels, each once."""
        self.total += float(kept.double().sum())


def in_plane_autocovariance(spectrum: torch.Tensor, radius: int) -> torch.Tensor:
    """The noise covariance at in-plane lags ``-radius .. radius`` from the variance of each
    coefficient of a ``(P, P)`` in-plane DCT (``noise.NoiseEstimate.spectrum``): the pixel
    covariance that spectrum implies within a patch, averaged over the pairs at each lag;
    0 beyond the patch."""
    size = spectrum.shape[0]
    basis = dct_basis(size).double()
    # covariance[y, x, y', x'] = sum_ab S_ab B_ay B_bx B_ay' B_bx'
    covariance = torch.einsum("ab,ay,bx,aY,bX->yxYX", spectrum.double(), basis, basis,
                              basis, basis)
    lags = torch.zeros((2 * radius + 1, 2 * radius + 1), dtype=torch.float64)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            rows = range(max(0, -dy), min(size, size - dy))
            cols = range(max(0, -dx), min(size, size - dx))
            if len(rows) and len(cols):
                block = covariance[rows.start:rows.stop, cols.start:cols.stop,
                                   rows.start + dy:rows.stop + dy,
                                   cols.start + dx:cols.stop + dx]
                lags[dy + radius, dx + radius] = torch.einsum("yxyx->", block) / (
                    len(rows) * len(cols))
    return lags.float()


def sure_weight(noisy: np.ndarray, wiener: np.ndarray, nonlocal_means: np.ndarray,
                kept_wiener: float, kept_nonlocal: float, chunk: int = 4) -> float:
    """The weight ``alpha`` of the Wiener stage in ``f_N + alpha (f_W - f_N)`` that
    minimises the summed risk (module docstring); all ``(D, H, W)``."""
    apart = towards = 0.0
    for first in range(0, noisy.shape[0], chunk):
        y = noisy[first:first + chunk].astype(np.float64).ravel()
        n = nonlocal_means[first:first + chunk].astype(np.float64).ravel()
        difference = wiener[first:first + chunk].ravel() - n
        apart += float(np.dot(difference, difference))
        towards += float(np.dot(difference, n - y))
    if not apart > 0:
        return FALLBACK_WEIGHT
    return float(np.clip(-(towards + kept_wiener - kept_nonlocal) / apart, 0.0, 1.0))


def mix(wiener: np.ndarray, nonlocal_means: np.ndarray, weight: float,
        out: Optional[np.ndarray] = None) -> np.ndarray:
    """``nonlocal_means + weight (wiener - nonlocal_means)``, written into ``out`` (which may
    be ``wiener``) when given."""
    out = np.empty_like(wiener) if out is None else out
    np.subtract(wiener, nonlocal_means, out=out)
    out *= weight
    out += nonlocal_means
    return out
