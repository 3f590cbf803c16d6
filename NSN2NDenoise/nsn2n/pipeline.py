"""From a :class:`Volume` to a denoised :class:`Volume`: the one entry every front end uses.

The command line, the Slicer logic and the benchmarks all call :func:`denoise`.  It owns
what is no method's business: checking the voxels and the options, finding the modality,
picking the method from the registry and building its config; the method does the rest
(``methods/base.py``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import numpy as np

from . import intensity
from .errors import InputError
from .methods import REGISTRY, Method, RunReport, method_of_config, resolve_method
from .options import DenoiseOptions
from .runtime import CancelEvent, ProgressCallback, resolve_device
from .volume import Volume, check_voxels


def config_for(method: Method, options: DenoiseOptions) -> Any:
    """``method``'s config for ``options``; a value the config refuses is an InputError."""
    try:
        return method.config(options)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def validate(options: DenoiseOptions) -> None:
    """Everything about ``options`` that can be checked before any data is read: each
    method's config (``auto`` may pick any) and that the device exists."""
    for method in (REGISTRY.values() if options.method == "auto"
                   else (REGISTRY[options.method],)):
        config_for(method, options)
    resolve_device(options.device)


def modality_of(volume: Volume, options: DenoiseOptions) -> Optional[str]:
    """The user's modality, else the file's, else a guess from the intensities."""
    gray = volume.array if volume.components == 1 else volume.array[..., 0]
    return intensity.infer_modality(gray, options.modality or volume.modality)


def method_for(volume: Volume, options: DenoiseOptions) -> Method:
    """The method :func:`denoise` will run on ``volume`` with ``options``."""
    return resolve_method(options.method, modality_of(volume, options),
                          volume.dimension == 4)


def estimate_seconds(volume: Volume, options: DenoiseOptions) -> float:
    """Expected wall time of ``denoise(volume, options)`` on this machine (a few timed
    steps; takes a second or two)."""
    method = method_for(volume, options)
    return method.estimate_seconds(method.stack_shape(volume, options),
                                   config_for(method, options))


def denoise(volume: Volume, options: DenoiseOptions = DenoiseOptions(),
            progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelEvent] = None, *,
            method_config: Any = None,
            reference: Optional[np.ndarray] = None) -> Tuple[Volume, RunReport]:
    """Denoise ``volume``; returns the result (same geometry and pixel type) and a report.

    ``method_config`` replaces the config built from ``options`` (and picks its method);
    ``reference`` (a clean array shaped like the volume) turns NS-N2N training
    supervised.  Both exist for the benchmarks' ablations and upper bound, so that those
    share every other step with the product.
    """
    check_voxels(volume.array)
    modality = modality_of(volume, options)
    if method_config is None:
        method = resolve_method(options.method, modality, volume.dimension == 4)
        config = config_for(method, options)
    else:
        method, config = method_of_config(method_config), method_config
    result, report = method.denoise(volume, config, options, modality, progress, cancel,
                                    reference=reference)
    return result, dataclasses.replace(report, preset=options.preset, seed=options.seed)
