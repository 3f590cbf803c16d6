"""NS-N2N: Neighboring Slice Noise2Noise (Zhou et al., arXiv 2411.10831).

``fit_predict`` trains a 2-D U-Net on one normalised noisy stack ``(D, H, W)`` (slice axis
first) with neighbouring slices as Noise2Noise targets and returns the denoised stack.

``NSN2N`` is the method as the pipeline sees it (``methods/base.py``): it normalises the
volume's intensities, corrects the Rician bias of magnitude MRI and casts back.

Beyond the paper (each measured by ``python -m benchmarks ablation``):

* runs of K consecutive slices per sample instead of single pairs: every forward pass is
  used against both neighbours (K = 2 is the paper's sampling);
* a uniform average of the weights over the last quarter of the budget;
* test-time averaging over flips/rotations, which the network was trained on;
* an empirical Wiener stage (``refine/wiener.py``): the network output is the pilot of a 3-D DCT
  shrinkage of the noisy stack, BM4D's second stage without the block matching;
* guided non-local means (``refine/nonlocal_means.py``): the noisy voxels averaged over a 5 x 11 x
  11 neighbourhood with weights from the network output's patches; the output is the mean
  of this and the Wiener stage;
* the residual guard (``refine/guard.py``), which gives back what the network removed where it
  stands out from the noise, so a nearly clean volume does not come out worse.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Optional, Tuple, Union

import numpy as np
import torch

from ... import intensity
from ...errors import InputError
from ...inference import predict_volume
from ...nets import UNet2d
from ...noise import coefficient_noise_variance, rician_background_sigma, slice_noise_sigma
from ...options import DenoiseOptions
from ...refine.guard import residual_guard
from ...refine.nonlocal_means import guided_nonlocal_means
from ...refine.wiener import PATCH as WIENER_PATCH
from ...refine.wiener import empirical_wiener
from ...runtime import (CancelEvent, Progress, ProgressCallback, autocast_dtype, check_cancel,
                        resolve_device)
from ...symmetry import TTA_ELEMENTS
from ...training import Schedule, train
from ...volume import Volume, cast_like, require_volume, resolve_slice_axis
from ..base import RunReport
from .config import PRESETS, NSN2NConfig, config_for
from .losses import nsn2n_loss
from .pairs import gather_runs, pair_weights, sample_runs

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class NSN2NReport(RunReport):
    matched_fraction: float = float("nan")  # share of pixels W marks as matched
    tau: float = float("nan")  # the mask threshold used, on the normalised scale
    guard_returned: float = 0.0  # share of the removed energy the guard gave back
    bias_correction: bool = False
    rician_sigma: Optional[float] = None  # in the input's units, when corrected

    def summary(self) -> str:
        return f"{100 * self.matched_fraction:.0f} % of pixels matched between slices"


def _effective_patch(config: NSN2NConfig, height: int, width: int) -> int:
    multiple = 2 ** config.depth
    patch = min(config.patch, (min(height, width) // multiple) * multiple)
    if patch < multiple:
        raise InputError(f"slices of {height}x{width} pixels are too small; at least "
                         f"{multiple}x{multiple} are needed")
    return patch


def fit_predict(slices: np.ndarray, config: NSN2NConfig,
                progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelEvent] = None,
                reference: Optional[np.ndarray] = None) -> Tuple[np.ndarray, NSN2NReport]:
    """Train on ``slices`` (float32, normalised, slice axis first) and denoise them.

    ``reference`` replaces the noisy neighbours by a clean target: the supervised upper
    bound the benchmark compares against.  It is never used by the product.
    """
    depth, height, width = slices.shape
    if depth < 3:
        raise InputError(f"{depth} slices along the slice axis; at least 3 are needed")
    patch = _effective_patch(config, height, width)
    run_length = min(config.run_length, depth)
    ic_pairs = min(config.ic_pairs, run_length - 1)
    device = resolve_device(config.device)
    rng = np.random.default_rng(config.seed)
    started = time.perf_counter()

    if progress is not None:
        progress(Progress("prepare", 0, 1, float("nan"), 0.0, float("nan")))
    volume = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
    if config.use_mask:
        mask = pair_weights(volume, config.tau, config.lowpass_sigma, config.tau_cap)
        weights, tau, matched = mask.weights, mask.tau, mask.matched_fraction
    else:
        weights = torch.ones((depth - 1, height, width), dtype=torch.bool)
        tau, matched = float("nan"), 1.0
    check_cancel(cancel)
    target = None if reference is None else torch.from_numpy(
        np.ascontiguousarray(reference, dtype=np.float32)).to(device)
    volume, weights = volume.to(device), weights.to(device)

    with torch.random.fork_rng(devices=[]):  # seeded init without touching global state
        torch.manual_seed(config.seed)
        model = UNet2d(config.width, config.depth)
    model = model.to(device).to(memory_format=torch.channels_last)
    dtype = autocast_dtype(device)
    need_midpoints = config.lambda_ic > 0 and reference is None

    def batch_loss(step: int, spent: float) -> torch.Tensor:
        runs = sample_runs(depth, height, width, run_length, patch, config.batch, rng)
        images, masks = gather_runs(volume, weights, runs, run_length, patch)
        inputs = images.reshape(-1, 1, patch, patch)
        pairs = None
        if need_midpoints:
            pairs = torch.from_numpy(np.stack([
                rng.choice(run_length - 1, size=ic_pairs, replace=False)
                for _ in range(config.batch)])).to(device)
            midpoints = 0.5 * (images[:, :-1] + images[:, 1:])
            midpoints = torch.gather(midpoints, 1, pairs[:, :, None, None].expand(
                -1, -1, patch, patch))
            inputs = torch.cat([inputs, midpoints.reshape(-1, 1, patch, patch)])
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            predicted = model(inputs).float()
        count = images.numel() // (patch * patch)
        outputs = predicted[:count].reshape(images.shape)
        if target is not None:
            clean, _ = gather_runs(target, weights, runs, run_length, patch)
            return ((outputs - clean) ** 2).mean()
        midpoint_outputs = (predicted[count:].reshape(config.batch, ic_pairs, patch, patch)
                            if need_midpoints else None)
        loss, _ = nsn2n_loss(outputs, images, masks, midpoint_outputs,
                             config.lambda_rc, config.lambda_ic, pairs)
        return loss

    schedule = Schedule(config.steps, config.max_seconds, config.learning_rate)
    result = train(model, batch_loss, schedule, average_tail=config.average_tail,
                   progress=progress, cancel=cancel)
    trained = result.averaged if config.average_tail > 0 else result.model
    denoised = predict_volume(trained, slices.astype(np.float32, copy=False), device,
                              multiple=2 ** config.depth, transforms=TTA_ELEMENTS[config.tta],
                              progress=progress, cancel=cancel)
    noise_variance = None
    if config.nonlocal_strength > 0 or config.wiener_stride > 0:
        # One estimate for both stages: the Wiener stage's patch, clipped to the stack.
        patch = tuple(min(p, n) for p, n in zip(WIENER_PATCH, slices.shape))
        noise_variance = coefficient_noise_variance(slices, patch)
    guided = None
    if config.nonlocal_strength > 0:  # before the Wiener stage overwrites the network output
        guided = guided_nonlocal_means(slices, denoised, float(noise_variance.mean()),
                                       config.nonlocal_strength, progress=progress,
                                       cancel=cancel)
    if config.wiener_stride > 0:
        denoised = empirical_wiener(slices, denoised, stride=config.wiener_stride,
                                    noise_variance=noise_variance, inplace=True,
                                    progress=progress, cancel=cancel)
    if guided is not None and config.wiener_stride > 0:
        # The two stages err differently: on the MRI benchmark cases their mean beat the
        # better of them by 0.5 dB (refine/nonlocal_means.py), so they are averaged.
        denoised += guided
        denoised *= 0.5
    elif guided is not None:
        denoised = guided
    returned = 0.0
    if config.guard_factor > 0:
        denoised, returned = residual_guard(slices, denoised, config.guard_factor,
                                            inplace=True, cancel=cancel)
    report = NSN2NReport(method="nsn2n", device=str(device), steps=result.steps,
                         train_seconds=round(result.seconds, 2),
                         total_seconds=round(time.perf_counter() - started, 2),
                         recoveries=result.recoveries, final_loss=result.last_loss,
                         matched_fraction=round(matched, 4), tau=round(tau, 4),
                         guard_returned=round(returned, 4))
    return denoised, report


def estimate_seconds(shape, config: NSN2NConfig) -> float:
    """Expected run time of ``fit_predict`` on a ``(D, H, W)`` stack on this machine.

    Measured, not guessed: a few training steps on random data (the difference of a 6-step
    and a 2-step run, so fixed costs cancel) and one inference pass over a 128x128 slice.
    Takes a second or two; used to warn before a long CPU run.
    """
    depth, height, width = shape
    patch = _effective_patch(config, height, width)
    probe = np.random.default_rng(0).random(
        (max(3, min(config.run_length, depth) + 1), patch, patch)).astype(np.float32)

    def timed(steps: int) -> float:
        started = time.perf_counter()
        fit_predict(probe, dataclasses.replace(config, steps=steps, max_seconds=None, tta=1,
                                                use_mask=False))
        return time.perf_counter() - started

    per_step = max(0.0, timed(6) - timed(2)) / 4
    with torch.random.fork_rng(devices=[]):  # the weights do not matter; global state does
        model = UNet2d(config.width, config.depth)
    started = time.perf_counter()
    predict_volume(model, np.zeros((1, 128, 128), np.float32), resolve_device(config.device),
                   2 ** config.depth)
    per_pixel = (time.perf_counter() - started) / (128 * 128)
    return (config.steps * per_step
            + depth * height * width * len(TTA_ELEMENTS[config.tta]) * per_pixel)


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
    sigma = rician_background_sigma(slices)
    if sigma is None and requested:
        sigma = slice_noise_sigma(slices, 0)
    return sigma


class NSN2N:
    """NS-N2N as the pipeline sees it (the ``Method`` protocol of ``methods/base.py``)."""

    name = "nsn2n"
    config_class = NSN2NConfig
    presets = PRESETS
    default_for: Tuple[str, ...] = ()  # ``auto``'s choice for every modality no other claims

    def config(self, preset: str, **overrides) -> NSN2NConfig:
        return config_for(preset, **overrides)

    def slice_axis(self, volume: Volume, requested: Union[str, int]) -> int:
        return resolve_slice_axis(volume.geometry, requested)

    def denoise(self, volume: Volume, config: NSN2NConfig, options: DenoiseOptions,
                modality: Optional[str], progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelEvent] = None,
                reference: Optional[np.ndarray] = None) -> Tuple[Volume, NSN2NReport]:
        """Normalise, train and denoise along the slice axis, invert the normalisation,
        correct the Rician bias (magnitude MRI), cast to the input's pixel type."""
        require_volume(volume)
        array = volume.array
        axis = self.slice_axis(volume, options.slice_axis)
        if array.shape[axis] < 3:
            raise InputError(f"{array.shape[axis]} slices along axis {axis}; at least 3 are "
                             "needed")
        slices = np.moveaxis(array, axis, 0)
        sigma = rician_sigma_for(slices, modality, options.bias_correction)
        correct_bias = sigma is not None
        normalization = intensity.Normalization.fit(slices, keep_zero=correct_bias)
        if reference is not None:
            reference = normalization.apply(np.moveaxis(reference, axis, 0))
        denoised, report = fit_predict(normalization.apply(slices), config, progress, cancel,
                                       reference)
        log.info("NS-N2N mask: %.1f %% of pixels matched (tau %.3f on the normalised scale)",
                 100 * report.matched_fraction, report.tau)
        log.info("Residual guard gave back %.1f %% of the removed energy",
                 100 * report.guard_returned)
        result = normalization.invert(denoised)
        if correct_bias:
            result = intensity.rician_bias_correct(result, sigma)
        result = cast_like(np.moveaxis(result, 0, axis), array.dtype)
        report = dataclasses.replace(report, slice_axis=axis, modality=modality,
                                     bias_correction=correct_bias, rician_sigma=sigma)
        return volume.with_array(result), report

    def estimate_seconds(self, shape: Tuple[int, int, int], config: NSN2NConfig) -> float:
        return estimate_seconds(shape, config)
