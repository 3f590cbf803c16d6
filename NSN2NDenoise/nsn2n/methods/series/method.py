"""The series method: a 4-D series of repeated volumes of one anatomy (diffusion b0
repeats, ASL of one kind, signal averages), each volume denoised with the others as
Noise2Noise targets: time is the neighbour axis.

Each slice's volumes of one kind, in time order, form a stack of repeats with independent
noise.  One 2-D network learns, from all of them, to predict a repeat ``x_j`` from a
volume ``x_i`` and the mean of the other volumes within :attr:`SeriesConfig.context`
of it (``x_i`` and ``x_j`` left out): Noise2Noise with a second input that is already
nearly free of noise; the network starts halfway between its two inputs
(``nets.UNet2d``'s share) and learns where the volume's own values must win.  Its output
is the method's (the presets keep NS-N2N's refinement stages off: ``config.py``).  The
noise level comes from the repeats (``noise.repeats_sigma``), and what was removed is
checked against what the repeats disagree on (:meth:`Repeats.disagreement`).

What differs from volume to volume and is not anatomy (label - control in ASL, BOLD in
fMRI) is removed with the noise unless the volumes are grouped by kind (``stride``): use it
for repeats, not for time courses whose changes are the signal.
"""

from __future__ import annotations

import dataclasses
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ... import intensity
from ...errors import InputError
from ...inference import predict_volume
from ...nets import UNet2d
from ...options import DenoiseOptions
from ...noise import estimate_noise, repeats_sigma, tissue_mask
from ...refine.guard import BAND_SCALES
from ...runtime import (CancelEvent, Estimate, Progress, ProgressCallback, Stopwatch,
                        autocast_dtype, check_cancel, precision_of, resolve_device)
from ...symmetry import TTA_ELEMENTS, dihedral
from ...training import Schedule, grad_scaler, train
from ...volume import Volume, cast_like, resolve_slice_axis
from ..base import stack_of, training_overrides
from ..nsn2n.config import steps_for
from ..nsn2n.method import (WARNING, NSN2NReport, back_off, effective_patch, estimate,
                            refine, rician_sigma_for)
from .config import PRESETS, SeriesConfig, config_for


@dataclasses.dataclass(frozen=True)
class SeriesReport(NSN2NReport):
    """``noise_sigma`` is the noise as the repeats show it (``noise.repeats_sigma``);
    ``residual_to_noise`` compares the residual with ``disagreement``, the rms of what the
    repeats disagree on (``Repeats.disagreement``), which is what averaging them removes."""

    volumes: int = 0
    stride: int = 1
    disagreement: float = 0.0

    def summary(self) -> str:
        return (f"{self.volumes} volumes; noise {self.noise_sigma:.4g}; removed "
                f"{self.residual_to_noise:.2f} x what the repeats disagree on (structure "
                f"{self.structure_in_residual:.2f})")


class Repeats:
    """The stacks of repeats ``(T, H, W)`` and, for any volume, the mean of its repeats
    within ``context`` on each side with some volumes left out (from cumulative sums)."""

    def __init__(self, stacks: Sequence[np.ndarray], context: int):
        self.stacks = [np.ascontiguousarray(s, dtype=np.float32) for s in stacks]
        self.sums = [np.concatenate([np.zeros((1,) + s.shape[1:]), np.cumsum(s, 0,
                                                                             np.float64)])
                     for s in self.stacks]
        self.context = context
        # The anatomy of each stack: what both noise measures below are taken over.
        self.tissue = [tissue_mask(torch.from_numpy(stack)) for stack in self.stacks]

    def mean_around(self, group: int, index: int, leave_out: Sequence[int],
                    window=(slice(None), slice(None))) -> np.ndarray:
        stack, sums = self.stacks[group], self.sums[group]
        low, high = max(0, index - self.context), min(len(stack) - 1, index + self.context)
        total = sums[high + 1][window] - sums[low][window]
        for k in leave_out:
            total = total - stack[k][window]
        count = high - low + 1 - len(leave_out)
        return (total / count).astype(np.float32) if count > 0 else stack[index][window]

    def disagreement(self) -> float:
        """The rms, over the anatomy, of what a volume's repeats disagree on: each volume
        minus the mean of its neighbours, scaled to one volume's share.  Heavier-tailed
        than the noise of the images (pulsation, small motion), and what averaging the
        repeats removes."""
        squares, count = 0.0, 0
        for group, stack in enumerate(self.stacks):
            if len(stack) < 2:
                continue
            mask = self.tissue[group].numpy()
            for t in range(len(stack)):
                others = min(len(stack) - 1, t + self.context) - max(0, t - self.context)
                difference = stack[t][mask[t]] - self.mean_around(group, t, (t,))[mask[t]]
                squares += float(np.sum(difference.astype(np.float64) ** 2)) * others / (
                    others + 1)
                count += difference.size
        return (squares / count) ** 0.5 if count else 0.0

    def inputs(self, group: int) -> np.ndarray:
        """``(T, 2, H, W)``: each volume and the mean of its neighbours without it."""
        stack = self.stacks[group]
        return np.stack([np.stack([stack[t], self.mean_around(group, t, (t,))])
                         for t in range(len(stack))])


def fit_predict(stacks: Sequence[np.ndarray], config: SeriesConfig, progress=None,
                cancel: Optional[CancelEvent] = None, magnitude: bool = False
                ) -> Tuple[List[np.ndarray], "SeriesReport"]:
    """Train on the stacks of repeats (normalised, time first) and denoise them."""
    repeats = Repeats(stacks, config.context)
    height, width = repeats.stacks[0].shape[1:]
    patch, multiple = effective_patch(config, height, width), 2 ** config.depth
    device = resolve_device(config.device)
    dtype = autocast_dtype(device, config.precision)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()
    stopwatch = Stopwatch()
    if progress is not None:
        progress(Progress("prepare", 0, 1, float("nan"), 0.0, float("nan")))
    whole = np.concatenate(repeats.stacks)
    with stopwatch("noise"):
        # The shape of the noise from the images, its level from the repeats (noise.py).
        noise = estimate_noise(whole, BAND_SCALES, magnitude).at_sigma(
            repeats_sigma(repeats.stacks, repeats.tissue))
    check_cancel(cancel)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching global state
        torch.manual_seed(config.seed)
        model = UNet2d(config.width, config.depth, inputs=2)
    model = model.to(device).to(memory_format=torch.channels_last)
    sizes = np.array([len(s) for s in repeats.stacks], dtype=np.float64)
    pairs = config.batch * config.run_length  # the images of one NS-N2N batch

    def batch_loss(step: int, spent: float) -> torch.Tensor:
        inputs, targets = [], []
        for group in rng.choice(len(sizes), size=pairs, p=sizes / sizes.sum()):
            count = len(repeats.stacks[group])
            i = int(rng.integers(count))
            low, high = max(0, i - config.context), min(count - 1, i + config.context)
            j = int(rng.integers(low, high))  # a repeat near i, not i
            j += j >= i
            top = int(rng.integers(height - patch + 1))
            left = int(rng.integers(width - patch + 1))
            window = (slice(top, top + patch), slice(left, left + patch))
            element = int(rng.integers(8))
            pair = np.stack([repeats.stacks[group][i][window],
                             repeats.mean_around(group, i, (i, j), window),
                             repeats.stacks[group][j][window]])
            pair = dihedral(torch.from_numpy(pair), element)
            inputs.append(pair[:2])
            targets.append(pair[2:])
        x = torch.stack(inputs).to(device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            predicted = model(x).float()
        return ((predicted - torch.stack(targets).to(device)) ** 2).mean()

    schedule = Schedule(steps_for(config, whole.shape), config.max_seconds,
                        config.learning_rate)
    with stopwatch("train"):
        result = train(model, batch_loss, schedule, average_tail=config.average_tail,
                       scaler=grad_scaler(device, dtype), progress=progress, cancel=cancel)
    trained = result.averaged if config.average_tail > 0 else result.model
    outputs, returned = [], []
    for group, stack in enumerate(repeats.stacks):
        check_cancel(cancel)
        with stopwatch("predict"):
            predicted = predict_volume(trained, repeats.inputs(group), device, multiple,
                                       transforms=TTA_ELEMENTS[config.tta], dtype=dtype,
                                       cancel=cancel)
        refined, share, _ = refine(stack, predicted, noise, config, None, cancel, stopwatch)
        outputs.append(refined)
        returned.append(share)
    with stopwatch("check"):
        # What was removed is checked against what the repeats disagree on, not against
        # the robust level of the noise: the network learns to remove all of it.
        disagreement = repeats.disagreement()
        denoised, check, backoffs = back_off(whole, np.concatenate(outputs),
                                             noise.at_sigma(disagreement), config, cancel)
    bounds = np.cumsum([0] + [len(s) for s in repeats.stacks])
    report = SeriesReport(method="series", device=str(device), steps=result.steps,
                          train_seconds=round(result.seconds, 2),
                          total_seconds=round(time.perf_counter() - started, 2),
                          recoveries=result.recoveries, final_loss=result.last_loss,
                          precision=precision_of(dtype), phase_seconds=stopwatch.rounded(),
                          guard_returned=round(float(np.mean(returned)), 4),
                          noise_sigma=noise.sigma, residual_rms=check.residual_rms,
                          residual_to_noise=round(check.ratio, 3),
                          structure_in_residual=round(check.structure, 3),
                          backoffs=backoffs, disagreement=disagreement,
                          warning=WARNING if check.removed_anatomy() else None)
    return [denoised[a:b] for a, b in zip(bounds[:-1], bounds[1:])], report


def kind_groups(count: int, stride: int) -> List[np.ndarray]:
    """The volume indices of each kind, in time order."""
    return [np.arange(kind, count, stride) for kind in range(min(stride, count))]


class Series:
    """The series method as the pipeline sees it (``methods/base.py``)."""

    name = "series"
    config_class = SeriesConfig
    report_class = SeriesReport
    presets = PRESETS
    default_for: Tuple[str, ...] = ()
    series = True

    def config(self, options: DenoiseOptions) -> SeriesConfig:
        return config_for(options.preset, stride=options.series_stride,
                          **training_overrides(options))

    def slice_axis(self, volume: Volume, requested) -> int:
        """The spatial axis across slices (of the ``(k, j, i)`` volume)."""
        return resolve_slice_axis(volume.geometry, requested)

    def stack_shape(self, volume: Volume, options: DenoiseOptions) -> Tuple[int, int, int]:
        self._check(volume, options.series_stride)
        depth, rows, cols = stack_of(volume.array.shape[1:],
                                     self.slice_axis(volume, options.slice_axis))
        return (volume.array.shape[0] * depth, rows, cols)

    @staticmethod
    def _check(volume: Volume, stride: int) -> None:
        if volume.dimension != 4:
            raise InputError("the series method needs a 4-D series of volumes; for one "
                             "volume use --method nsn2n")
        fewest = min(len(group) for group in kind_groups(volume.array.shape[0], stride))
        if fewest < 3:
            raise InputError(f"a 4-D series of {volume.array.shape[0]} volumes with a stride "
                             f"of {stride}: at least 3 volumes of each kind are needed")

    def denoise(self, volume: Volume, config: SeriesConfig, options: DenoiseOptions,
                modality: Optional[str], progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelEvent] = None,
                reference: Optional[np.ndarray] = None) -> Tuple[Volume, SeriesReport]:
        if reference is not None:
            raise ValueError("the series method has no supervised mode")
        self._check(volume, config.stride)
        array = volume.array
        axis = self.slice_axis(volume, options.slice_axis)
        series = np.moveaxis(array, axis + 1, 1)  # (volumes, slices, rows, cols)
        count, depth, height, width = series.shape
        flat = series.reshape(-1, height, width)
        sigma = rician_sigma_for(flat, modality, options.bias_correction)
        normalization = intensity.Normalization.fit(flat, keep_zero=sigma is not None)
        kinds = kind_groups(count, config.stride)
        order = [(k, indices) for k in range(depth) for indices in kinds]
        magnitude = modality == intensity.MR and float(flat.min()) >= 0
        denoised, report = fit_predict([normalization.apply(series[indices, k])
                                        for k, indices in order], config, progress, cancel,
                                       magnitude)
        result = np.empty(series.shape, np.float64)
        for (k, indices), part in zip(order, denoised):
            result[indices, k] = normalization.invert(part)
        if sigma is not None:
            result = intensity.rician_bias_correct(result, sigma)
        result = cast_like(np.moveaxis(result, 1, axis + 1), array.dtype)
        report = dataclasses.replace(
            report, slice_axis=axis, modality=modality, bias_correction=sigma is not None,
            rician_sigma=sigma, noise_sigma=report.noise_sigma * normalization.scale,
            residual_rms=report.residual_rms * normalization.scale,
            disagreement=report.disagreement * normalization.scale, volumes=count,
            stride=config.stride)
        return volume.with_array(result), report

    def estimate(self, shape: Tuple[int, int, int], config: SeriesConfig) -> Estimate:
        return estimate(shape, config)
