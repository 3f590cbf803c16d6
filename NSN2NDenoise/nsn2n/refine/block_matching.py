"""Block-matching Wiener stage: BM4D's second step with the guarded network output as pilot.

Every ``stride`` voxels a reference cube of 4 x 4 x 4 leads a group of the 16 cubes most
like it in the pilot (squared distance, within +-1 slice and +-5 px); the group's noisy
cubes are transformed by a 3-D DCT and a DCT across the group, each coefficient is scaled
by the Wiener gain ``P^2 / (P^2 + s^2)`` of the same coefficient of the pilot's group, and
the cubes go back where they came from, averaged with BM3D's weights
``1 / sum(gain^2 s^2)``.  The DCT-Wiener stage (``wiener.py``) shrinks each patch on its
own; here similar cubes share their coefficients, which is what beats it where anatomy
repeats (measured in docs/nsn2n.md, "Block matching").

The gains take the noise as white with the run's variance, as BM4D does, even where the
estimated in-plane spectrum says otherwise.  On the real 2 mm DWI volume that spectrum
implies a correlation of 0.49 between neighbouring pixels, while the difference of the
two repeats shows 0.19-0.24 in the air and 0.27-0.36 in the head (motion included); gains
from the spectrum scored 31.308 dB there, white gains 31.325 (the same network output;
docs/nsn2n.md, "Block matching").  Where the noise really is correlated in-plane (CT) the
mix (``combine.py``) weighs this stage by its risk, which is computed with the spectrum.

Its kept noise (``combine.py``) has no closed form worth computing: matched cubes overlap,
so a voxel's noise reaches its own output through several slots of a group.  For the
fixed matching and gains the stage is linear, so ``sum_i Cov(f_i, n_i) = tr(J C) =
E[n^T J n]`` for ``n`` drawn with the noise covariance ``C``: the stage filters one such
probe alongside the data (a Hutchinson estimate: unbiased; one probe's spread was 4-5 %
of the total on a 5 x 13 x 12 stack, and it falls with the number of voxels).  Each
slice's probe is drawn from its own seed, so the result
does not depend on how the stack is cut into slabs.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Optional, Tuple

import numpy as np
import torch

from ..filters import dct_basis, padded_index
from ..runtime import CancelEvent, ProgressCallback, check_cancel, report_pace

CUBE = (4, 4, 4)
GROUP = 16
SEARCH = (1, 5, 5)
STRIDE = 3
# Past the stack the pilot reads this, so no cube reaching there is ever matched:
# (FAR)^2 summed over a cube stays below float32's largest value.
FAR = 1e18
# References per transformed chunk (35-70 MB per temporary) and, as distances to every
# search offset, per slab (~150 MB).
CHUNK_REFERENCES = 8192
SLAB_REFERENCES = 100_000


class ProbeNoise:
    """Noise with the in-plane covariance ``lags`` on slices of ``(rows, cols)``,
    independent across slices; slice ``z`` is drawn from the seed ``(seed, z)``."""

    def __init__(self, lags: torch.Tensor, rows: int, cols: int, seed: int):
        radius = lags.shape[0] // 2
        # Drawn circulant on a plane larger by the lags' reach and cropped: no wrapped
        # covariance between opposite edges.
        grid = (rows + radius, cols + radius)
        table = torch.zeros(grid, dtype=torch.float64)
        for dy in range(-radius, radius + 1):
            for dx in range(-radius, radius + 1):
                table[dy % grid[0], dx % grid[1]] += float(lags[dy + radius, dx + radius])
        # The circulant covariance's eigenvalues; the few a short table makes negative
        # are dropped.
        self.amplitude = torch.fft.fft2(table).real.clamp_min(0.0).sqrt()
        self.shape, self.grid, self.seed = (rows, cols), grid, seed

    def slices(self, indices) -> torch.Tensor:
        """The probe on slices ``indices`` (float32, ``(len(indices), rows, cols)``)."""
        white = torch.from_numpy(np.stack(
            [np.random.default_rng((self.seed, int(z))).standard_normal(self.grid)
             for z in indices]).reshape((-1,) + self.grid))
        colored = torch.fft.ifft2(torch.fft.fft2(white) * self.amplitude).real
        return colored[:, :self.shape[0], :self.shape[1]].float()


def strided_box(values: torch.Tensor, size, step, counts) -> torch.Tensor:
    """Sums over the boxes of ``size`` starting every ``step`` (``counts`` per axis)."""
    for axis, (width, stride, count) in enumerate(zip(size, step, counts)):
        span = (count - 1) * stride + 1
        head = (slice(None),) * axis
        values = sum(values[head + (slice(shift, shift + span, stride),)]
                     for shift in range(width))
    return values


def block_matching_wiener(noisy: np.ndarray, pilot: np.ndarray, variance: float,
                          stride: int = STRIDE, probe: Optional[ProbeNoise] = None,
                          progress: Optional[ProgressCallback] = None,
                          cancel: Optional[CancelEvent] = None
                          ) -> Tuple[np.ndarray, Optional[float]]:
    """Filter ``noisy`` with ``pilot`` as the signal estimate (both ``(D, H, W)``, one
    scale; ``variance`` the noise's).  Returns the output (float32) and, when ``probe``
    is given (on slices of the stack's), its kept noise summed over every voxel (module
    docstring), else None.  References are matched slab by slab along the slice axis and
    the output is written as soon as no later cube can reach it, so the memory beyond the
    output is a few slabs."""
    if noisy.shape != pilot.shape:
        raise ValueError(f"shapes differ: {noisy.shape} vs {pilot.shape}")
    if stride < 1:
        raise ValueError("stride must be >= 1")
    cube = tuple(min(c, n) for c, n in zip(CUBE, noisy.shape))
    step = tuple(min(stride, c) for c in cube)  # no voxel outside every reference cube
    index = [padded_index(n, c, s) for n, c, s in zip(noisy.shape, cube, step)]
    extended = tuple(len(i) for i in index)  # mirror-extended so references tile it
    counts = tuple((e - c) // s + 1 for e, c, s in zip(extended, cube, step))
    search = tuple(min(r, e - c) for r, e, c in zip(SEARCH, extended, cube))
    offsets = list(itertools.product(*(range(-r, r + 1) for r in search)))
    # A corner reference has the fewest candidates inside the stack.
    group = min(GROUP, math.prod(r + 1 for r in search))
    depth, height, width = noisy.shape
    sz, sy, sx = search
    plane = (extended[1] + 2 * sy, extended[2] + 2 * sx)  # padded by the search with FAR
    plane_size = plane[0] * plane[1]

    transform = torch.kron(torch.kron(dct_basis(cube[0]), dct_basis(cube[1])),
                           dct_basis(cube[2]))  # (cube voxels, cube voxels)
    across = dct_basis(group)
    cells = torch.stack(torch.meshgrid(*(torch.arange(c) for c in cube), indexing="ij"))
    cell_offsets = ((cells[0] * plane[0] + cells[1]) * plane[1] + cells[2]).reshape(-1)
    reference_yx = ((torch.arange(counts[1]) * step[1] + sy)[:, None] * plane[1]
                    + torch.arange(counts[2]) * step[2] + sx).reshape(-1)
    offset_flat = torch.tensor([(oz * plane[0] + oy) * plane[1] + ox for oz, oy, ox in offsets])
    centre = offsets.index((0, 0, 0))
    if probe is not None and probe.shape != (height, width):
        raise ValueError(f"probe slices {probe.shape}, stack slices {(height, width)}")
    if not variance > 0:  # nothing to remove, no noise kept
        return np.array(noisy, dtype=np.float32), (None if probe is None else 0.0)

    def rows(source, first: int, stop: int, fill: float) -> torch.Tensor:
        """Extended rows ``first..stop-1`` of ``source`` (an array, or the probe), the
        plane mirror-extended and padded by the search with ``fill``."""
        out = torch.full((stop - first,) + plane, fill)
        low, high = max(first, 0), min(stop, extended[0])
        if high > low:
            sources = index[0][low:high].numpy()
            values = (source.slices(sources) if isinstance(source, ProbeNoise) else
                      torch.from_numpy(np.asarray(source[sources], dtype=np.float32)))
            out[low - first:high - first, sy:sy + extended[1], sx:sx + extended[2]] = (
                values[:, index[1]][:, :, index[2]])
        return out

    output = np.empty(noisy.shape, np.float32)
    kept_total = 0.0
    planes_per_slab = max(1, SLAB_REFERENCES // (counts[1] * counts[2]))
    slabs = range(0, counts[0], planes_per_slab)
    carried = None  # (first row, total, weight, probe total, probe) still open
    started = time.perf_counter()

    def emit(state, stop: int) -> None:
        """Write the rows of ``state`` before extended row ``stop``: no cube reaches them."""
        nonlocal kept_total
        first, total, weight, probe_total, probe_rows = state
        low, high = max(first, 0), min(stop, depth)
        if high <= low:
            return
        part = slice(low - first, high - first)
        inner = (part, slice(sy, sy + height), slice(sx, sx + width))
        output[low:high] = (total[inner] / weight[inner]).numpy()
        if probe_rows is not None:
            kept_total += float((probe_rows[inner].double()
                                 * (probe_total[inner] / weight[inner]).double()).sum())

    for done, plane_start in enumerate(slabs):
        check_cancel(cancel)
        report_pace(progress, "refine", done, len(slabs), started)
        plane_stop = min(plane_start + planes_per_slab, counts[0])
        first = plane_start * step[0] - sz
        stop = (plane_stop - 1) * step[0] + cube[0] + sz
        if carried is not None:
            emit(carried, first)
        guide = rows(pilot, first, stop, FAR)
        data = rows(noisy, first, stop, 0.0)
        noise = None if probe is None else rows(probe, first, stop, 0.0)
        total, weight = torch.zeros_like(data), torch.zeros_like(data)
        probe_total = None if probe is None else torch.zeros_like(data)
        if carried is not None:  # the rows both slabs' cubes reach
            old_first, old_total, old_weight, old_probe_total, _ = carried
            overlap = old_first + old_total.shape[0] - first
            if overlap > 0:
                total[:overlap] += old_total[-overlap:]
                weight[:overlap] += old_weight[-overlap:]
                if probe_total is not None:
                    probe_total[:overlap] += old_probe_total[-overlap:]

        # Squared distance of every reference cube to the cube at every search offset.
        planes = plane_stop - plane_start
        span = (planes - 1) * step[0] + cube[0]
        inner = (slice(sz, sz + span), slice(sy, sy + extended[1]), slice(sx, sx + extended[2]))
        reference = guide[inner]
        distance = torch.empty((len(offsets), planes * counts[1] * counts[2]))
        for number, (oz, oy, ox) in enumerate(offsets):
            check_cancel(cancel)
            other = guide[sz + oz:sz + oz + span, sy + oy:sy + oy + extended[1],
                          sx + ox:sx + ox + extended[2]]
            difference = (reference - other).square_()
            distance[number] = strided_box(difference, cube, step,
                                           (planes,) + counts[1:]).reshape(-1)
        distance[centre] = -1.0  # the reference leads its group (zero backgrounds tie)
        chosen = distance.topk(group, dim=0, largest=False).indices.T  # (references, group)
        del distance
        reference_flat = (((torch.arange(planes) * step[0] + sz) * plane_size)[:, None]
                          + reference_yx).reshape(-1)

        for start in range(0, chosen.shape[0], CHUNK_REFERENCES):
            check_cancel(cancel)
            starts = reference_flat[start:start + CHUNK_REFERENCES, None] + offset_flat[
                chosen[start:start + CHUNK_REFERENCES]]
            where = (starts[..., None] + cell_offsets).reshape(-1)  # (n * group * cells)
            shape = (-1, group, transform.shape[0])

            def forward(values: torch.Tensor) -> torch.Tensor:
                return torch.matmul(across, values.reshape(shape) @ transform.T)

            def inverse(coefficients: torch.Tensor) -> torch.Tensor:
                return torch.matmul(across.T, coefficients) @ transform

            signal = forward(guide.view(-1)[where])
            power = signal * signal
            gain = power / (power + variance)
            cube_weight = 1.0 / (variance * gain * gain).sum((1, 2)).clamp_min(1e-20)
            spread = cube_weight[:, None].expand(-1, where.numel() // len(cube_weight))
            spread = spread.reshape(-1)
            shrunk = inverse(gain * forward(data.view(-1)[where]))
            total.view(-1).index_add_(0, where, (shrunk.reshape(-1) * spread))
            weight.view(-1).index_add_(0, where, spread)
            if probe_total is not None:
                kept = inverse(gain * forward(noise.view(-1)[where]))
                probe_total.view(-1).index_add_(0, where, kept.reshape(-1) * spread)
        carried = (first, total, weight, probe_total, noise)
    emit(carried, extended[0])
    report_pace(progress, "refine", len(slabs), len(slabs), started)
    return output, (kept_total if probe is not None else None)
