"""In-plane and 3-D array operations shared by the methods and the refinement stages.

Pure functions of tensors: low-pass filters, frequency bands, box sums, mirrored indexing
and the DCT basis.  Torch, not scipy, so that they run on the same device and in the same
precision as the network (scipy is not a runtime dependency).
"""

from __future__ import annotations

import math
from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

def gaussian_lowpass(slices: torch.Tensor, sigma: float) -> torch.Tensor:
    """In-plane Gaussian filter of a ``(D, H, W)`` stack, reflect-padded, per slice."""
    if sigma <= 0:
        return slices.clone()
    radius = max(1, int(math.ceil(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=slices.dtype, device=slices.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    x = slices.unsqueeze(1)
    pad_h = min(radius, x.shape[-2] - 1)
    pad_w = min(radius, x.shape[-1] - 1)
    # Reflect padding needs pad < size; shrink the kernel on tiny images instead.
    kh = kernel[radius - pad_h: radius + pad_h + 1]
    kw = kernel[radius - pad_w: radius + pad_w + 1]
    x = F.pad(x, (pad_w, pad_w, 0, 0), mode="reflect")
    x = F.conv2d(x, (kw / kw.sum()).view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, pad_h, pad_h), mode="reflect")
    x = F.conv2d(x, (kh / kh.sum()).view(1, 1, -1, 1))
    return x.squeeze(1)


def split_bands(slices: torch.Tensor, scales: Sequence[float]) -> List[torch.Tensor]:
    """In-plane bands of a ``(D, H, W)`` stack split at the Gaussian ``scales`` (px),
    finest first; they sum to the input."""
    bands, previous = [], slices
    for sigma in scales:
        low = gaussian_lowpass(slices, sigma)
        bands.append(previous - low)
        previous = low
    bands.append(previous)
    return bands


def mirror_index(start: int, stop: int, length: int) -> torch.Tensor:
    """Indices ``start..stop-1`` of an axis of ``length``, mirrored at both ends."""
    index = torch.arange(start, stop)
    period = max(1, 2 * (length - 1))
    index = index % period
    return torch.where(index < length, index, period - index)


def padded_index(length: int, patch: int, stride: int) -> torch.Tensor:
    """Indices that mirror-extend an axis so patches every ``stride`` pixels tile it
    exactly (``F.fold`` needs a regular grid)."""
    steps = max(0, math.ceil((length - patch) / stride))
    return mirror_index(0, patch + steps * stride, length)


def patch_positions(shape: Sequence[int], patch: Sequence[int], stride: int) -> int:
    """How many patches of ``patch`` (clipped to ``shape``) every ``stride`` voxels
    (:func:`padded_index`) cover a stack of ``shape``; 0 for stride 0.  Not proportional
    to the voxels: along each axis ceil((n - patch) / stride) + 1."""
    if stride == 0:
        return 0
    count = 1
    for n, p in zip(shape, patch):
        p = min(p, n)
        count *= math.ceil((n - p) / min(stride, p)) + 1
    return count


def dct_basis(size: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix; row ``k`` is the ``k``-th basis vector."""
    k = torch.arange(size, dtype=torch.float64)[:, None]
    j = torch.arange(size, dtype=torch.float64)[None, :]
    basis = torch.cos(math.pi * (2 * j + 1) * k / (2 * size)) * math.sqrt(2.0 / size)
    basis[0] /= math.sqrt(2.0)
    return basis.float()


def box_sum(values: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Sum over every ``size`` box of a ``(D, H, W)`` tensor ('valid': no padding), one
    axis at a time as sums of shifted views (25x faster than ``avg_pool3d`` on the CPU)."""
    for axis, width in enumerate(size):
        length = values.shape[axis] - width + 1
        summed = values.narrow(axis, 0, length).clone()
        for shift in range(1, width):
            summed += values.narrow(axis, shift, length)
        values = summed
    return values


def tent_average(volume: np.ndarray, half_widths: Sequence[int]) -> np.ndarray:
    """``(D, H, W)`` averaged along each axis by a tent (triangle) of that half-width
    (1: unchanged), mirrored at the borders; float32."""
    values = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    for axis, half in enumerate(half_widths):
        if half <= 1 or values.shape[axis] < 2:
            continue
        taps = torch.cat([torch.arange(1, half + 1), torch.arange(half - 1, 0, -1)]).float()
        taps /= taps.sum()
        index = mirror_index(-(half - 1), values.shape[axis] + half - 1, values.shape[axis])
        padded = values.index_select(axis, index)
        length = values.shape[axis]
        values = sum(weight * padded.narrow(axis, shift, length)
                     for shift, weight in enumerate(taps.tolist()))
    return values.numpy()
