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
from ...metrics import MethodNoise, method_noise
from ...nets import UNet2d
from ...noise import NoiseEstimate, estimate_noise, rician_background_sigma
from ...options import DenoiseOptions
from ...refine.guard import BAND_SCALES, residual_guard
from ...refine.nonlocal_means import guided_nonlocal_means
from ...refine.wiener import PATCH as WIENER_PATCH
from ...refine.wiener import empirical_wiener
from ...runtime import (CancelEvent, Progress, ProgressCallback, autocast_dtype, check_cancel,
                        resolve_device)
from ...symmetry import TTA_ELEMENTS
from ...training import Schedule, train
from ...volume import Volume, cast_like, require_volume, resolve_slice_axis
from ..base import RunReport, stack_of, training_overrides
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
    # The noise the run used: standard deviation on the anatomy, in the input's units
    # (noise.estimate_noise), before the Rician correction.
    noise_sigma: float = float("nan")
    # The method-noise check (metrics.method_noise) of the output: the residual's rms (the
    # input's units), its ratio to noise_sigma, the share of it shaped like the output's
    # edges; how often the guard backed off; a warning when the check still failed.
    residual_rms: float = float("nan")
    residual_to_noise: float = float("nan")
    structure_in_residual: float = float("nan")
    backoffs: int = 0

    def summary(self) -> str:
        return (f"noise {self.noise_sigma:.4g}; removed {self.residual_to_noise:.2f} x that "
                f"(structure {self.structure_in_residual:.2f}); "
                f"{100 * self.matched_fraction:.0f} % of pixels matched between slices")


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
                reference: Optional[np.ndarray] = None,
                magnitude: bool = False) -> Tuple[np.ndarray, NSN2NReport]:
    """Train on ``slices`` (float32, normalised, slice axis first) and denoise them.

    ``magnitude``: the stack is a magnitude MR image, whose air (if any) bounds the noise
    estimate.  ``reference`` replaces the noisy neighbours by a clean target: the
    supervised upper bound the benchmark compares against; never used by the product.
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
    noise = estimate_noise(slices, BAND_SCALES, magnitude)
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
    denoised, returned = refine(slices, denoised, noise, config, progress, cancel)
    denoised, check, backoffs = back_off(slices, denoised, noise, config, cancel)
    report = NSN2NReport(method="nsn2n", device=str(device), steps=result.steps,
                         train_seconds=round(result.seconds, 2),
                         total_seconds=round(time.perf_counter() - started, 2),
                         recoveries=result.recoveries, final_loss=result.last_loss,
                         matched_fraction=round(matched, 4), tau=round(tau, 4),
                         guard_returned=round(returned, 4), noise_sigma=noise.sigma,
                         residual_rms=check.residual_rms,
                         residual_to_noise=round(check.ratio, 3),
                         structure_in_residual=round(check.structure, 3),
                         backoffs=backoffs,
                         warning=(WARNING if check.removed_anatomy() else None))
    return denoised, report


# Shown to the user when the method-noise check still fails after backing off.
WARNING = ("the difference between input and output looks like more than noise (its rms "
           "above the estimated noise, or shaped like the image's edges): the output may "
           "have lost anatomy; compare it with the input before use")
MAX_BACKOFFS = 3


def back_off(slices: np.ndarray, denoised: np.ndarray, noise: NoiseEstimate,
             config: NSN2NConfig, cancel: Optional[CancelEvent] = None
             ) -> Tuple[np.ndarray, MethodNoise, int]:
    """Check what was removed (``metrics.method_noise``); while it reads as anatomy, run
    the guard again with half the factor, so that more of what stands out comes back (at
    most :data:`MAX_BACKOFFS` times).  Returns the output, its last check and how many
    times it backed off."""
    check = method_noise(slices, denoised, noise.sigma)
    factor, backoffs = config.guard_factor, 0
    while check.removed_anatomy() and factor > 0 and backoffs < MAX_BACKOFFS:
        factor *= 0.5
        backoffs += 1
        log.info("method-noise check failed (residual %.2f x the noise, structure %.2f); "
                 "guard factor %.2f", check.ratio, check.structure, factor)
        denoised, _ = residual_guard(slices, denoised, factor, inplace=True, cancel=cancel,
                                     noise_std=noise.bands)
        check = method_noise(slices, denoised, noise.sigma)
    return denoised, check, backoffs


def refine(slices: np.ndarray, network_output: np.ndarray, noise: NoiseEstimate,
           config: NSN2NConfig, progress: Optional[ProgressCallback] = None,
           cancel: Optional[CancelEvent] = None) -> Tuple[np.ndarray, float]:
    """The product's output from the network's (float32, written into ``network_output``):
    guided non-local means with the network output as guide; the Wiener stage with it as
    pilot once the guard has given back what it removed and stands out from the noise;
    the mean of both, guarded.  Returns it and the share of the removed energy the last
    guard gave back.

    The pilot is guarded because the Wiener gain P^2 / (P^2 + s^2) shrinks every
    coefficient the pilot lacks: where the network removed anatomy (thick slices,
    fast-changing anatomy: it learns E[x_{k+1} | x_k]) the stage removed it too (real
    6 mm MRI: 1.1 dB worse than the input with the raw pilot, 0.03 dB better with the
    guarded one; docs/nsn2n.md, "Real acquisitions").  The non-local weights only select
    which noisy voxels to average, and a guarded guide (noisier) cost 0.2 dB on real 2 mm
    MRI without a gain elsewhere, so the guide stays the network output.
    """
    guard = config.guard_factor > 0
    guided = None
    if config.nonlocal_strength > 0:  # before the guard and the Wiener stage overwrite it
        guided = guided_nonlocal_means(slices, network_output, noise.sigma ** 2,
                                       config.nonlocal_strength, progress=progress,
                                       cancel=cancel)
    denoised = network_output
    if config.wiener_stride > 0:
        pilot = denoised
        if guard:
            pilot, _ = residual_guard(slices, pilot, config.guard_factor, inplace=True,
                                      cancel=cancel, noise_std=noise.bands)
        denoised = empirical_wiener(slices, pilot, wiener_variance(noise, slices.shape),
                                    stride=config.wiener_stride, inplace=True,
                                    progress=progress, cancel=cancel)
    if guided is not None and config.wiener_stride > 0:
        # The two stages err differently: on the MRI benchmark cases their mean beat the
        # better of them by 0.5 dB (refine/nonlocal_means.py), so they are averaged.
        denoised += guided
        denoised *= 0.5
    elif guided is not None:
        denoised = guided
    returned = 0.0
    if guard:
        denoised, returned = residual_guard(slices, denoised, config.guard_factor,
                                            inplace=True, cancel=cancel,
                                            noise_std=noise.bands)
    return denoised, returned


def wiener_variance(noise: NoiseEstimate, shape: Tuple[int, int, int]) -> torch.Tensor:
    """The noise variance of each coefficient of the Wiener stage's 3-D DCT, its patch
    clipped to ``shape``; white where the clipped in-plane patch is not the spectrum's."""
    depth, rows, cols = (min(p, n) for p, n in zip(WIENER_PATCH, shape))
    if (rows, cols) == tuple(noise.spectrum.shape):
        return noise.coefficient_variance(depth)
    return torch.full((depth, rows, cols), noise.sigma ** 2)


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
        sigma = estimate_noise(slices, BAND_SCALES, magnitude=True).sigma
    return sigma


class NSN2N:
    """NS-N2N as the pipeline sees it (the ``Method`` protocol of ``methods/base.py``)."""

    name = "nsn2n"
    config_class = NSN2NConfig
    presets = PRESETS
    default_for: Tuple[str, ...] = ()  # ``auto``'s choice for every modality no other claims
    series = False

    def config(self, options: DenoiseOptions) -> NSN2NConfig:
        return config_for(options.preset, **training_overrides(options))

    def slice_axis(self, volume: Volume, requested: Union[str, int]) -> int:
        return resolve_slice_axis(volume.geometry, requested)

    def stack_shape(self, volume: Volume, options: DenoiseOptions) -> Tuple[int, int, int]:
        return stack_of(volume.array.shape, self.slice_axis(volume, options.slice_axis))

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
        magnitude = modality == intensity.MR and float(slices.min()) >= 0
        denoised, report = fit_predict(normalization.apply(slices), config, progress, cancel,
                                       reference, magnitude)
        log.info("NS-N2N mask: %.1f %% of pixels matched (tau %.3f on the normalised scale)",
                 100 * report.matched_fraction, report.tau)
        log.info("Residual guard gave back %.1f %% of the removed energy",
                 100 * report.guard_returned)
        result = normalization.invert(denoised)
        if correct_bias:
            result = intensity.rician_bias_correct(result, sigma)
        result = cast_like(np.moveaxis(result, 0, axis), array.dtype)
        report = dataclasses.replace(report, slice_axis=axis, modality=modality,
                                     bias_correction=correct_bias, rician_sigma=sigma,
                                     noise_sigma=report.noise_sigma * normalization.scale,
                                     residual_rms=report.residual_rms * normalization.scale)
        return volume.with_array(result), report

    def estimate_seconds(self, shape: Tuple[int, int, int], config: NSN2NConfig) -> float:
        return estimate_seconds(shape, config)
