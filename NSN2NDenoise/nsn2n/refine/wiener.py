"""Empirical Wiener refinement: the network output as the pilot of a 3-D DCT shrinkage.

The second stage of BM3D/BM4D without the block matching: every 3-D patch of the noisy
stack is transformed by an orthonormal DCT, each coefficient is scaled by the Wiener gain
``P^2 / (P^2 + s^2)`` where ``P`` is the same coefficient of the pilot (the network output)
and ``s^2`` that coefficient's noise variance, and the overlapping patches are averaged back
with BM3D's weights ``1 / sum(gain^2 s^2)``.

Why after the network: the gain comes from the pilot but the values from the noisy data, so
what the network got right is kept with less of its texture loss, and where the noise is
weak (a nearly clean volume) the gain is near 1 and the input comes back.  Measured on
saved 600-step outputs inside the head/body, patches every 4 / 3 / 2 px: MRI 5 % 33.07 ->
34.59 / 34.76 / 34.85 dB, CT 1e4 38.51 -> 38.59 / 38.76 / 38.92 dB, in 0.6 / 1.3 / 3.6 s
for 2 M voxels; every 2 px is the default.  ``python -m benchmarks ablation`` measures it
as shipped.

The noise variance of each coefficient is the caller's (``noise.NoiseEstimate``: noise
independent across slices is white along them, so every through-plane frequency has the
in-plane spectrum, and in-plane correlated noise (CT) is handled coefficient by
coefficient).  It does not depend on the pilot: a robust estimate from ``x - pilot``
instead (saved 600-step outputs, every 4 px) scored 34.26 dB on MRI 5 % and 38.98 dB on CT
1e4: it depends on how much the network removed.
"""

from __future__ import annotations

import time
from typing import Optional, Tuple

import numpy as np
import torch

from ..filters import dct_basis, padded_index
from ..runtime import CancelEvent, ProgressCallback, check_cancel, report_pace
from .combine import KeptNoise

PATCH = (8, 8, 8)
STRIDE = 2
BAND_PATCHES = 40_000  # patches per step: ~80 MB for each of a few temporaries


def empirical_wiener(noisy: np.ndarray, pilot: np.ndarray,
                     noise_variance: torch.Tensor, patch: Tuple[int, int, int] = PATCH,
                     stride: int = STRIDE, inplace: bool = False,
                     progress: Optional[ProgressCallback] = None,
                     cancel: Optional[CancelEvent] = None,
                     kept_noise: Optional[KeptNoise] = None) -> np.ndarray:
    """Wiener-filter ``noisy`` with ``pilot`` as the signal estimate; both ``(D, H, W)``
    on the same scale.  ``inplace`` writes the result into ``pilot`` (float32).
    ``kept_noise`` collects the noise each voxel keeps (``refine/combine.py``): per patch
    the diagonal of ``B^T diag(gain * s^2) B`` (``B`` the DCT, which is taken to
    decorrelate the noise), aggregated with the patches' weights; 1.4x the time.

    Patches are processed slab by slab along the slice axis into a rolling buffer of one
    patch depth, so the memory beyond the output is a few slabs, not whole volumes (a
    512x512x300 CT stays within the 4 GB that ``python -m benchmarks memory`` checks).
    """
    if noisy.shape != pilot.shape:
        raise ValueError(f"shapes differ: {noisy.shape} vs {pilot.shape}")
    if stride < 1:
        raise ValueError("stride must be >= 1")
    if inplace and pilot.dtype != np.float32:
        raise ValueError("inplace needs a float32 stack")
    depth, height, width = noisy.shape
    patch = tuple(min(p, n) for p, n in zip(patch, noisy.shape))
    pz, py, px = patch
    sz, sy, sx = (min(stride, p) for p in patch)  # no gaps between patches
    noiseless = noise_variance <= 0  # a coefficient without noise is kept as it is
    cz, cy, cx = dct_basis(pz), dct_basis(py), dct_basis(px)
    z_index = padded_index(depth, pz, sz)
    y_index = padded_index(height, py, sy)
    x_index = padded_index(width, px, sx)
    plane = (len(y_index), len(x_index))
    output = pilot if inplace else np.empty(noisy.shape, np.float32)
    # Rows are written once no later patch covers them; the mirrored rows past the end
    # are read after that, so the pilot's last patch depth is kept aside.
    pilot_tail = np.array(pilot[depth - pz:], dtype=np.float32)

    def slab(volume: np.ndarray, z: int, tail: Optional[np.ndarray] = None) -> torch.Tensor:
        rows = z_index[z:z + pz].numpy()
        if tail is None:
            values = np.asarray(volume[rows], dtype=np.float32)
        else:
            values = np.stack([tail[r - (depth - pz)] if r >= depth - pz else volume[r]
                               for r in rows]).astype(np.float32, copy=False)
        return torch.from_numpy(np.ascontiguousarray(values))[:, y_index][:, :, x_index]

    def patches(values: torch.Tensor) -> torch.Tensor:  # (pz, rows, W') -> (ny, nx, pz, py, px)
        return values.unfold(1, py, sy).unfold(2, px, sx).permute(1, 2, 0, 3, 4)

    def fold(values: torch.Tensor, rows: int) -> torch.Tensor:
        columns = values.reshape(-1, pz * py * px).T.unsqueeze(0)
        summed = torch.nn.functional.fold(columns, (rows, plane[1]), (py, px), stride=(sy, sx))
        return summed.reshape(pz, rows, plane[1])

    total = torch.zeros((pz,) + plane)  # rows first .. first + pz - 1
    weight = torch.zeros((pz,) + plane)
    kept = None if kept_noise is None else torch.zeros((pz,) + plane)
    squared = None if kept is None else (cz * cz, cy * cy, cx * cx)
    first = 0
    band = max(1, BAND_PATCHES // ((plane[1] - px) // sx + 1))  # patch rows per band

    def emit(count: int) -> None:
        nonlocal total, weight, kept, first
        rows = min(count, depth - first)
        if rows > 0:
            done = total[:rows, :height, :width] / weight[:rows, :height, :width]
            output[first:first + rows] = done.numpy()
            if kept is not None:
                kept_noise.add(kept[:rows, :height, :width] / weight[:rows, :height, :width])
        total = torch.cat([total[count:], torch.zeros((count,) + plane)])
        weight = torch.cat([weight[count:], torch.zeros((count,) + plane)])
        if kept is not None:
            kept = torch.cat([kept[count:], torch.zeros((count,) + plane)])
        first += count

    starts = range(0, len(z_index) - pz + 1, sz)
    started = time.perf_counter()
    for done, z in enumerate(starts):
        check_cancel(cancel)
        # ~2 min for a 512x512x300 CT (3.6 s per 2 M voxels): worth a progress bar.
        report_pace(progress, "refine", done, len(starts), started)
        if z > first:
            emit(z - first)
        noisy_slab, pilot_slab = slab(noisy, z), slab(pilot, z, pilot_tail)
        # A band of patch rows at a time bounds the temporaries.
        for top in range(0, plane[0] - py + 1, sy * band):
            check_cancel(cancel)
            rows = min(plane[0] - top, (band - 1) * sy + py)
            data = torch.einsum("az,by,cx,...zyx->...abc", cz, cy, cx,
                                patches(noisy_slab[:, top:top + rows]))
            signal = torch.einsum("az,by,cx,...zyx->...abc", cz, cy, cx,
                                  patches(pilot_slab[:, top:top + rows]))
            power = signal * signal
            gain = torch.where(noiseless, 1.0,
                               power / (power + noise_variance).clamp_min(1e-30))
            shrunk = torch.einsum("az,by,cx,...abc->...zyx", cz, cy, cx, gain * data)
            patch_weight = 1.0 / (gain * gain * noise_variance).sum((-3, -2, -1)).clamp_min(1e-20)
            patch_weight = patch_weight[..., None, None, None]
            total[:, top:top + rows] += fold(shrunk * patch_weight, rows)
            weight[:, top:top + rows] += fold(patch_weight.expand_as(shrunk), rows)
            if kept is not None:
                diagonal = torch.einsum("az,by,cx,...abc->...zyx", *squared,
                                        gain * noise_variance)
                kept[:, top:top + rows] += fold(diagonal * patch_weight, rows)
    emit(pz)
    report_pace(progress, "refine", len(starts), len(starts), started)
    return output
