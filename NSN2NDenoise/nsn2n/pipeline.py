"""From a :class:`Volume` to a denoised :class:`Volume`: the one entry every front end uses.

The command line, the Slicer logic and the benchmarks all call :func:`denoise`.  It owns
what is no method's business: checking the voxels and the options, finding the modality,
picking the method from the registry and building its config; the method does the rest
(``methods/base.py``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from . import intensity
from .errors import InputError
from .inference import free_device_memory, is_out_of_memory
from .methods import REGISTRY, Method, RunReport, method_of_config, resolve_method
from .options import MODALITIES, DenoiseOptions
from .runtime import (CancelEvent, Estimate, ProgressCallback, RunClock, check_cancel,
                      require_memory, resolve_device)
from .volume import Volume, check_voxels

log = logging.getLogger(__name__)


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


def estimate(volume: Volume, options: DenoiseOptions) -> Estimate:
    """Expected wall seconds of ``denoise(volume, options)`` on this machine, per phase
    (the method timed on small probes; takes a second or two)."""
    check_voxels(volume.array)
    # The modality found in the data, once, as the run will see it (NS-N2N's stages depend
    # on it); one no option names (a file's own, e.g. PT) is left out, as the run ignores it.
    modality = modality_of(volume, options)
    found = (dataclasses.replace(options, modality=modality) if modality in MODALITIES
             else options)
    method = method_for(volume, found)
    if volume.dimension == 4 and not method.series:  # volume by volume
        count = len(volume.array)
        one = estimate(frame_of(volume, 0), each_volume(options, count))
        return Estimate({name: count * seconds for name, seconds in one.phases.items()},
                        train_floor=count * one.train_floor)
    estimated = method.estimate(method.stack_shape(volume, options),
                                config_for(method, found))
    if options.max_seconds is None:
        return estimated
    phases = dict(estimated.phases)
    phases["train"] = min(phases["train"], training_seconds(estimated, options.max_seconds))
    return dataclasses.replace(estimated, phases=phases)


# Training never gets less than this share of a time budget, even when the other phases
# are expected to take all of it and the method knows no floor of its own
# (``Estimate.train_floor``).
MIN_TRAINING_SHARE = 0.1
# A budget counts as kept within this share; beyond it the user is told before the run.
BUDGET_TOLERANCE = 0.1


def training_seconds(estimated: Estimate, max_seconds: float) -> float:
    """The training time that leaves ``max_seconds`` for the whole run: what the phases
    after training are expected to take (``estimated``) comes off the budget, but training
    keeps the method's floor (``estimated.train_floor``): a budget too short for the
    volume is overrun rather than the output ruined."""
    rest = estimated.seconds - estimated.phases.get("train", 0.0)
    return max(estimated.train_floor, MIN_TRAINING_SHARE * max_seconds, max_seconds - rest)


def budget_warning(estimated: Estimate, options: DenoiseOptions) -> Optional[str]:
    """What to tell the user when ``options.max_minutes`` cannot be kept (``estimated``:
    the :func:`estimate` of the run, budget applied); None when it can."""
    budget = options.max_seconds
    if budget is None or estimated.seconds <= (1 + BUDGET_TOLERANCE) * budget:
        return None
    return (f"a time budget of {budget:.0f} s is too short for this volume: training is "
            f"kept at its useful minimum and the run should take about "
            f"{estimated.seconds:.0f} s")


def denoise(volume: Volume, options: DenoiseOptions = DenoiseOptions(),
            progress: Optional[ProgressCallback] = None,
            cancel: Optional[CancelEvent] = None, *,
            estimated: Optional[Estimate] = None,
            method_config: Any = None,
            reference: Optional[np.ndarray] = None) -> Tuple[Volume, RunReport]:
    """Denoise ``volume``; returns the result (same geometry and pixel type) and a report.

    ``estimated``: the :func:`estimate` shown to the user before the run.  It is recorded
    in the report, and ``progress`` then gets the time left of the whole run
    (``runtime.RunClock``) rather than of the current phase.  ``options.max_minutes``
    bounds the whole run: training stops early enough to leave the phases after it their
    estimated time (:func:`training_seconds`).

    ``method_config`` replaces the config built from ``options`` (and picks its method);
    ``reference`` (a clean array shaped like the volume) turns NS-N2N training
    supervised.  Both exist for the benchmarks' ablations and upper bound, so that those
    share every other step with the product.
    """
    started = time.perf_counter()
    check_voxels(volume.array)
    require_memory(volume.array.size)
    shortfall = None
    modality = modality_of(volume, options)
    if method_config is None:
        method = resolve_method(options.method, modality, volume.dimension == 4)
        if volume.dimension == 4 and not method.series:
            return volume_by_volume(volume, options, progress, cancel, estimated)
        if (options.model or options.save_model) and method.name != "nsn2n":
            raise InputError(f"a saved network (--model, --save-model) is an nsn2n "
                             f"network; this volume runs the {method.name} method")
        if options.noise_sigma is not None and method.name != "nsn2n":
            raise InputError(f"--noise-sigma is used by the nsn2n method; this volume runs "
                             f"the {method.name} method, which measures its own")
        config = config_for(method, options)
        if options.max_seconds is not None:  # a budget for the run, not for training only
            planned = estimated or estimate(volume, options)
            left = options.max_seconds - (time.perf_counter() - started)
            config = dataclasses.replace(config, max_seconds=training_seconds(planned, left))
            shortfall = budget_warning(planned, options)
    else:
        method, config = method_of_config(method_config), method_config
    clock = None
    if estimated is not None and progress is not None:
        progress = clock = RunClock(estimated.phases, progress)
    result, report, fallback = run_within_memory(
        lambda c, o: method.denoise(volume, c, o, modality, progress, cancel,
                                    reference=reference), config, options)
    if clock is not None:
        clock.finish()
    return result, dataclasses.replace(
        report, preset=options.preset, seed=options.seed,
        estimated_seconds=None if estimated is None else round(estimated.seconds, 1),
        warning="; ".join(w for w in (report.warning, shortfall, fallback) if w) or None)


def run_within_memory(run: Callable[[Any, DenoiseOptions], Tuple[Volume, RunReport]],
                      config: Any, options: DenoiseOptions
                      ) -> Tuple[Volume, RunReport, Optional[str]]:
    """``run(config, options)``; when a GPU runs out of memory, again with half the
    training batch, then on the CPU.  Inference shrinks its own tiles first
    (``inference.predict_volume``).  Returns what was done instead, for the report."""
    device = resolve_device(options.device)
    attempts = [(config, options, None)]
    if device.type != "cpu":
        if getattr(config, "batch", 1) > 1:
            attempts.append((dataclasses.replace(config, batch=config.batch // 2), options,
                             f"{device.type} ran out of memory; trained with batch "
                             f"{config.batch // 2} instead of {config.batch}"))
        on_cpu = (dataclasses.replace(config, device="cpu") if hasattr(config, "device")
                  else config)  # the methods train on their config's device
        attempts.append((on_cpu, dataclasses.replace(options, device="cpu"),
                         f"{device.type} ran out of memory; denoised on the CPU"))
    for index, (chosen, chosen_options, fallback) in enumerate(attempts):
        try:
            result, report = run(chosen, chosen_options)
            return result, report, fallback
        except RuntimeError as exc:  # torch.OutOfMemoryError is one
            if not is_out_of_memory(exc) or index == len(attempts) - 1:
                raise
            log.warning("%s; trying again: %s", str(exc).splitlines()[0][:120],
                        attempts[index + 1][2])
            free_device_memory(device)
    raise AssertionError("unreachable")  # the last attempt returns or raises


def frame_of(volume: Volume, index: int) -> Volume:
    """Volume ``index`` of a 4-D series, with the series' geometry."""
    return Volume(volume.array[index], volume.geometry, volume.modality)


def each_volume(options: DenoiseOptions, count: int) -> DenoiseOptions:
    """The options of one of ``count`` volumes denoised one by one: a time budget is
    shared out; one network file cannot hold ``count`` networks."""
    if options.save_model is not None:
        raise InputError("--save-model keeps one volume's network; this series would be "
                         f"denoised volume by volume ({count} networks)")
    if options.max_minutes is None:
        return options
    return dataclasses.replace(options, max_minutes=options.max_minutes / count)


def volume_by_volume(volume: Volume, options: DenoiseOptions,
                     progress: Optional[ProgressCallback], cancel: Optional[CancelEvent],
                     estimated: Optional[Estimate]) -> Tuple[Volume, RunReport]:
    """A 4-D series with a method for single volumes (``--method nsn2n`` on an fMRI
    time course, whose changes the series method would remove): every volume denoised on
    its own, with the same options and seed, as if it were its own file.  The time left
    counts the volumes still to come; the report sums steps and seconds and keeps the
    method's own fields from the last volume."""
    count = len(volume.array)
    options = each_volume(options, count)
    share = None if estimated is None else Estimate(
        {name: seconds / count for name, seconds in estimated.phases.items()},
        train_floor=estimated.train_floor / count)
    outputs, reports = [], []
    for index in range(count):
        check_cancel(cancel)
        later = 0.0 if share is None else (count - 1 - index) * share.seconds
        forward = None if progress is None else (
            lambda p, later=later: progress(dataclasses.replace(p, remaining=p.remaining
                                                                + later)))
        result, report = denoise(frame_of(volume, index), options, forward, cancel,
                                 estimated=share)
        outputs.append(result.array)
        reports.append(report)
    phases: Dict[str, float] = {}
    for report in reports:
        for name, seconds in report.phase_seconds.items():
            phases[name] = round(phases.get(name, 0.0) + seconds, 2)
    warnings = [f"volume {i}: {r.warning}" for i, r in enumerate(reports) if r.warning]
    return volume.with_array(np.stack(outputs)), dataclasses.replace(
        reports[-1], steps=sum(r.steps for r in reports),
        train_seconds=round(sum(r.train_seconds for r in reports), 2),
        total_seconds=round(sum(r.total_seconds for r in reports), 2),
        recoveries=sum(r.recoveries for r in reports), phase_seconds=phases,
        warning="; ".join(warnings) or None,
        estimated_seconds=None if estimated is None else round(estimated.seconds, 1))
