"""Every noise estimate of the engine, from the data alone.

Noise independent across slices (the premise of NS-N2N) is measured from second
differences across slices, ``x_{k+1} - 2 x_k + x_{k-1}``, where the anatomy is flat
(:func:`estimate_noise`); magnitude MRI also has its air (the thermal floor) and the
Rayleigh mode of its background (the Rician bias correction).  Every spread is robust
(:func:`robust_std`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .filters import dct_basis, gaussian_lowpass, split_bands
from .runtime import CancelEvent, check_cancel


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


# The flattest share of the tissue voxels that change across slices, judged on the stack
# smoothed by FLATNESS_SIGMA px: there the second differences hold noise and little anatomy.
FLAT_SHARE = 0.1
FLATNESS_SIGMA = 2.0
MAX_TRIPLETS = 24  # slice triplets sampled: bounded time and memory on large volumes
MIN_VOXELS = 500  # fewer changing tissue voxels than this: every changing voxel counts
# Magnitude MRI with an air background: the estimate never exceeds the thermal noise
# measured in the air.  Tissue may carry more (physiological noise), but an overestimate
# removes anatomy while an underestimate only leaves some noise (docs/nsn2n.md, "Noise
# estimate").
AIR_FACTOR = 1.0
# Std of the magnitude in air per sigma: Rayleigh (one coil) 0.655, sum of many coils 0.707.
AIR_STD_PER_SIGMA = 0.68
AIR_MARGIN = 3  # px between tissue and the air that is used
MAX_ZERO_SHARE = 0.05  # more exact zeros: the scanner masked the background; not noise
# The flat voxels' noise across slices over their noise in-plane, below which the noise is
# taken as correlated between neighbouring slices (through-plane resampling, 3-D k-space
# filtering): NS-N2N's premise fails and the estimate from across slices reads low.
# Second differences carry 6 - 8 rho_1 + 2 rho_2 times the variance for slice-to-slice
# correlations rho, so 0.75 is a correlation of about 0.3.  Measured by ``python -m
# benchmarks noise`` (docs/benchmarks.md, "Noise estimate"): noise independent across
# slices 0.92-0.96 (synthetic MRI 1-10 %), 1.12-1.15 (CT, correlated in-plane), 1.22 and
# 1.36 (the real 2-D ASL and DWI sets); 0.84 and 1.06 on two real volumes of unknown noise;
# correlated 0.63 (rho_1 0.44) and 0.39-0.40 (0.67).
ACROSS_SLICE_RATIO = 0.75


@dataclasses.dataclass(frozen=True)
class NoiseEstimate:
    """The noise of one stack ``(D, H, W)``, in the stack's units.

    ``sigma`` is the standard deviation of the noise on the anatomy; ``spectrum`` the
    variance of each coefficient of an in-plane ``(P, P)`` DCT (noise correlated in-plane,
    e.g. CT, is not white), scaled to average ``sigma^2``; ``bands`` the standard deviation
    in each band of ``filters.split_bands(..., scales)``.  ``slices_sigma`` is the estimate
    from the slices before any cap and ``air_sigma`` the thermal noise measured in air (MR
    magnitude only, when there is usable air).  ``inplane_sigma`` is the noise of the same
    flat voxels from second differences within their slices: near ``slices_sigma`` for
    noise independent across slices, well above it when neighbouring slices share their
    noise (:meth:`correlated_across_slices`).
    """

    sigma: float
    spectrum: torch.Tensor
    bands: Tuple[float, ...]
    slices_sigma: float
    air_sigma: Optional[float] = None
    inplane_sigma: Optional[float] = None

    @property
    def across_to_inplane(self) -> Optional[float]:
        """``slices_sigma / inplane_sigma``, or None when either is missing."""
        if not self.inplane_sigma or not self.slices_sigma:
            return None
        return float(self.slices_sigma / self.inplane_sigma)

    def correlated_across_slices(self) -> bool:
        """Whether neighbouring slices share their noise (:data:`ACROSS_SLICE_RATIO`)."""
        ratio = self.across_to_inplane
        return ratio is not None and bool(ratio < ACROSS_SLICE_RATIO)

    def coefficient_variance(self, depth: int) -> torch.Tensor:
        """Per-coefficient variance of a ``(depth, P, P)`` 3-D DCT: noise independent
        across slices is white along them, so every through-plane frequency has the
        in-plane spectrum."""
        return self.spectrum.expand((depth,) + tuple(self.spectrum.shape)).contiguous()

    def at_sigma(self, sigma: float) -> "NoiseEstimate":
        """The same noise (spectrum shape, bands' ratios) at standard deviation ``sigma``."""
        factor = sigma / self.sigma if self.sigma > 0 else 0.0
        return dataclasses.replace(self, sigma=sigma, spectrum=self.spectrum * factor ** 2,
                                   bands=tuple(band * factor for band in self.bands))


# Otsu's split explains this share of the variance or more only for two real classes
# (anatomy and air); a unimodal (Gaussian) histogram gives 2/pi = 0.64.
BIMODAL = 0.75


def repeats_sigma(stacks: Sequence[np.ndarray],
                  tissue: Optional[Sequence[torch.Tensor]] = None) -> float:
    """The noise of stacks of repeated images of one anatomy ``(T, H, W)``, as repeats
    measure it: from second differences along time over all the anatomy (``tissue``, one
    mask per stack; by default :func:`tissue_mask`).  Unlike :func:`estimate_noise` it
    needs no flat voxels (the anatomy does not change between repeats) and no cap from the
    air: physiological fluctuation (pulsation, breathing) differs between repeats as the
    thermal noise does, so it counts."""
    values = []
    for index, stack in enumerate(stacks):
        if len(stack) >= 3:
            x = torch.from_numpy(np.asarray(stack, dtype=np.float32))
            mask = tissue_mask(x) if tissue is None else tissue[index]
            second = (x[2:] - 2 * x[1:-1] + x[:-2]) / 6 ** 0.5
            values.append(second[mask[1:-1]])
    return robust_std(torch.cat(values)) if values else 0.0


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """The threshold that best splits ``values`` in two classes (Otsu 1979), or minus
    infinity when they are not two classes (:data:`BIMODAL`)."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return float("-inf")
    hist = torch.histc(values.float(), bins, low, high).double()
    centres = torch.linspace(low, high, bins + 1, dtype=torch.float64)
    centres = 0.5 * (centres[1:] + centres[:-1])
    below = hist.cumsum(0)
    above = below[-1] - below
    mean_below = (hist * centres).cumsum(0) / below.clamp_min(1)
    mean_above = ((hist * centres).sum() - (hist * centres).cumsum(0)) / above.clamp_min(1)
    between = below * above * (mean_below - mean_above) ** 2 / below[-1] ** 2
    total = (hist * (centres - (hist * centres).sum() / below[-1]) ** 2).sum() / below[-1]
    best = int(torch.argmax(between))
    return float(centres[best]) if between[best] >= BIMODAL * total else float("-inf")


def tissue_mask(stack: torch.Tensor, smoothing: float = FLATNESS_SIGMA) -> torch.Tensor:
    """Voxels of a ``(D, H, W)`` stack above the Otsu threshold of its smoothed values: the
    anatomy, without air, zero-filled backgrounds or the outside of a CT's field of view."""
    smooth = gaussian_lowpass(stack.float(), smoothing)
    return smooth > otsu_threshold(smooth[:: max(1, smooth.shape[0] // 8)])


def _gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    dy = torch.zeros_like(images)
    dx = torch.zeros_like(images)
    dy[:, 1:-1] = 0.5 * (images[:, 2:] - images[:, :-2])
    dx[:, :, 1:-1] = 0.5 * (images[:, :, 2:] - images[:, :, :-2])
    return torch.hypot(dy, dx)


def estimate_noise(stack: np.ndarray, band_scales: Sequence[float], magnitude: bool = False,
                   patch: int = 8, cancel: Optional[CancelEvent] = None) -> NoiseEstimate:
    """The noise of ``stack`` ``(D, H, W)``, slice axis first, noise independent across
    slices.

    Second differences across slices carry ``6 sigma^2`` of such noise, and anatomy that
    drifts linearly cancels; but anatomy that changes from slice to slice (thick slices,
    fast-changing anatomy) does not, and a median over every voxel read it as noise
    (2.5-10x the repeat-measured noise on real 2-6 mm MRI; docs/nsn2n.md).  So sigma is
    taken only where the anatomy is flat: tissue voxels (:func:`tissue_mask`: air and
    zero-filled backgrounds are left out) that change at all, the flattest
    :data:`FLAT_SHARE` of them by the in-plane slope and the second difference of the
    smoothed stack.  The spectrum's shape comes from tiles judged flat on the slices two
    away, whose noise is independent of the tile's (judged on the tile's own slices, the
    flattest tiles are also those whose low-frequency noise happens to be small).  For
    magnitude MRI with unmasked air, sigma is capped at the thermal noise measured there.
    """
    stack = np.asarray(stack)
    depth, height, width = stack.shape
    if depth < 3:
        raise ValueError("need at least three slices to estimate the noise")
    reach = 2 if depth >= 5 else 1  # slices on each side of a sampled centre
    centres = np.unique(np.linspace(reach, depth - 1 - reach,
                                    min(MAX_TRIPLETS, depth - 2 * reach)).round().astype(int))
    rows = np.concatenate([centres + offset for offset in range(-reach, reach + 1)])
    x = torch.from_numpy(np.ascontiguousarray(stack[rows], dtype=np.float32))
    x = x.reshape(2 * reach + 1, len(centres), height, width)
    check_cancel(cancel)  # between the steps that take a second each on 512 px slices
    smooth = gaussian_lowpass(x.reshape(-1, height, width), FLATNESS_SIGMA).reshape(x.shape)
    check_cancel(cancel)
    tissue = smooth > otsu_threshold(smooth[:, :: max(1, len(centres) // 8)])  # tissue_mask
    before, centre, after = x[reach - 1], x[reach], x[reach + 1]
    second = after - 2 * centre + before
    live = tissue[reach - 1:reach + 2].all(0) & (second != 0)
    if int(live.sum()) < MIN_VOXELS:
        live = second != 0
    if not bool(live.any()):
        return NoiseEstimate(0.0, torch.zeros(patch, patch), (0.0,) * (len(band_scales) + 1),
                             0.0)
    check_cancel(cancel)
    near = smooth[reach - 1:reach + 2]
    score = _flatness(near[2] - 2 * near[1] + near[0],
                      near[0], 2 * near[1], near[2], live=live)
    flat = live & (score <= torch.quantile(score[live][:: max(1, int(live.sum()) // 1_000_000)],
                                           FLAT_SHARE))
    slices_sigma = robust_std(second[flat], centre=True) / np.sqrt(6.0)
    inplane_sigma = _inplane_sigma(centre, flat)
    air = _air_sigma(x, second, tissue) if magnitude else None
    sigma = min(slices_sigma, AIR_FACTOR * air) if air else slices_sigma
    check_cancel(cancel)
    far = (score if reach == 1 else
           _flatness(smooth[-1] - smooth[0], smooth[0], smooth[-1], live=live))
    spectrum = _spectrum(second, far, live, sigma, patch)
    return NoiseEstimate(sigma, spectrum, band_stds(spectrum, band_scales), slices_sigma, air,
                         inplane_sigma)


def _inplane_sigma(slices: torch.Tensor, flat: torch.Tensor) -> Optional[float]:
    """The noise of the ``flat`` voxels of ``slices`` ``(N, H, W)`` from second differences
    along their rows and columns; None without interior flat voxels.  For noise white
    in-plane it is the noise's sigma; in-plane correlated noise (CT) reads lower."""
    inner = flat[:, 1:-1, 1:-1]
    if not bool(inner.any()):
        return None
    middle = slices[:, 1:-1, 1:-1]
    down = slices[:, 2:, 1:-1] - 2 * middle + slices[:, :-2, 1:-1]
    across = slices[:, 1:-1, 2:] - 2 * middle + slices[:, 1:-1, :-2]
    return robust_std(torch.cat([down[inner], across[inner]]), centre=True) / 6 ** 0.5


def _flatness(change: torch.Tensor, *slices: torch.Tensor, live: torch.Tensor) -> torch.Tensor:
    """How much anatomy a voxel has: the change across slices of the smoothed stack plus
    the in-plane slope of ``slices`` (weighted), each over its median on the live voxels;
    infinity where not live."""
    change = change.abs()
    slope = sum(_gradient_magnitude(s) for s in slices)
    score = (change / change[live].median().clamp_min(1e-12)
             + slope / slope[live].median().clamp_min(1e-12))
    return torch.where(live, score, torch.full_like(score, float("inf")))


def _spectrum(second: torch.Tensor, score: torch.Tensor, live: torch.Tensor, sigma: float,
              patch: int, share: float = 2 * FLAT_SHARE, min_tiles: int = 64) -> torch.Tensor:
    """Per-coefficient noise variance of an in-plane ``patch`` DCT from the flattest tiles
    of the second differences, scaled to average ``sigma^2``; white where too few tiles."""
    count, height, width = second.shape
    rows, cols = height // patch * patch, width // patch * patch
    white = torch.full((patch, patch), sigma ** 2)
    if rows == 0 or cols == 0:
        return white

    def tiles(values: torch.Tensor) -> torch.Tensor:
        return (values[:, :rows, :cols].reshape(count, rows // patch, patch, cols // patch, patch)
                .permute(0, 1, 3, 2, 4).reshape(-1, patch, patch))

    whole = tiles(live).all(-1).all(-1)
    if int(whole.sum()) < min_tiles:
        return white
    tile_score = tiles(score).mean((-2, -1))[whole]
    chosen = tiles(second)[whole][tile_score <= torch.quantile(tile_score, share)]
    if len(chosen) < min_tiles:
        return white
    basis = dct_basis(patch)
    coefficients = torch.einsum("by,cx,nyx->nbc", basis, basis, chosen)
    spectrum = robust_std(coefficients, dim=0) ** 2 / 6.0
    if not bool(spectrum.mean() > 0):
        return white
    return spectrum * (sigma ** 2 / float(spectrum.mean()))


def band_stds(spectrum: torch.Tensor, scales: Sequence[float], size: int = 64,
              count: int = 8) -> Tuple[float, ...]:
    """Standard deviation in each band of ``split_bands(..., scales)`` of stationary noise
    with the in-plane DCT ``spectrum``, measured on noise made with it (a fixed seed).

    Not measured on the image: the flattest voxels that keep anatomy out of the estimate
    are those where the coarse band of the noise happens to be small as well.
    """
    patch = spectrum.shape[0]
    frequency = torch.fft.fftfreq(size).abs()
    index = (frequency * 2 * patch).round().long().clamp_max(patch - 1)  # DCT k ~ k/(2P)
    power = spectrum[index[:, None], index[None, :]]
    white = torch.randn((count, size, size), generator=torch.Generator().manual_seed(0))
    noise = torch.fft.ifft2(torch.fft.fft2(white) * power.sqrt()).real
    return tuple(float(band.std()) for band in split_bands(noise, scales))


def _air_sigma(x: torch.Tensor, second: torch.Tensor, tissue: torch.Tensor
               ) -> Optional[float]:
    """Thermal noise of a magnitude image from its air, or None when the air is missing,
    too small or was masked (exact zeros) by the scanner."""
    if float((x == 0).float().mean()) > MAX_ZERO_SHARE:
        return None
    near = torch.nn.functional.max_pool2d(tissue.any(0).float()[:, None], 2 * AIR_MARGIN + 1,
                                          stride=1, padding=AIR_MARGIN)[:, 0] > 0
    air = ~near & (x > 0).all(0)
    if int(air.sum()) < max(2000, 0.05 * air.numel()):
        return None
    return robust_std(second[air], centre=True) / np.sqrt(6.0) / AIR_STD_PER_SIGMA


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
