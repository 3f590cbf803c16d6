"""Mix the refinement stages by Stein's unbiased risk estimate.

Every stage (guided non-local means, the Wiener stage, block matching) is linear in the
noisy data once its pilot / guide / matching is fixed, so each one's expected error can be
estimated without a clean image (SURE): for ``f`` linear in ``y = x + n``,

    E |f - x|^2 = E |f - y|^2 - sum_i Var(n_i) + 2 sum_i Cov(f_i, n_i),

where ``Cov(f_i, n_i) = sum_j J_ij C_ji`` is the noise of voxel ``i`` that ``f`` keeps
(``J`` the stage's linear map, ``C`` the noise covariance: in-plane correlated for CT,
independent across slices).  A mix ``sum_s b_s f_s`` with weights on the simplex has a
risk quadratic in ``b``,

    b^T G b + 2 b^T K + constant,   G_st = sum (f_s - y)(f_t - y),

with ``K`` each stage's kept noise summed over the same voxels: the whole stack
(:func:`sure_weights` minimises it; for two stages this is the clipped
``alpha = -(sum (f_W - f_N)(f_N - y) + K_W - K_N) / sum (f_W - f_N)^2``).  Over the
anatomy alone (``noise.tissue_mask``, which leaves out dark anatomy such as CSF, where the
non-local stage is the better one) the Wiener stage's ``alpha`` against the non-local
stage was 0.77 on the synthetic MRI 10 % case, 0.3 dB below the plain mean; over the whole
stack 0.53, level with it.  An exactly constant background (zero-filled, outside a CT's
field of view) adds the same to every risk but for their kept noise there, about 0.2 % of
the noise for either of those two stages (605 equal non-local weights; one DCT coefficient
of 512).  One set of weights per volume: a per-voxel ``alpha`` from Gaussian windows of
4-16 px scored within 0.04 dB of it on MRI and 0.1-0.24 dB below it on CT 1e4
(docs/nsn2n.md, "Mixing the two stages").  Until 2026-12-04 the product took the plain
mean, which halved the Wiener stage's gain wherever the non-local stage found no similar
voxels (nearly clean MRI: 1.3 dB; real 6 mm MRI).  The pilot and the guide are the network
output, which itself depends on the noise; SURE treats them as fixed, so the weights are
an estimate, measured as such in the benchmarks.
"""

from __future__ import annotations

import itertools
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..filters import dct_basis

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


def sure_weights(noisy: np.ndarray, stages: Sequence[np.ndarray], kept: Sequence[float],
                 chunk: int = 4) -> Tuple[float, ...]:
    """The weights (non-negative, summing to 1) of ``stages`` in the mix that minimises
    the summed risk (module docstring), all ``(D, H, W)``; ``kept`` each stage's kept
    noise.  The risk is quadratic in the weights, ``b^T G b + 2 b^T k`` plus a constant
    (``G`` the Gram matrix of the stages' differences from the input), so its minimum on
    the simplex is the least of the minima on each face (a few stages: every face)."""
    count = len(stages)
    if count != len(kept) or count == 0:
        raise ValueError("need one kept noise per stage, and a stage")
    gram = np.zeros((count, count))
    for first in range(0, noisy.shape[0], chunk):
        y = noisy[first:first + chunk].astype(np.float64).ravel()
        differences = np.stack([stage[first:first + chunk].astype(np.float64).ravel() - y
                                for stage in stages])
        gram += differences @ differences.T
    kept = np.asarray(kept, dtype=np.float64)
    spread = np.diag(gram)[:, None] + np.diag(gram)[None, :] - 2 * gram
    if not spread.max() > 0:  # the stages agree everywhere: no risk to compare
        return (1.0 / count,) * count
    best, least = None, np.inf
    for size in range(1, count + 1):
        for face in itertools.combinations(range(count), size):
            # Stationary point on the face's plane (sum of weights 1), by its KKT system.
            system = np.ones((size + 1, size + 1))
            system[:size, :size] = gram[np.ix_(face, face)]
            system[size, size] = 0.0
            try:
                solution = np.linalg.solve(system, np.append(-kept[list(face)], 1.0))
            except np.linalg.LinAlgError:
                continue
            if np.any(solution[:size] < 0):
                continue
            weights = np.zeros(count)
            weights[list(face)] = solution[:size]
            risk = weights @ gram @ weights + 2 * weights @ kept
            if risk < least:
                best, least = weights, risk
    return tuple(float(w) for w in best)


def mix(stages: Sequence[np.ndarray], weights: Sequence[float],
        out: Optional[np.ndarray] = None, chunk: int = 8) -> np.ndarray:
    """``sum_s weights[s] stages[s]`` (float32), written into ``out`` (which may be one of
    the stages) when given; a few slices at a time, so without a whole-volume temporary."""
    out = np.empty(stages[0].shape, np.float32) if out is None else out
    for first in range(0, out.shape[0], chunk):
        part = slice(first, first + chunk)
        out[part] = sum(weight * stage[part].astype(np.float32)
                        for stage, weight in zip(stages, weights))
    return out
