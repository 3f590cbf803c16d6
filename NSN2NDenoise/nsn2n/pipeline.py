"""From a :class:`Volume` to a denoised :class:`Volume`: the one entry every front end uses.

The command line, the Slicer logic and the benchmark all call :func:`denoise`.  It owns
what is not the method's business: validation, slice-axis choice, intensity
normalisation and its exact inverse, the Rician bias correction and the output pixel type.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Optional, Tuple, Union

import numpy as np

from . import intensity
from .errors import InputError
from .methods import nsn2n
from .training import CancelEvent, ProgressCallback, resolve_device
from .volume import Geometry, Volume, cast_like, check_voxels

log = logging.getLogger(__name__)

METHODS = ("auto", "nsn2n")


@dataclasses.dataclass(frozen=True)
class DenoiseOptions:
    """What a user can choose; ``None`` means "decide from the data"."""

    method: str = "auto"
    preset: str = "balanced"
    steps: Optional[int] = None
    max_minutes: Optional[float] = None
    seed: int = 0
    device: str = "auto"
    slice_axis: Union[str, int] = "auto"
    modality: Optional[str] = None
    bias_correction: Optional[bool] = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose one of "
                             + ", ".join(METHODS))
        if self.slice_axis not in ("auto", 0, 1, 2):
            raise InputError(f"slice axis must be auto, 0, 1 or 2, not {self.slice_axis!r}")
        self.method_config()  # every other option is checked by the method's config
        resolve_device(self.device)

    def method_config(self) -> nsn2n.NSN2NConfig:
        max_seconds = None if self.max_minutes is None else 60.0 * self.max_minutes
        try:
            return nsn2n.config_for(self.preset, steps=self.steps, max_seconds=max_seconds,
                                    seed=self.seed, device=self.device)
        except ValueError as exc:
            raise InputError(str(exc)) from None


def resolve_slice_axis(geometry: Geometry, requested: Union[str, int] = "auto") -> int:
    """Array axis (0, 1, 2 of the ``(k, j, i)`` array) that runs across slices.

    By default the axis with the largest spacing: the through-plane axis of a typical
    acquisition, whose neighbouring slices have independent noise.  Ties (isotropic
    voxels) go to array axis 0, the file's slice order.
    """
    if requested != "auto":
        return int(requested)
    spacing_by_array_axis = list(reversed(geometry.spacing))  # ITK is (i, j, k)
    largest = max(spacing_by_array_axis)
    return next(axis for axis, s in enumerate(spacing_by_array_axis)
                if np.isclose(s, largest, rtol=1e-3))


def rician_sigma_for(slices: np.ndarray, modality: Optional[str],
                     requested: Optional[bool]) -> Optional[float]:
    """Sigma for the Rician bias correction, or None when it is not applied.

    Automatic (``requested`` None): MR magnitude images whose background shows Rayleigh
    noise, with sigma from that background.  Without such a background (tight crops,
    skull-stripped or non-MR magnitude data) the correction is skipped rather than guessed,
    so a clean image is never darkened.  Forced on: the background estimate, else the
    cross-slice estimate.
    """
    if requested is False or (requested is None and modality != intensity.MR):
        return None
    if slices.min() < 0:
        if requested:
            raise InputError("Rician bias correction needs a magnitude image (no negative "
                             "values); turn it off for this volume")
        return None
    sigma = intensity.rician_background_sigma(slices)
    if sigma is None and requested:
        sigma = intensity.slice_noise_sigma(slices, 0)
    return sigma


def denoise(volume: Volume, options: DenoiseOptions = DenoiseOptions(),
            progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelEvent] = None, *,
            method_config: Optional[nsn2n.NSN2NConfig] = None,
            reference: Optional[np.ndarray] = None) -> Tuple[Volume, Dict]:
    """Denoise ``volume``; returns the result (same geometry and pixel type) and a report.

    ``method_config`` replaces the config built from ``options`` and ``reference`` (a clean
    array shaped like the volume) turns training supervised: both exist for the benchmark's
    ablations and upper bound, so that they share every other step with the product.
    """
    array = volume.array
    check_voxels(array)
    axis = resolve_slice_axis(volume.geometry, options.slice_axis)
    if array.shape[axis] < 3:
        raise InputError(f"{array.shape[axis]} slices along axis {axis}; at least 3 are "
                         "needed")
    modality = intensity.infer_modality(array, options.modality or volume.modality)
    slices = np.moveaxis(array, axis, 0)
    sigma = rician_sigma_for(slices, modality, options.bias_correction)
    correct_bias = sigma is not None
    normalization = intensity.Normalization.fit(slices, keep_zero=correct_bias)
    if reference is not None:
        reference = normalization.apply(np.moveaxis(reference, axis, 0))
    denoised, report = nsn2n.fit_predict(normalization.apply(slices),
                                         method_config or options.method_config(),
                                         progress, cancel, reference)
    log.info("NS-N2N mask: %.1f %% of pixels matched (tau %.3f on the normalised scale)",
             100 * report["matched_fraction"], report["tau"])
    result = normalization.invert(denoised)
    if correct_bias:
        result = intensity.rician_bias_correct(result, sigma)
        report["rician_sigma"] = sigma
    result = cast_like(np.moveaxis(result, 0, axis), array.dtype)
    report.update(slice_axis=axis, modality=modality, bias_correction=correct_bias,
                  preset=options.preset, seed=options.seed)
    return volume.with_array(result), report
