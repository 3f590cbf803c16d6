"""After the Speckle2Self network: average the input where the network output says the
tissue is the same, and give back structure that stands out from the speckle.

The network's output is smooth but not faithful: trained self-supervised, it blurs edges,
leaves a faint checkerboard (transposed convolutions) and does not reproduce local
brightness exactly (on the real ALOKA image a network trained from scratch darkened the
mean from 7560 to 4570 of 64507).  What it does well is tell tissue apart without the
speckle.  So it serves as the guide of a non-local average, the second stage BM3D-type
methods use with their pilot estimate, and the same role the network output plays for
NS-N2N (``refine/nonlocal_means.py``):

1. Guided average.  Each input pixel becomes the weighted mean of the input over a search
   window of ``search_grains`` (7) speckle grains, weights ``exp(-d / h^2)`` with ``d``
   the squared distance of the guide's patches (2 grains + 1 px square) and ``h^2`` =
   ``strength`` (0.25) x the patch's pixel count x the speckle variance, measured as the
   robust spread of input - guide over tissue.  The guide is the network output fitted to
   the input frame by gain and offset, so distances are in units of the speckle whatever
   contrast the network gave.  Offsets are spaced one grain apart, each standing for its
   neighbourhood (``guided_nonlocal_means``' ``stride``): speckle within a grain is one
   sample.  Values come from the input, so brightness stays the input's.  A second pass
   uses the first pass's output as its guide: it is sharper than the network output (its
   values are the input's) and nearly as free of speckle, so the weights find the same
   tissue better (BM3D's pilot, improved once).  Measured on simulated speckle with the
   shipped weights (8 frames, guard off, before :data:`DISPLAY_FLOOR`): SSIM 0.898 ->
   0.919 and PSNR +0.9 dB (grain 2.6 px), 0.884 -> 0.903 and +0.35 dB (grain 3.9 px).
2. Residual guard (``refine/guard.py``, the local Wiener gain NS-N2N uses): in bands
   split at 1 and 3 grains, the part of the residual whose local energy (window: 2 grains)
   exceeds ``factor`` (2) times the speckle's goes back into the output.  The speckle level
   of each band is the robust spread (``noise.robust_std``) of the input's band over tissue
   (:func:`tissue`): speckle covers the tissue, anatomy edges are the minority.  Frames of
   a cine are not independent noise draws (static tissue keeps its speckle), so NS-N2N's
   estimate from differences across slices does not apply.  It brings back overlay text
   and bright tissue edges on the real images.

The grain is the half-width at half maximum of the autocorrelation of the high-passed
frames (clipped at 3 robust standard deviations), along the longer axis (lateral in
B-mode).  On the simulated cases it recovers the PSF's standard deviation (2.5 px ->
2.55 px, 4.0 px -> 3.91 px); on the real pydicom-data files it is 4.1-4.9 px (scan
converted, so coarser than the probe's own speckle).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...filters import gaussian_lowpass, split_bands
from ...noise import robust_std
from ...refine.guard import residual_guard
from ...refine.nonlocal_means import guided_nonlocal_means
from ...runtime import CancelEvent, ProgressCallback, check_cancel

# The high-pass before the autocorrelation removes anatomy (larger than any speckle grain
# of these images: measured grains 2.5-5 px) so that it does not widen the peak.
HIGHPASS_SIGMA = 8.0
GRAIN_RANGE = (0.5, 8.0)  # px; outside it the estimate is not a speckle grain
MAX_FRAMES = 8  # frames sampled evenly for the estimate: the grain is a property of the probe
SEARCH_GRAINS = 7.0  # search radius of the guided average, in grains
STRENGTH = 0.25  # its h^2 in units of the speckle variance per patch pixel
PASSES = 2  # the second pass is guided by the first's output
# Speckle statistics are measured where the smooth estimate is above this share of the
# frame's display range: below it log-compressed speckle is clipped at black, and black
# outside the imaging sector has none.  Without it the real SonoSite cine (sector on ~40 %
# of a black frame) read a speckle variance of 0.73 instead of 103 (8-bit units) and the
# guard gave back 98 % of what was removed.
DISPLAY_FLOOR = 0.1


def half_max_width(profile: np.ndarray) -> float:
    """Distance from index 0 at which a profile that starts at 1 first falls to 0.5,
    linearly interpolated; the profile's length if it never does."""
    below = np.flatnonzero(profile < 0.5)
    if below.size == 0:
        return float(profile.size)
    k = int(below[0])
    if k == 0:
        return 0.0
    return k - 1 + float((profile[k - 1] - 0.5) / (profile[k - 1] - profile[k]))


def speckle_grain(frames: np.ndarray) -> float:
    """Speckle grain of ``(N, H, W)`` frames in pixels (module docstring), clipped to
    :data:`GRAIN_RANGE`."""
    if frames.ndim != 3:
        raise ValueError(f"need (N, H, W) frames, got shape {frames.shape}")
    step = max(1, frames.shape[0] // MAX_FRAMES)
    x = torch.from_numpy(np.ascontiguousarray(frames[::step], dtype=np.float32))
    detail = x - gaussian_lowpass(x, HIGHPASS_SIGMA)
    # Clipped at 3 robust standard deviations: a few strong reflectors (or overlay text)
    # would otherwise dominate the autocorrelation with their own shape.  The spread
    # counts only pixels that vary, or a black background outside the sector would make
    # it tiny and clip the speckle itself.
    magnitude = detail.abs()
    live = magnitude[magnitude > 0]
    spread = robust_std(live)
    detail = detail.clamp(-3 * spread, 3 * spread)
    power = torch.fft.rfft2(detail).abs().square()
    correlation = torch.fft.irfft2(power, s=detail.shape[-2:]).sum(0).double().numpy()
    if correlation[0, 0] <= 1e-12 * float(x.double().square().sum()):
        return GRAIN_RANGE[0]  # (nearly) constant frames: no speckle to measure
    correlation /= correlation[0, 0]
    rows, cols = correlation.shape
    grain = max(half_max_width(correlation[: rows // 2, 0]),
                half_max_width(correlation[0, : cols // 2]))
    return float(np.clip(grain, *GRAIN_RANGE))


def fit_guide(frames: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """``denoised`` mapped frame by frame onto ``frames``' scale by a least-squares affine
    fit (float32): the guide's patch distances are then in the units of the speckle
    variance, whatever contrast the network gave its output."""
    if frames.shape != denoised.shape:
        raise ValueError(f"shapes differ: {frames.shape} vs {denoised.shape}")
    guide = np.empty(frames.shape, np.float32)
    for index, (x, f) in enumerate(zip(frames, denoised)):
        f = f.astype(np.float64)
        spread = f.var()
        gain = ((f - f.mean()) * (x - x.mean())).mean() / spread if spread > 0 else 0.0
        guide[index] = x.mean() + gain * (f - f.mean())
    return guide


def tissue(frames: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """Pixels whose smooth estimate ``guide`` lies above :data:`DISPLAY_FLOOR` of their
    frame's display range: where speckle is not clipped at the display's black level and
    not replaced by the near-constant black outside the imaging sector."""
    low = frames.min(axis=(1, 2), keepdims=True)
    high = frames.max(axis=(1, 2), keepdims=True)
    return guide > low + DISPLAY_FLOOR * (high - low)


def speckle_variance(frames: np.ndarray, guide: np.ndarray, samples: int = 1_000_000) -> float:
    """Variance of ``frames - guide`` over :func:`tissue`, from its median absolute
    deviation (anatomy the guide misses is the minority); 0 where there is no tissue."""
    step = max(1, frames.size // samples)
    live = tissue(frames, guide).reshape(-1)[::step]
    residual = (frames.astype(np.float64) - guide).reshape(-1)[::step][live]
    return robust_std(torch.from_numpy(residual), centre=True) ** 2


def speckle_band_std(frames: np.ndarray, scales: Sequence[float],
                     where: Optional[np.ndarray] = None, samples: int = 1_000_000
                     ) -> List[float]:
    """Speckle standard deviation in each band of ``split_bands(frames, scales)``
    (``noise.robust_std``: anatomy edges are the minority), over the pixels ``where`` is
    true (default: all)."""
    step = max(1, frames.size // samples)
    values: List[List[torch.Tensor]] = [[] for _ in range(len(scales) + 1)]
    for index in range(frames.shape[0]):
        frame = torch.from_numpy(np.ascontiguousarray(frames[index:index + 1], np.float32))
        keep = (torch.ones(frame.numel(), dtype=torch.bool) if where is None
                else torch.from_numpy(np.ascontiguousarray(where[index])).reshape(-1))
        for store, band in zip(values, split_bands(frame, scales)):
            store.append(band.abs().reshape(-1)[keep][::step])
    return [robust_std(torch.cat(store)) for store in values]


def restore(frames: np.ndarray, denoised: np.ndarray, search_grains: float = SEARCH_GRAINS,
            strength: float = STRENGTH, guard_factor: float = 2.0, passes: int = PASSES,
            progress: Optional[ProgressCallback] = None, cancel: Optional[CancelEvent] = None
            ) -> Tuple[np.ndarray, Dict[str, float]]:
    """Both steps of the module docstring on ``(N, H, W)`` stacks of one intensity scale;
    ``search_grains = 0`` or ``guard_factor = 0`` skips that one.  Returns float64 frames
    and what was measured: the grain, the search radius, the speckle variance and the
    share of the removed energy the guard gave back."""
    if passes < 1:
        raise ValueError("passes must be >= 1")
    grain = speckle_grain(frames)
    output = np.array(denoised, dtype=np.float64)
    radius, variance = 0, 0.0
    if search_grains > 0 and strength > 0:
        step, radius = max(1, round(grain)), max(1, round(search_grains * grain))
        side = 2 * step + 1  # patch: 2 grains + 1 px
        for _ in range(passes):  # each pass guided by the one before (module docstring)
            guide = fit_guide(frames, output)
            variance = speckle_variance(frames, guide)
            output = guided_nonlocal_means(
                frames, guide, variance, strength, search=(0, radius, radius),
                patch=(1, side, side), stride=(1, step, step), progress=progress,
                cancel=cancel).astype(np.float64)
    returned = 0.0
    if guard_factor > 0:
        check_cancel(cancel)
        # The coarsest band's "speckle level" is dominated by the image's mean, so nothing
        # comes back there: the averaging above takes its values from the input.
        scales, window = (grain, 3.0 * grain), 2.0 * grain
        where = tissue(frames, fit_guide(frames, output))
        guarded, returned = residual_guard(
            frames, output, guard_factor, window, cancel=cancel, scales=scales,
            noise_std=speckle_band_std(frames, scales, where))
        output = guarded.astype(np.float64)
    return output, dict(speckle_grain_px=round(grain, 2), search_radius_px=radius,
                        speckle_variance=variance, guard_returned=round(returned, 3))
