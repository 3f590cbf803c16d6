"""Guided non-local means: noisy voxels averaged with weights from the network output.

Non-local means with the patch distances measured on a guide (the network output) instead
of the noisy data: every voxel becomes the weighted mean of the noisy voxels around it
(5 slices x 11 x 11 px), weighted by ``exp(-d / h^2)`` where ``d`` is the summed squared
difference of the guide's 3x5x5 patches around the two voxels.  The guide is nearly
noise-free, so the weights find the voxels with the same anatomy far better than noisy
patches do, and the values themselves come from the data, so the network's smoothing of
anatomy that changes between slices (its z-bias) is not copied into the output.

``h^2`` is ``strength`` x the patch size x the noise variance per voxel (the caller's;
``noise.estimate_noise`` for NS-N2N): on a nearly clean volume it goes to zero, so only
voxels whose guide patches are practically identical are averaged.  Measured on saved
`balanced` outputs (2026-11-23, inside the head/body mask, MRI 5 % / 10 %, CT 1e4 / 5e3):
the Wiener stage alone 35.10 / 31.52 / 39.01 / 37.30 dB, this stage alone 34.37 / 31.79 /
42.05 / 40.56, the mean of both (the product then; now mixed by their risk,
``refine/combine.py``) 35.64 / 32.28 / 41.21 / 39.55.  The search
radius and the strength were chosen on those four cases (docs/nsn2n.md, "Guided
non-local means"); ``python -m benchmarks ablation`` measures the stage as shipped.
"""

from __future__ import annotations

import itertools
import time
from typing import Optional, Tuple

import numpy as np
import torch

from ..filters import box_sum, mirror_index, tent_average
from ..runtime import CancelEvent, ProgressCallback, check_cancel, report_pace
from .combine import KeptNoise

SEARCH = (2, 5, 5)  # search radius (slices, rows, columns)
PATCH = (3, 5, 5)  # patch whose guide distance weighs a voxel
# 0.3 until 2026-12-04, chosen on the four synthetic benchmark cases with the noise
# estimate of the time, which read MRI 10 % 20 % low; with noise.estimate_noise (0.95x
# there) 0.3 oversmoothed it by 0.4 dB, and 0.2 keeps all four cases within 0.1 dB of
# their earlier `fast` results (docs/nsn2n.md, "Noise estimate").
STRENGTH = 0.2
CHUNK = 8  # output slices per step: bounds the temporaries on large volumes


def guided_nonlocal_means(noisy: np.ndarray, guide: np.ndarray, noise_variance: float,
                          strength: float = STRENGTH, search: Tuple[int, int, int] = SEARCH,
                          patch: Tuple[int, int, int] = PATCH,
                          stride: Tuple[int, int, int] = (1, 1, 1), chunk: int = CHUNK,
                          progress: Optional[ProgressCallback] = None,
                          cancel: Optional[CancelEvent] = None,
                          kept_noise: Optional[KeptNoise] = None) -> np.ndarray:
    """Average ``noisy`` over similar voxels, similarity measured on ``guide``; both
    ``(D, H, W)`` on the same scale.  Returns float32.  ``kept_noise`` collects the noise
    each voxel keeps, ``sum_j w_ij C_ij / sum_j w_ij`` (``refine/combine.py``).

    ``stride`` spaces the search offsets along each axis, and the data are first averaged
    by a tent of that half-width there, so that each strided offset stands for the
    ``stride`` offsets around it (the tents sum to one on the grid): ultrasound needs a
    search window of many speckle grains, and neighbours within a grain carry nearly the
    same speckle.  Measured on simulated speckle (grain 2.6 px, radius 18 px): stride 3
    with the tent scored the same SSIM as stride 1 in a sixth of the time; stride 2
    without it lost 0.03."""
    if noisy.shape != guide.shape:
        raise ValueError(f"shapes differ: {noisy.shape} vs {guide.shape}")
    if noise_variance < 0 or strength < 0:
        raise ValueError("noise_variance and strength must be >= 0")
    if any(p % 2 == 0 for p in patch):
        raise ValueError("patch sides must be odd")
    if any(k < 1 for k in stride):
        raise ValueError("stride must be >= 1")
    if kept_noise is not None and any(k != 1 for k in stride):
        raise ValueError("kept noise is measured only without a stride")
    if noise_variance * strength == 0:  # no noise to average away
        if kept_noise is not None:  # the identity keeps all of it
            kept_noise.add(torch.full(noisy.shape, kept_noise.variance))
        return np.array(noisy, dtype=np.float32)
    noisy = tent_average(np.asarray(noisy, dtype=np.float32), stride)
    temperature = strength * noise_variance * float(np.prod(patch))
    depth, height, width = noisy.shape
    half = [p // 2 for p in patch]
    margin = [s + h for s, h in zip(search, half)]
    y_index = mirror_index(-margin[1], height + margin[1], height)
    x_index = mirror_index(-margin[2], width + margin[2], width)
    offsets = list(itertools.product(*(range(-(s // k) * k, s + 1, k)
                                       for s, k in zip(search, stride))))
    output = np.empty(noisy.shape, np.float32)

    def padded(volume: np.ndarray, z_index: torch.Tensor) -> torch.Tensor:
        values = np.asarray(volume[z_index.numpy()], dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(values))[:, y_index][:, :, x_index]

    starts = range(0, depth, chunk)
    started = time.perf_counter()
    for done, first in enumerate(starts):
        check_cancel(cancel)
        report_pace(progress, "refine", done, len(starts), started)
        count = min(chunk, depth - first)
        z_index = mirror_index(first - margin[0], first + count + margin[0], depth)
        data, similar = padded(noisy, z_index), padded(guide, z_index)

        def window(values: torch.Tensor, offset, border) -> torch.Tensor:
            # The region around the output voxels (plus ``border``) moved by ``offset``.
            return values[tuple(slice(m - b + o, m - b + o + n + 2 * b) for m, b, o, n in
                                zip((margin[0], margin[1], margin[2]), border, offset,
                                    (count, height, width)))]

        reference = window(similar, (0, 0, 0), half)
        total = torch.zeros((count, height, width))
        weights = torch.zeros((count, height, width))
        kept = None if kept_noise is None else torch.zeros((count, height, width))
        for offset in offsets:  # a chunk of 512 px slices takes seconds: check each
            check_cancel(cancel)
            distance = box_sum((reference - window(similar, offset, half)).square_(), patch)
            weight = distance.div_(-temperature).exp_()
            total.addcmul_(weight, window(data, offset, (0, 0, 0)))
            weights += weight
            covariance = 0.0 if kept is None else kept_noise.covariance(offset)
            if covariance != 0.0:
                kept.add_(weight, alpha=covariance)
        output[first:first + count] = (total / weights).numpy()
        if kept is not None:
            kept_noise.add(kept / weights)
    report_pace(progress, "refine", len(starts), len(starts), started)
    return output
