"""Speckle2Self (Li, Navab, Jiang, arXiv 2507.06828): ultrasound speckle reduction from the
noisy frames alone.

``fit_predict`` trains on the frames of what the user gives (a cine, a sweep, or a single
image, with augmentation) and returns the denoised frames in each input frame's own
intensity range.  The method follows the authors' code (docs/speckle2self.md):
multi-scale perturbation at scales 1, 0.5 and 0.25, three scale-specific encoders and one
shared skip-free decoder, per-branch MSE reconstruction plus L1 consistency between every
pair of outputs, Adam with beta1 = 0.5, inference with the full-scale encoder only.

How it is trained, as the authors do, and what changes for a per-volume CPU budget:

* the network starts from weights trained over a dataset (``pretrained``, shipped with
  the package, made by ``python -m benchmarks pretrain-speckle2self``): the authors train 5000
  epochs over their data set, and training one cine from a random start for a few
  hundred CPU steps was measured to be unreliable (docs/speckle2self.md: SSIM 0.49-0.79
  over seeds on the same stack).  The dataset is simulated speckle (random anatomy, PSF,
  dynamic range and gain; never the benchmark's phantom) and the training is
  self-supervised with this loss, as the authors' simulator training is; a run then
  fine-tunes on the user's frames at a lower learning rate;
* random square crops (``patch``) instead of whole 512x512 images: the network is fully
  convolutional and the cost per step falls with the area;
* the project's warm-up + cosine schedule and tail weight averaging (``training.train``)
  instead of a constant learning rate, so a short run anneals;
* the perturbed copies are made once per full frame (MSP is deterministic), so crops see
  the same resampling grid as the published whole-image training;
* consistency weighted 0.3, not 1: for one pixel, (y - x)^2 + w |y - z| is minimised by
  moving y towards the other branches' z by at most w / 2, so w = 1 lets the consistency
  term override any disagreement up to half the [0, 1] range, more than every speckle
  excursion and lesion contrast of a log-compressed image; from a random start w = 1 and
  0.3 flattened the output within 100 steps (docs/speckle2self.md).  Pretraining therefore
  reconstructs only for its first 15 %, then ramps w up (``consistency_warmup``); a
  fine-tuning run starts from weights that know the anatomy and needs no warm-up;
* no normalisation in the output layer (published: instance norm and ReLU), which forces
  at least a third of a mid-gray image's pixels to exactly zero (docs/speckle2self.md);
* after inference the network output is used as a guide, not as the result: every input
  pixel becomes a non-local average of the input over a search window of 7 speckle
  grains, weighted by how alike the network output's patches are, and structure that
  stands out from the speckle is given back (``restore.py``; ``search_grains=0``
  and ``guard_factor=0`` return the network output as it is).  The values come from the
  input, so the output keeps its local brightness; the network decides only which pixels
  show the same tissue.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ...errors import InputError
from ...filters import gaussian_lowpass
from ...inference import pad_to_multiple
from ...intensity import to_gray
from ...options import DenoiseOptions
from ...runtime import (CancelEvent, Estimate, Progress, ProgressCallback, Stopwatch,
                        autocast_dtype, check_cancel, precision_of, report_pace,
                        resolve_device)
from ...training import Schedule, grad_scaler, train
from ...volume import Volume, cast_like, check_voxels, resolve_slice_axis
from ..base import RunReport, stack_of, training_overrides
from .config import PRESETS, Speckle2SelfConfig, config_for
from .losses import speckle2self_loss
from .msp import SCALES, augment, minmax_normalize, perturb, random_affines
from .net import SpeckleNet
from .pretrained import load_weights
from .restore import restore

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Speckle2SelfReport(RunReport):
    speckle_grain_px: float = float("nan")  # measured speckle grain (restore.py)
    search_radius_px: int = 0  # of the guided average
    speckle_variance: float = float("nan")  # on the input's scale
    guard_returned: float = 0.0  # share of the removed energy the guard gave back
    patch: int = 0  # training crop side
    converted_to_gray: bool = False


def frame_ranges(frames: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Each frame's minimum and maximum, shaped to broadcast over ``(N, H, W)``."""
    return (frames.min(axis=(1, 2), keepdims=True).astype(np.float64),
            frames.max(axis=(1, 2), keepdims=True).astype(np.float64))


def consistency_ramp(spent: float, warmup: float) -> float:
    """Share of the consistency weight after ``spent`` of the budget: 0 during the warm-up,
    then linear to 1 over as long again (the module docstring says why)."""
    if warmup == 0:
        return 1.0
    return min(1.0, max(0.0, (spent - warmup) / warmup))


def _normalized(frames: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32))[:, None]
    return minmax_normalize(tensor)


def architecture(config: Speckle2SelfConfig) -> Dict:
    """What pretrained weights must match."""
    return dict(width=config.width, levels=config.levels, output_norm=config.output_norm)


def new_model(config: Speckle2SelfConfig) -> SpeckleNet:
    """The network a run starts from: the shipped pretrained weights, or (``pretrained``
    off) a seeded random initialisation, without touching torch's global generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = SpeckleNet(config.width, config.levels, len(SCALES), config.output_norm)
    if config.pretrained:
        state, saved, _ = load_weights()
        if saved != architecture(config):
            raise ValueError(f"the pretrained weights are for {saved}, not "
                             f"{architecture(config)}; "
                             "use pretrained=False for another architecture")
        model.load_state_dict(state)
    return model.to(memory_format=torch.channels_last)


def crop_batch(copies: torch.Tensor, rng: np.random.Generator, batch: int, patch: int,
               device: torch.device) -> List[torch.Tensor]:
    """Random ``patch``-square crops of perturbed frames ``(N, scales, H, W)``, one random
    augmentation shared by the scales of a crop; returns one input batch per branch."""
    count, rows, cols = copies.shape[0], copies.shape[-2] - patch + 1, copies.shape[-1] - patch + 1
    index = rng.integers(0, count, batch)
    top, left = rng.integers(0, rows, batch), rng.integers(0, cols, batch)
    crops = torch.stack([copies[i, :, t:t + patch, l:l + patch]
                         for i, t, l in zip(index, top, left)]).float()
    crops = augment(crops, random_affines(batch, rng)).to(device)
    return [crops[:, k:k + 1].contiguous(memory_format=torch.channels_last)
            for k in range(copies.shape[1])]


def branch_loss(model: SpeckleNet, inputs: List[torch.Tensor], consistency_weight: float,
                dtype: Optional[torch.dtype]) -> torch.Tensor:
    """The Speckle2Self loss of one batch (autocast to ``dtype`` where given)."""
    device_type = inputs[0].device.type
    with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
        outputs = model.forward_scales(inputs)
    loss, _ = speckle2self_loss([out.float() for out in outputs], inputs, consistency_weight)
    return loss


def fit_predict(frames: np.ndarray, config: Speckle2SelfConfig,
                progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelEvent] = None) -> Tuple[np.ndarray, Speckle2SelfReport]:
    """Train on ``frames`` ``(N, H, W)`` (any real scale) and denoise them.

    Returns float64 frames, each in its input frame's [min, max], and a report (with the
    measured speckle grain, the search radius, the speckle variance and the guard's share).
    """
    count, height, width = frames.shape
    if min(height, width) < 2:
        raise InputError(f"frames of {height}x{width} pixels are too small to denoise")
    device = resolve_device(config.device)
    dtype = autocast_dtype(device, config.precision)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()
    stopwatch = Stopwatch()
    if progress is not None:
        progress(Progress("prepare", 0, 1, float("nan"), 0.0, float("nan")))

    with stopwatch("perturb"):
        padded = pad_to_multiple(_normalized(frames), config.multiple)
        patch = min(config.patch, padded.shape[-2] // config.multiple * config.multiple,
                    padded.shape[-1] // config.multiple * config.multiple)
        copies = perturb(padded, SCALES)  # (N, 3, H, W); MSP is deterministic
    check_cancel(cancel)

    model = new_model(config).to(device)
    schedule = Schedule(config.steps, config.max_seconds, config.learning_rate)

    def batch_loss(step: int, spent: float) -> torch.Tensor:
        weight = config.consistency_weight * consistency_ramp(spent, config.consistency_warmup)
        inputs = crop_batch(copies, rng, config.batch, patch, device)
        return branch_loss(model, inputs, weight, dtype)

    with stopwatch("train"):
        result = train(model, batch_loss, schedule, average_tail=config.average_tail,
                       betas=(config.beta1, 0.999), scaler=grad_scaler(device, dtype),
                       progress=progress, cancel=cancel)
    trained = result.averaged if config.average_tail > 0 else result.model
    with stopwatch("predict"):
        denoised = predict_frames(trained, frames, device, progress, cancel, dtype=dtype)
    check_cancel(cancel)
    with stopwatch("restore"):
        denoised, restored = refine(frames, denoised, config, progress, cancel)
    report = Speckle2SelfReport(method="speckle2self", device=str(device), steps=result.steps,
                                train_seconds=round(result.seconds, 2),
                                total_seconds=round(time.perf_counter() - started, 2),
                                recoveries=result.recoveries, final_loss=result.last_loss,
                                precision=precision_of(dtype),
                                phase_seconds=stopwatch.rounded(),
                                patch=patch, **restored)
    return denoised, report


def refine(frames: np.ndarray, network_output: np.ndarray, config: Speckle2SelfConfig,
           progress: Optional[ProgressCallback] = None, cancel: Optional[CancelEvent] = None
           ) -> Tuple[np.ndarray, Dict[str, float]]:
    """The product's output from the network's: the guided average and the guard
    (``restore.restore``), clipped to each input frame's range; with what
    ``restore`` measured."""
    output, measured = restore(frames, network_output, config.search_grains,
                               config.nonlocal_strength, config.guard_factor,
                               progress=progress, cancel=cancel)
    return np.clip(output, *frame_ranges(frames)), measured


@torch.inference_mode()
def predict_frames(model: SpeckleNet, frames: np.ndarray, device: torch.device,
                   progress: Optional[ProgressCallback] = None,
                   cancel: Optional[CancelEvent] = None, batch: int = 4,
                   dtype: Optional[torch.dtype] = None) -> np.ndarray:
    """Full-scale encoder and decoder on each whole, unperturbed frame.

    Whole frames, not tiles: instance normalisation makes the output depend on the whole
    image, so tiles would not stitch.  Output clamped to [0, 1], as published, then mapped
    back to each frame's input range.  ``dtype``: the autocast type; None is fp32.
    """
    model = model.to(device).eval()
    count, height, width = frames.shape
    low, high = frame_ranges(frames)
    output = np.empty(frames.shape, np.float64)
    started = time.perf_counter()
    for first in range(0, count, batch):
        check_cancel(cancel)
        chunk = pad_to_multiple(_normalized(frames[first:first + batch]), model.multiple)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            y = model(chunk.to(device).contiguous(memory_format=torch.channels_last))
        output[first:first + batch] = y.float().clamp(0, 1)[:, 0, :height, :width].cpu().numpy()
        report_pace(progress, "predict", min(count, first + batch), count, started)
    return low + output * (high - low)


def estimate(shape: Tuple[int, int, int], config: Speckle2SelfConfig) -> Estimate:
    """Expected seconds per progress phase on this machine: a few timed steps on random
    data (after a warm-up run, the difference of a 4-step and a 1-step run, so fixed
    costs cancel) plus inference and the guided average on one speckle-like frame (white
    noise low-passed to a grain of a few pixels: the average's cost is set by its search
    window in grains), scaled to the frames' pixels.  Without the warm-up the first
    timed run paid for the kernels' setup and the estimate read 1.55x the run (us-fine,
    fp32, 2026-12-04)."""
    count, height, width = shape
    probe = np.random.default_rng(0).random(
        (2, min(height, config.patch), min(width, config.patch))).astype(np.float32)

    def timed(steps: int) -> float:
        started = time.perf_counter()
        fit_predict(probe, dataclasses.replace(config, steps=steps, max_seconds=None))
        return time.perf_counter() - started

    timed(1)  # warm-up: the first run in a process also pays for the kernels' setup
    per_step = max(0.0, timed(4) - timed(1)) / 3
    train_seconds = config.steps * per_step
    if config.max_seconds is not None:
        train_seconds = min(train_seconds, config.max_seconds)
    model = new_model(dataclasses.replace(config, pretrained=False))
    white = torch.from_numpy(np.random.default_rng(1).standard_normal(
        (1, min(height, 512), min(width, 512))).astype(np.float32))
    one = gaussian_lowpass(white, 2.0).numpy()
    device = resolve_device(config.device)
    started = time.perf_counter()
    predicted = predict_frames(model, one, device,
                               dtype=autocast_dtype(device, config.precision))
    predicted_at = time.perf_counter()
    restore(one, predicted, config.search_grains, config.nonlocal_strength,
            config.guard_factor)
    pixels = count * height * width / one.size
    return Estimate(dict(prepare=0.0, train=train_seconds,
                         predict=(predicted_at - started) * pixels,
                         refine=(time.perf_counter() - predicted_at) * pixels))


class Speckle2Self:
    """Speckle2Self as the pipeline sees it (the ``Method`` protocol of
    ``methods/base.py``): every slice along the frame axis is a 2-D frame; RGB(A) is
    converted to gray with a warning."""

    name = "speckle2self"
    config_class = Speckle2SelfConfig
    report_class = Speckle2SelfReport
    presets = PRESETS
    default_for: Tuple[str, ...] = ("US",)  # docs/speckle2self.md, benchmark verdicts
    series = False

    def config(self, options: DenoiseOptions) -> Speckle2SelfConfig:
        return config_for(options.preset, **training_overrides(options))

    def slice_axis(self, volume: Volume, requested: Union[str, int]) -> int:
        return resolve_slice_axis(volume.geometry, requested, volume.array.shape[:3])

    def stack_shape(self, volume: Volume, options: DenoiseOptions) -> Tuple[int, int, int]:
        return stack_of(volume.array.shape, self.slice_axis(volume, options.slice_axis))

    def denoise(self, volume: Volume, config: Speckle2SelfConfig, options: DenoiseOptions,
                modality: Optional[str], progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelEvent] = None,
                reference: Optional[np.ndarray] = None) -> Tuple[Volume, Speckle2SelfReport]:
        if reference is not None:
            raise ValueError("Speckle2Self has no supervised mode")
        if volume.dimension == 4:
            raise InputError("a series of volumes (4-D) cannot be denoised frame by frame "
                             "here; give Speckle2Self a 2-D image, a cine or a sweep")
        array, converted = volume.array, volume.components > 1
        if converted:
            log.warning("the image has %d colour components; converted to gray (BT.601 "
                        "luma) and the output is gray", volume.components)
            array = cast_like(to_gray(array), array.dtype)
            check_voxels(array)
        axis = self.slice_axis(volume, options.slice_axis)
        denoised, report = fit_predict(np.moveaxis(array, axis, 0), config, progress, cancel)
        result = cast_like(np.moveaxis(denoised, 0, axis), array.dtype)
        report = dataclasses.replace(report, slice_axis=axis, modality=modality,
                                     converted_to_gray=converted)
        return dataclasses.replace(volume, array=result), report

    def estimate(self, shape: Tuple[int, int, int], config: Speckle2SelfConfig
                 ) -> Estimate:
        return estimate(shape, config)
