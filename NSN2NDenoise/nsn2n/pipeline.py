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
from .methods import nsn2n, speckle2self
from .training import CancelEvent, ProgressCallback, resolve_device
from .volume import Geometry, Volume, cast_like, check_voxels, require_volume

log = logging.getLogger(__name__)

METHODS = ("auto", "nsn2n", "speckle2self")
MethodConfig = Union[nsn2n.NSN2NConfig, speckle2self.Speckle2SelfConfig]
_CONFIG_BUILDERS = {"nsn2n": nsn2n.config_for, "speckle2self": speckle2self.config_for}


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
        for method in _CONFIG_BUILDERS if self.method == "auto" else (self.method,):
            self.method_config(method)  # every other option is checked by the config
        resolve_device(self.device)

    def method_config(self, method: str = "nsn2n") -> MethodConfig:
        max_seconds = None if self.max_minutes is None else 60.0 * self.max_minutes
        try:
            return _CONFIG_BUILDERS[method](self.preset, steps=self.steps,
                                            max_seconds=max_seconds, seed=self.seed,
                                            device=self.device)
        except ValueError as exc:
            raise InputError(str(exc)) from None


def resolve_method(requested: str, modality: Optional[str]) -> str:
    """``auto``: Speckle2Self for ultrasound (modality US from the DICOM header or the
    user), NS-N2N for everything else.  Speckle2Self met its benchmark (README,
    Ultrasound): above every filter's SSIM on simulated speckle, not worse on nearly clean
    (compounded) speckle, ENL up and gCNR not down on the three real files."""
    if requested != "auto":
        return requested
    return "speckle2self" if modality == intensity.US else "nsn2n"


def resolve_slice_axis(geometry: Geometry, requested: Union[str, int] = "auto",
                       shape: Optional[Tuple[int, ...]] = None) -> int:
    """Array axis (0, 1, 2 of the ``(k, j, i)`` array) that runs across slices.

    By default the axis with the largest spacing: the through-plane axis of a typical
    acquisition, whose neighbouring slices have independent noise.  Ties (isotropic
    voxels, ultrasound cines stored with unit spacing) go to array axis 0, the file's
    slice or frame order; a single image's one slice is always its own axis.
    """
    if requested != "auto":
        return int(requested)
    if shape is not None and 1 in shape:
        return list(shape).index(1)
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


def method_for(volume: Volume, options: DenoiseOptions) -> str:
    """The method ``denoise`` will run on ``volume`` with ``options``."""
    declared = options.modality or volume.modality
    gray = volume.array if volume.components == 1 else volume.array[..., 0]
    return resolve_method(options.method, intensity.infer_modality(gray, declared))


def estimate_seconds(volume: Volume, options: DenoiseOptions) -> float:
    """Expected wall time of ``denoise(volume, options)`` on this machine (a few timed
    steps; takes a second or two)."""
    method = method_for(volume, options)
    gray_shape = volume.array.shape[:3]
    axis = resolve_slice_axis(volume.geometry, options.slice_axis,
                              gray_shape if method == "speckle2self" else None)
    shape = (gray_shape[axis],) + tuple(n for i, n in enumerate(gray_shape) if i != axis)
    module = speckle2self if method == "speckle2self" else nsn2n
    return module.estimate_seconds(shape, options.method_config(method))


def denoise(volume: Volume, options: DenoiseOptions = DenoiseOptions(),
            progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelEvent] = None, *,
            method_config: Optional[MethodConfig] = None,
            reference: Optional[np.ndarray] = None) -> Tuple[Volume, Dict]:
    """Denoise ``volume``; returns the result (same geometry and pixel type) and a report.

    ``method_config`` replaces the config built from ``options`` and ``reference`` (a clean
    array shaped like the volume) turns NS-N2N training supervised: both exist for the
    benchmark's ablations and upper bound, so that they share every other step with the
    product.
    """
    check_voxels(volume.array)
    if method_config is not None:
        method = ("speckle2self" if isinstance(method_config, speckle2self.Speckle2SelfConfig)
                  else "nsn2n")
    else:
        method = method_for(volume, options)
    if method == "speckle2self":
        return _denoise_frames(volume, options, progress, cancel, method_config)
    return _denoise_slices(volume, options, progress, cancel, method_config, reference)


def _denoise_slices(volume, options, progress, cancel, method_config, reference):
    require_volume(volume)
    array = volume.array
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
                                         method_config or options.method_config("nsn2n"),
                                         progress, cancel, reference)
    log.info("NS-N2N mask: %.1f %% of pixels matched (tau %.3f on the normalised scale)",
             100 * report["matched_fraction"], report["tau"])
    log.info("Residual guard gave back %.1f %% of the removed energy",
             100 * report["guard_returned"])
    result = normalization.invert(denoised)
    if correct_bias:
        result = intensity.rician_bias_correct(result, sigma)
        report["rician_sigma"] = sigma
    result = cast_like(np.moveaxis(result, 0, axis), array.dtype)
    report.update(slice_axis=axis, modality=modality, bias_correction=correct_bias,
                  preset=options.preset, seed=options.seed)
    return volume.with_array(result), report


def to_gray(array: np.ndarray) -> np.ndarray:
    """RGB(A) ``(..., c)`` to luma (ITU-R BT.601 weights; alpha ignored), in float64.

    Gray ultrasound stored as RGB or palette colour (common in DICOM) has R = G = B and
    comes back unchanged; coloured overlays (Doppler, annotations) become gray levels.
    """
    weights = np.array([0.299, 0.587, 0.114])
    return array[..., :3].astype(np.float64) @ weights


def _denoise_frames(volume, options, progress, cancel, method_config):
    """Speckle2Self: every slice along the frame axis is a 2-D frame."""
    array, converted = volume.array, volume.components > 1
    if converted:
        log.warning("the image has %d colour components; converted to gray (BT.601 luma) "
                    "and the output is gray", volume.components)
        array = cast_like(to_gray(array), array.dtype)
        check_voxels(array)
    axis = resolve_slice_axis(volume.geometry, options.slice_axis, array.shape)
    frames = np.moveaxis(array, axis, 0)
    denoised, report = speckle2self.fit_predict(
        frames, method_config or options.method_config("speckle2self"), progress, cancel)
    result = cast_like(np.moveaxis(denoised, 0, axis), array.dtype)
    report.update(slice_axis=axis, modality=intensity.infer_modality(
                      array, options.modality or volume.modality),
                  converted_to_gray=converted, preset=options.preset, seed=options.seed)
    return dataclasses.replace(volume, array=result), report
