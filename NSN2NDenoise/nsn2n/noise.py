"""Every noise estimate of the engine, from the data alone.

Noise independent across slices (the premise of NS-N2N) is measured from second
differences across slices, ``x_{k+1} - 2 x_k + x_{k-1}``: they carry ``6 sigma^2`` per voxel,
and anatomy that drifts linearly from slice to slice cancels.  Estimates are robust
(medians), so the anatomy that is left in the differences is the minority.  Magnitude MRI
also has a background estimate (the Rayleigh mode of air).
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .filters import dct_basis, split_bands


# The median of |x| for Gaussian x is 0.6745 standard deviations (the normal's 75th
# percentile).
MEDIAN_ABS_PER_STD = 0.6745


def robust_std(values: torch.Tensor, dim: Optional[int] = None, centre: bool = False):
    """Standard deviation of Gaussian ``values`` from their median absolute value, or about
    their median with ``centre``: edges, anatomy and outliers are the minority, so they
    barely move it.  The one robust spread estimate of the engine.  A float, or a tensor
    of them along ``dim``; 0 for no values."""
    if dim is not None:
        if centre:
            values = values - values.median(dim, keepdim=True).values
        return values.abs().median(dim).values / MEDIAN_ABS_PER_STD
    values = values.reshape(-1)
    if values.numel() == 0:
        return 0.0
    if centre:
        values = values - values.median()
    return float(values.abs().median()) / MEDIAN_ABS_PER_STD


def half_normal_std(residuals: torch.Tensor, samples: int = 1_000_000) -> float:
    """Std of |residual| treated as half-normal, from its median (anatomy is the minority)."""
    flat = residuals.reshape(-1)
    if flat.numel() > samples:  # a strided subsample is plenty for a median
        flat = flat[:: flat.numel() // samples]
    return robust_std(flat)


def second_differences(noisy: np.ndarray, chunk: int = 32) -> Iterator[torch.Tensor]:
    """``x_{k+1} - 2 x_k + x_{k-1}`` of a ``(D, H, W)`` stack, ``chunk`` slices at a time:
    noise independent across slices gives them ``6 sigma^2`` per voxel, and anatomy that
    drifts linearly from slice to slice cancels.  Shared by every noise estimate here."""
    depth = noisy.shape[0]
    if depth < 3:
        raise ValueError("need at least three slices to estimate the noise")
    for start in range(0, depth - 2, chunk):
        block = torch.from_numpy(np.ascontiguousarray(noisy[start:start + chunk + 2],
                                                      dtype=np.float32))
        yield block[2:] - 2.0 * block[1:-1] + block[:-2]


def band_noise_std(noisy: np.ndarray, scales: Sequence[float], chunk: int = 32,
                   samples: int = 1_000_000) -> List[float]:
    """Noise standard deviation in each band of ``split_bands(..., scales)``, from second
    differences across slices (robust median over the voxels that change at all)."""
    per_chunk = max(1, samples * chunk // max(1, noisy.shape[0] - 2))
    values: List[List[torch.Tensor]] = [[] for _ in range(len(scales) + 1)]
    for difference in second_differences(noisy, chunk):
        changes = difference != 0
        if not bool(changes.any()):
            continue
        for store, band in zip(values, split_bands(difference, scales)):
            live = band[changes].abs()
            store.append(live[:: max(1, live.numel() // per_chunk)])
    return [robust_std(torch.cat(store)) / np.sqrt(6.0) if store else 0.0 for store in values]


def coefficient_noise_variance(noisy: np.ndarray, patch: Tuple[int, int, int],
                               chunk: int = 32, samples: int = 200_000) -> torch.Tensor:
    """Noise variance of every coefficient of a ``patch``-sized 3-D DCT of ``noisy``.

    Robust (median) over in-plane blocks of the second differences across slices that
    change at all: voxels that never change (outside a CT reconstruction circle, zero-filled
    background) carry no noise.
    """
    depth, height, width = noisy.shape
    _, py, px = patch
    cy, cx = dct_basis(py), dct_basis(px)
    rows, cols = height // py * py, width // px * px
    per_chunk = max(1, samples * chunk // max(1, depth - 2))
    kept = []
    for difference in second_differences(noisy, chunk):
        tiles = (difference[:, :rows, :cols]
                 .reshape(-1, rows // py, py, cols // px, px)
                 .permute(0, 1, 3, 2, 4).reshape(-1, py, px))
        tiles = tiles[(tiles != 0).all(-1).all(-1)]
        if len(tiles):
            kept.append(tiles[:: max(1, len(tiles) // per_chunk)])
    if not kept:
        return torch.zeros(patch)
    coefficients = torch.einsum("by,cx,nyx->nbc", cy, cx, torch.cat(kept))
    variance = robust_std(coefficients, dim=0) ** 2 / 6.0
    return variance.expand(patch).contiguous()


def slice_noise_sigma(array: np.ndarray, axis: int = 0) -> float:
    """Noise standard deviation from second differences across slices.

    ``x_k - (x_{k-1} + x_{k+1}) / 2`` has variance ``1.5 sigma^2`` for noise that is
    independent across slices, whatever its in-plane correlation (CT), so this also works
    where in-plane estimators under-read.  Anatomy only raises the estimate; the median of
    absolute values keeps edges from dominating it.
    """
    x = torch.from_numpy(np.moveaxis(array, axis, 0).astype(np.float32))
    if x.shape[0] < 3:
        raise ValueError("need at least 3 slices")
    second = x[1:-1] - 0.5 * (x[:-2] + x[2:])
    return robust_std(second, centre=True) / np.sqrt(1.5)


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
