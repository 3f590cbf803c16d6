"""Give back to a Speckle2Self output what the network lost: local brightness, and
structure that stands out from the speckle.

Speckle2Self's skip-free autoencoder, trained for a few hundred steps on one cine or image,
neither reproduces the local brightness of its input nor keeps fine structure: on the
real ALOKA abdominal image the output's mean fell from 7560 to 4570 (of 64507) and the
overlay text and tissue edges were gone; on simulated speckle some runs paled the lesions
(gCNR below the noisy input's).  Two corrections, both measured in README "Ultrasound":

1. Local mean.  Speckle is multiplicative before log compression and about zero-mean
   after it once averaged over many grains, so the removed part ``x - f(x)``, smoothed
   over a few grains, should be zero; what is left there is lost anatomy or bias.  Adding
   it back, ``f(x) + G_sigma * (x - f(x))`` with ``sigma = grains x speckle_grain(x)``,
   makes the output's local mean the input's at that scale and keeps every finer detail of
   the network output.  An isotropic window at 3 grains of the longer axis scored better
   than 2, 4 or 5 grains and than anisotropic windows on saved outputs of both simulated
   cases.
2. Residual guard (``guard.residual_guard``, the same local Wiener gain NS-N2N uses):
   in bands split at 1 and 3 grains, the part of the remaining residual whose local
   energy (window: 2 grains) exceeds ``factor`` (2) times the speckle's goes back into
   the output.  The speckle level of each band is the median absolute band value of the
   input / 0.6745: speckle covers the whole image, anatomy edges are the minority.
   Frames of a cine are not independent noise draws (static tissue keeps its speckle), so
   NS-N2N's estimate from differences across slices does not apply.  Constant
   backgrounds (black outside the sector) pull the median down, which errs toward the
   input.  On saved simulated outputs it added 0.1-0.4 dB PSNR and kept gCNR; on the
   ALOKA image it brought back the overlay text and the tissue edges.

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

from .guard import residual_guard, split_bands
from .pairs import gaussian_lowpass
from .training import CancelEvent, check_cancel

# The high-pass before the autocorrelation removes anatomy (larger than any speckle grain
# of these images: measured grains 2.5-5 px) so that it does not widen the peak.
HIGHPASS_SIGMA = 8.0
GRAIN_RANGE = (0.5, 8.0)  # px; outside it the estimate is not a speckle grain
MAX_FRAMES = 8  # frames sampled evenly for the estimate: the grain is a property of the probe


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
    spread = float(live.median()) / 0.6745 if live.numel() else 0.0
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


def restore_local_mean(noisy: np.ndarray, denoised: np.ndarray, sigma: float) -> np.ndarray:
    """``denoised + G_sigma * (noisy - denoised)`` per frame of ``(N, H, W)`` stacks
    (float64 out); ``sigma <= 0`` returns ``denoised`` unchanged."""
    if noisy.shape != denoised.shape:
        raise ValueError(f"shapes differ: {noisy.shape} vs {denoised.shape}")
    output = np.array(denoised, dtype=np.float64)
    if sigma <= 0:
        return output
    for index in range(noisy.shape[0]):  # one frame at a time: a long cine stays small
        residual = torch.from_numpy(noisy[index:index + 1] - output[index:index + 1])
        output[index] += gaussian_lowpass(residual, sigma)[0].numpy()
    return output


def speckle_band_std(frames: np.ndarray, scales: Sequence[float],
                     samples: int = 1_000_000) -> List[float]:
    """Speckle standard deviation in each band of ``split_bands(frames, scales)``: the
    median absolute band value over all pixels / 0.6745, the Gaussian-noise estimate
    ``guard.band_noise_std`` also uses (anatomy edges are the minority)."""
    step = max(1, frames.size // samples)
    values: List[List[torch.Tensor]] = [[] for _ in range(len(scales) + 1)]
    for index in range(frames.shape[0]):
        frame = torch.from_numpy(np.ascontiguousarray(frames[index:index + 1], np.float32))
        for store, band in zip(values, split_bands(frame, scales)):
            store.append(band.abs().reshape(-1)[::step])
    return [float(torch.cat(store).median()) / 0.6745 for store in values]


def restore(frames: np.ndarray, denoised: np.ndarray, grains: float = 3.0,
            guard_factor: float = 2.0, cancel: Optional[CancelEvent] = None
            ) -> Tuple[np.ndarray, Dict[str, float]]:
    """Both corrections of the module docstring on ``(N, H, W)`` stacks of one intensity
    scale; ``grains = 0`` or ``guard_factor = 0`` skips that one.  Returns float64 frames
    and what was measured: the grain, the local-mean window and the share of the removed
    energy the guard gave back."""
    grain = speckle_grain(frames)
    sigma = grains * grain
    output = restore_local_mean(frames, denoised, sigma)
    returned = 0.0
    if guard_factor > 0:
        check_cancel(cancel)
        # The coarsest band's "speckle level" is dominated by the image's mean, so nothing
        # comes back there: the local-mean step has already given back that band.
        scales, window = (grain, 3.0 * grain), 2.0 * grain
        guarded, returned = residual_guard(
            frames, output, guard_factor, window, cancel=cancel, scales=scales,
            noise_std=speckle_band_std(frames, scales))
        output = guarded.astype(np.float64)
    return output, dict(speckle_grain_px=round(grain, 2), local_mean_sigma_px=round(sigma, 2),
                        guard_returned=round(returned, 3))
