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
  11 neighbourhood with weights from the network output's patches;
* block matching (``refine/block_matching.py``): BM4D's second stage with the guarded network
  output as pilot (off for CT); the output mixes the three stages by their risk (Stein's
  unbiased estimate, ``refine/combine.py``);
* the residual guard (``refine/guard.py``), which gives back what the network removed where it
  stands out from the noise, so a nearly clean volume does not come out worse.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
import torch

from ... import intensity
from ...checkpoint import load_network, save_network
from ...errors import InputError
from ...inference import predict_volume
from ...metrics import MethodNoise, method_noise
from ...nets import MeanOf, UNet2d
from ...noise import NoiseEstimate, band_stds, estimate_noise, rician_background_sigma
from ...options import DenoiseOptions
from ...filters import patch_positions
from ...refine.block_matching import CUBE as BLOCK_CUBE
from ...refine.block_matching import ProbeNoise, block_matching_wiener
from ...refine.combine import KeptNoise, in_plane_autocovariance, mix, sure_weights
from ...refine.guard import BAND_SCALES, residual_guard
from ...refine.nonlocal_means import SEARCH as NONLOCAL_SEARCH
from ...refine.nonlocal_means import guided_nonlocal_means
from ...refine.wiener import PATCH as WIENER_PATCH
from ...refine.wiener import empirical_wiener
from ...runtime import (PHASES, CancelEvent, Estimate, Progress, ProgressCallback, Stopwatch,
                        autocast_dtype, check_cancel, member_progress, precision_of,
                        resolve_device)
from ...symmetry import TTA_ELEMENTS
from ...training import Schedule, grad_scaler, train
from ...volume import Volume, cast_like, require_volume, resolve_slice_axis
from ..base import RunReport, stack_of, training_overrides
from .config import PRESETS, NSN2NConfig, config_for, steps_for
from .losses import nsn2n_loss
from .pairs import gather_runs, pair_weights, sample_runs

log = logging.getLogger(__name__)
# Member k of an ensemble trains with seed + k * this (a prime, so the seeds of the members
# of nearby seeds do not coincide for small ensembles).
ENSEMBLE_SEED_STRIDE = 7919


@dataclasses.dataclass(frozen=True)
class NSN2NReport(RunReport):
    matched_fraction: float = float("nan")  # share of pixels W marks as matched
    tau: float = float("nan")  # the mask threshold used, on the normalised scale
    guard_returned: float = 0.0  # share of the removed energy the guard gave back
    # Each refinement stage's weight in their mix (refine/combine.py): "nonlocal",
    # "block_matching", "wiener"; None when one stage alone is on.
    stage_weights: Optional[Dict[str, float]] = None
    bias_correction: bool = False
    rician_sigma: Optional[float] = None  # in the input's units, when corrected
    # The noise the run used: standard deviation on the anatomy, in the input's units
    # (noise.estimate_noise), before the Rician correction.
    noise_sigma: float = float("nan")
    # The thermal noise measured in background air (magnitude MRI), in the input's units;
    # None where there is no usable air: then sigma rests on the slices alone.
    air_sigma: Optional[float] = None
    # The noise across slices over the noise in-plane, on the flattest anatomy
    # (noise.NoiseEstimate.across_to_inplane): below noise.ACROSS_SLICE_RATIO neighbouring
    # slices share their noise, and the run warns.
    across_to_inplane: Optional[float] = None
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


def effective_patch(config: NSN2NConfig, height: int, width: int) -> int:
    """The training crop side for slices of ``height`` x ``width``: the config's, made to
    fit and kept a multiple of the network's stride; InputError when none fits."""
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
                magnitude: bool = False, stopwatch: Optional[Stopwatch] = None,
                initial: Optional[Dict[str, torch.Tensor]] = None,
                trained: Optional[Callable[[torch.nn.Module], None]] = None,
                noise_sigma: Optional[float] = None, needs_air: bool = False
                ) -> Tuple[np.ndarray, NSN2NReport]:
    """Train on ``slices`` (float32, normalised, slice axis first) and denoise them.

    ``magnitude``: the stack is a magnitude MR image, whose air (if any) bounds the noise
    estimate.  ``reference`` replaces the noisy neighbours by a clean target: the
    supervised upper bound the benchmark compares against; never used by the product.
    ``stopwatch`` collects the seconds of each phase (also in the report, rounded).
    ``initial``: weights to start from (a network trained on another volume, fine-tuned
    here) instead of a seeded initialisation; ``trained`` gets the network that denoises.
    ``noise_sigma``: the noise level the user gave (on the normalised scale); the estimate
    then contributes only its spectrum's shape.  ``needs_air``: the estimate can be trusted
    only if air confirms it (:func:`unconfirmable`); without usable air the stack is
    returned as it is, untrained (``steps`` 0).
    """
    depth, height, width = slices.shape
    if depth < 3:
        raise InputError(f"{depth} slices along the slice axis; at least 3 are needed")
    patch = effective_patch(config, height, width)
    run_length = min(config.run_length, depth)
    ic_pairs = min(config.ic_pairs, run_length - 1)
    device = resolve_device(config.device)
    dtype = autocast_dtype(device, config.precision)
    started = time.perf_counter()
    stopwatch = Stopwatch() if stopwatch is None else stopwatch

    if progress is not None:
        progress(Progress("prepare", 0, 1, float("nan"), 0.0, float("nan")))
    with stopwatch("noise"):
        noise = estimate_noise(slices, BAND_SCALES, magnitude, cancel=cancel)
        if noise_sigma is not None:
            noise = given_noise(noise, noise_sigma)
    if needs_air and noise.air_sigma is None:
        return slices.copy(), NSN2NReport(
            method="nsn2n", device=str(device), steps=0, train_seconds=0.0,
            total_seconds=round(time.perf_counter() - started, 2), recoveries=0,
            final_loss=float("nan"), precision=precision_of(dtype),
            phase_seconds=stopwatch.rounded(), noise_sigma=noise.sigma, residual_rms=0.0,
            residual_to_noise=0.0, structure_in_residual=0.0)
    volume = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))
    with stopwatch("mask"):
        if config.use_mask:
            mask = pair_weights(volume, config.tau, config.lowpass_sigma, config.tau_cap,
                                cancel=cancel)
            weights, tau, matched = mask.weights, mask.tau, mask.matched_fraction
        else:
            weights = torch.ones((depth - 1, height, width), dtype=torch.bool)
            tau, matched = float("nan"), 1.0
    check_cancel(cancel)
    target = None if reference is None else torch.from_numpy(
        np.ascontiguousarray(reference, dtype=np.float32)).to(device)
    volume, weights = volume.to(device), weights.to(device)

    need_midpoints = config.lambda_ic > 0 and reference is None
    steps = steps_for(config, (depth, height, width))

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

    schedule = Schedule(steps, None if config.max_seconds is None
                        else config.max_seconds / config.ensemble, config.learning_rate)
    members, results = [], []
    for member in range(config.ensemble):
        seed = config.seed + member * ENSEMBLE_SEED_STRIDE  # member 0: the config's seed
        rng = np.random.default_rng(seed)  # batch_loss draws this member's crops from it
        with torch.random.fork_rng(devices=[]):  # seeded init, global state untouched
            torch.manual_seed(seed)
            model = UNet2d(config.width, config.depth)
        if initial is not None:
            model.load_state_dict(initial)
        model = model.to(device).to(memory_format=torch.channels_last)
        with stopwatch("train"):
            result = train(model, batch_loss, schedule, average_tail=config.average_tail,
                           scaler=grad_scaler(device, dtype),
                           progress=member_progress(progress, member, config.ensemble),
                           cancel=cancel)
        members.append(result.averaged if config.average_tail > 0 else result.model)
        results.append(result)
    network = members[0] if len(members) == 1 else MeanOf(members)
    if trained is not None:
        trained(network)
    with stopwatch("predict"):
        denoised = predict_volume(network, slices.astype(np.float32, copy=False), device,
                                  multiple=2 ** config.depth,
                                  transforms=TTA_ELEMENTS[config.tta], dtype=dtype,
                                  progress=progress, cancel=cancel)
    denoised, returned, weights = refine(slices, denoised, noise, config, progress, cancel,
                                        stopwatch)
    with stopwatch("check"):
        denoised, check, backoffs = back_off(slices, denoised, noise, config, cancel)
    report = NSN2NReport(method="nsn2n", device=str(device),
                         steps=sum(r.steps for r in results),
                         train_seconds=round(sum(r.seconds for r in results), 2),
                         total_seconds=round(time.perf_counter() - started, 2),
                         recoveries=sum(r.recoveries for r in results),
                         final_loss=results[-1].last_loss,
                         precision=precision_of(dtype), phase_seconds=stopwatch.rounded(),
                         matched_fraction=round(matched, 4), tau=round(tau, 4),
                         guard_returned=round(returned, 4),
                         stage_weights=None if weights is None else {
                             name: round(weight, 4) for name, weight in weights.items()},
                         noise_sigma=noise.sigma,
                         air_sigma=noise.air_sigma,
                         residual_rms=check.residual_rms,
                         residual_to_noise=round(check.ratio, 3),
                         structure_in_residual=round(check.structure, 3),
                         backoffs=backoffs,
                         across_to_inplane=shared_noise_ratio(noise),
                         warning=run_warning(noise, check))
    return denoised, report


def run_warning(noise: NoiseEstimate, check: MethodNoise) -> Optional[str]:
    """What the user is told about the output, if anything.  Noise shared by neighbouring
    slices comes first: it makes the estimate low, and the method-noise check measures
    against that estimate (synthetic MRI 5 %, slice-to-slice correlation 0.44: estimate
    0.63x the noise; the check failed after 3 back-offs on an output 2.4 dB better than
    the input, and told the user it may have lost anatomy)."""
    if noise.correlated_across_slices():
        return ACROSS_SLICES.format(shared_noise_ratio(noise))
    return WARNING if check.removed_anatomy() else None


def shared_noise_ratio(noise: NoiseEstimate) -> Optional[float]:
    """``noise.across_to_inplane`` as the report holds it and the warning quotes it."""
    ratio = noise.across_to_inplane
    return None if ratio is None else round(ratio, 3)


# Shown to the user when the method-noise check still fails after backing off.
WARNING = ("the difference between input and output looks like more than noise (its rms "
           "above the estimated noise, or shaped like the image's edges): the output may "
           "have lost anatomy; compare it with the input before use")
ACROSS_SLICES = ("the noise looks shared by neighbouring slices (its level across slices "
                 "is {:.2f}x that within them: a volume resampled or filtered through-plane?); "
                 "NS-N2N needs noise independent across slices: it removed only part of "
                 "this noise, and estimates of it from the slices read low; denoise the "
                 "volume as acquired, or along its acquisition axis (--slice-axis)")
MAX_BACKOFFS = 3


def back_off(slices: np.ndarray, denoised: np.ndarray, noise: NoiseEstimate,
             config: NSN2NConfig, cancel: Optional[CancelEvent] = None
             ) -> Tuple[np.ndarray, MethodNoise, int]:
    """Check what was removed (``metrics.method_noise``); while it reads as anatomy, run
    the guard again with half the factor, so that more of what stands out comes back (at
    most :data:`MAX_BACKOFFS` times).  Returns the output, its last check and how many
    times it backed off."""
    check_cancel(cancel)
    check = method_noise(slices, denoised, noise.sigma)
    factor, backoffs = config.guard_factor, 0
    while check.removed_anatomy() and factor > 0 and backoffs < MAX_BACKOFFS:
        factor *= 0.5
        backoffs += 1
        log.info("method-noise check failed (residual %.2f x the noise, structure %.2f); "
                 "guard factor %.2f", check.ratio, check.structure, factor)
        denoised, _ = residual_guard(slices, denoised, factor, inplace=True, cancel=cancel,
                                     noise_std=noise.bands)
        check_cancel(cancel)
        check = method_noise(slices, denoised, noise.sigma)
    return denoised, check, backoffs


def refine(slices: np.ndarray, network_output: np.ndarray, noise: NoiseEstimate,
           config: NSN2NConfig, progress: Optional[ProgressCallback] = None,
           cancel: Optional[CancelEvent] = None, stopwatch: Optional[Stopwatch] = None
           ) -> Tuple[np.ndarray, float, Optional[Dict[str, float]]]:
    """The product's output from the network's (float32, written into ``network_output``):
    guided non-local means with the network output as guide; block matching and the
    Wiener stage with it as pilot once the guard has given back what it removed and
    stands out from the noise; the stages mixed by their estimated risk, guarded.
    Returns it, the share of the removed energy the last guard gave back and each
    stage's weight in the mix (None when one stage alone is on).

    The pilot is guarded because the Wiener gain P^2 / (P^2 + s^2) shrinks every
    coefficient the pilot lacks: where the network removed anatomy (thick slices,
    fast-changing anatomy: it learns E[x_{k+1} | x_k]) the stage removed it too (real
    6 mm MRI: 1.1 dB worse than the input with the raw pilot, 0.03 dB better with the
    guarded one; docs/nsn2n.md, "Real acquisitions").  The non-local weights only select
    which noisy voxels to average, and a guarded guide (noisier) cost 0.2 dB on real 2 mm
    MRI without a gain elsewhere, so the guide stays the network output.
    """
    stopwatch = Stopwatch() if stopwatch is None else stopwatch
    guard = config.guard_factor > 0
    several = sum((config.nonlocal_strength > 0, config.wiener_stride > 0,
                   config.block_stride > 0)) > 1
    # The noise covariance their risks need: only when there is a mix to weigh.
    lags = (in_plane_autocovariance(noise.spectrum, max(NONLOCAL_SEARCH[1:])) if several
            else None)
    stages: Dict[str, np.ndarray] = {}
    kept: Dict[str, float] = {}  # what each stage keeps of the noise: their risks
    if config.nonlocal_strength > 0:  # before the guard and the Wiener stage overwrite it
        counter = KeptNoise(lags) if several else None
        with stopwatch("nonlocal"):
            stages["nonlocal"] = guided_nonlocal_means(
                slices, network_output, noise.sigma ** 2, config.nonlocal_strength,
                progress=progress, cancel=cancel, kept_noise=counter)
        kept["nonlocal"] = counter.total if several else 0.0
    pilot = network_output
    if guard and (config.block_stride > 0 or config.wiener_stride > 0):
        with stopwatch("guard"):
            pilot, _ = residual_guard(slices, pilot, config.guard_factor, inplace=True,
                                      cancel=cancel, noise_std=noise.bands)
    if config.block_stride > 0:
        with stopwatch("block"):
            probe = ProbeNoise(lags, *slices.shape[1:], config.seed) if several else None
            stages["block_matching"], kept["block_matching"] = block_matching_wiener(
                slices, pilot, noise.sigma ** 2, stride=config.block_stride, probe=probe,
                progress=progress, cancel=cancel)
    if config.wiener_stride > 0:  # last: it writes into the pilot
        counter = KeptNoise(lags) if several else None
        with stopwatch("wiener"):
            stages["wiener"] = empirical_wiener(
                slices, pilot, wiener_variance(noise, slices.shape),
                stride=config.wiener_stride, inplace=True, progress=progress, cancel=cancel,
                kept_noise=counter)
        kept["wiener"] = counter.total if several else 0.0
    weights = None
    if several:
        # The stages err differently (refine/nonlocal_means.py: the mean of the non-local
        # and Wiener stages beat the better of them by 0.5 dB on synthetic MRI), and by
        # how much depends on the volume.
        weights = dict(zip(stages, sure_weights(slices, list(stages.values()),
                                                 [kept[name] for name in stages])))
        denoised = mix(list(stages.values()), list(weights.values()), out=network_output)
    else:
        denoised = next(iter(stages.values()), network_output)
    returned = 0.0
    if guard:
        with stopwatch("guard"):
            denoised, returned = residual_guard(slices, denoised, config.guard_factor,
                                                inplace=True, cancel=cancel,
                                                noise_std=noise.bands)
    return denoised, returned, weights


def wiener_variance(noise: NoiseEstimate, shape: Tuple[int, int, int]) -> torch.Tensor:
    """The noise variance of each coefficient of the Wiener stage's 3-D DCT, its patch
    clipped to ``shape``; white where the clipped in-plane patch is not the spectrum's."""
    depth, rows, cols = (min(p, n) for p, n in zip(WIENER_PATCH, shape))
    if (rows, cols) == tuple(noise.spectrum.shape):
        return noise.coefficient_variance(depth)
    return torch.full((depth, rows, cols), noise.sigma ** 2)


# The report's phases (fit_predict's stopwatch) in the phases progress is reported in.
PROGRESS_PHASE = {"noise": "prepare", "mask": "prepare", "train": "train",
                  "predict": "predict", "nonlocal": "refine", "wiener": "refine",
                  "block": "refine", "guard": "refine", "check": "refine"}
# A run that starts from a saved network (``--model``) trains this share of the preset's
# steps unless told otherwise: python -m benchmarks transfer measures it.
FINE_TUNE_SHARE = 0.25
# The probe stack of the estimate: its slices, the largest side of its slices (the
# volume's, up to this), and its training steps.  Slices of the volume's size, not a fixed
# 128 x 128: on 128 x 128 slices the non-local stage took 0.55 of its time per voxel on
# the 256 x 256 CT benchmark volume.
PROBE, PROBE_STEPS = (8, 256), 8
# The least training a time budget may leave: this share of the run's steps, at most
# BUDGET_FLOOR_STEPS.  Measured on the CT benchmark case (bf16, seed 0), against 41.06 dB
# after 700 steps: 350 steps 40.86, 200 steps 40.37, 100 steps 39.47, 50 steps 31.63 dB;
# below about 100 steps the output falls apart, so a budget that would go there is overrun
# (the user is told before the run).
BUDGET_FLOOR_SHARE, BUDGET_FLOOR_STEPS = 0.3, 200


def positions(phase: str, shape: Tuple[int, int, int], config: NSN2NConfig) -> int:
    """How many patches the Wiener stage (phase "wiener") transforms, or how many
    references block matching (phase "block") matches, on a stack of ``shape``: their
    cost.  Not proportional to the voxels: the 8-slice probe has one Wiener patch position
    through its depth where 48 slices have 21."""
    if phase == "wiener":
        return patch_positions(shape, WIENER_PATCH, config.wiener_stride)
    return patch_positions(shape, BLOCK_CUBE, config.block_stride)


@dataclasses.dataclass(frozen=True)
class Costs:
    """What a run costs on this machine, device and precision: seconds per training step,
    per Wiener patch and block-matching reference (``per_position``, by stopwatch phase:
    :func:`positions`), and, for every other progress phase, per voxel (inference: per
    voxel and test-time transform)."""

    per_step: float
    per_voxel: Dict[str, float]
    per_position: Dict[str, float] = dataclasses.field(default_factory=dict)

    def estimate(self, shape: Tuple[int, int, int], config: NSN2NConfig) -> Estimate:
        """The seconds per progress phase of ``fit_predict`` on a stack of ``shape``."""
        voxels = math.prod(shape)
        steps = steps_for(config, shape)
        floor = (min(BUDGET_FLOOR_STEPS, math.ceil(BUDGET_FLOOR_SHARE * steps))
                 * self.per_step * config.ensemble)
        train_seconds = steps * self.per_step * config.ensemble
        if config.max_seconds is not None:
            train_seconds = min(train_seconds, max(floor, config.max_seconds))
        phases = {name: self.per_voxel.get(name, 0.0) * voxels for name in PHASES}
        phases["train"] = train_seconds
        phases["predict"] *= len(TTA_ELEMENTS[config.tta]) * config.ensemble
        for name, seconds in self.per_position.items():
            phases[PROGRESS_PHASE[name]] += seconds * positions(name, shape, config)
        return Estimate(phases, train_floor=floor)


def probe_stack(shape: Tuple[int, int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """A noisy stack of ``shape`` for the estimate and the smooth image under its noise
    (float32, about 0..1): blobs a few pixels wide and 5 % Gaussian noise."""
    from ...filters import gaussian_lowpass

    rng = np.random.default_rng(0)
    field = gaussian_lowpass(torch.from_numpy(rng.standard_normal(shape, np.float32)), 3.0)
    field = gaussian_lowpass(field.transpose(0, 1).contiguous(), 3.0).transpose(0, 1)
    field = field.numpy()
    smooth = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
    noisy = smooth + 0.05 * rng.standard_normal(shape, np.float32)
    return noisy.astype(np.float32), smooth.astype(np.float32)


def measure_costs(config: NSN2NConfig, patch: int,
                  plane: Tuple[int, int] = (PROBE[1], PROBE[1])) -> Costs:
    """Time ``fit_predict`` itself, phase by phase, on a probe stack (:func:`probe_stack`)
    of slices of ``plane`` (at most :data:`PROBE`'s side, at least ``patch``), after a
    two-step warm-up run on the same stack that lets the kernels pick their algorithms for
    its shapes (about three seconds in fp32 on 2 cores).  On the CT and MRI benchmark
    volumes every phase but the sub-second preparation then came within 10 % of its time.
    A warm-up on a smaller crop left inference cold: it was estimated at twice its time
    with bf16.  Per voxel from one probe, not a line through two: the fixed costs are a
    few percent of a probe's, and a difference of two short timings on a busy machine was
    often negative."""
    slices, largest = PROBE
    rows, cols = (min(max(n, patch), largest) for n in plane)
    probe, smooth = probe_stack((max(slices, config.run_length + 1), rows, cols))
    # Training and inference are timed through fit_predict with the refine stages off
    # (on random data its method-noise check always failed and backed off three times,
    # which priced the check at 5 s on a CT volume where it takes 0.1); the refine stages
    # are then timed on the probe by themselves.
    bare = dataclasses.replace(config, steps=PROBE_STEPS, full_budget_voxels=0,
                               max_seconds=None, tta=1, ensemble=1, patch=patch,
                               nonlocal_strength=0.0, wiener_stride=0, block_stride=0,
                               guard_factor=0.0)
    fit_predict(probe, dataclasses.replace(bare, steps=2))  # warm-up
    stopwatch = Stopwatch()
    steps_at: List[float] = []  # seconds into training at the end of each step
    fit_predict(probe, bare, stopwatch=stopwatch, progress=lambda p: (
        steps_at.append(p.elapsed) if p.phase == "train" else None))
    # The refine stages' speed depends on the data: on uniform noise the non-local stage
    # ran 1.8 times as long per voxel as on the CT volume, so they are timed on a smooth
    # image in noise with the smooth image as the guide, as a trained network gives them.
    refine(probe, smooth, estimate_noise(probe, BAND_SCALES), config, stopwatch=stopwatch)
    # The median step, not the mean: on a shared machine one slow step of eight moved
    # the estimate of a 30 s run by up to 40 % (docs/benchmarks.md, "Speed").
    gaps = np.diff(steps_at)
    per_step = (float(np.median(gaps)) if len(gaps) >= 3
                else stopwatch.seconds["train"] / PROBE_STEPS)
    per_voxel: Dict[str, float] = {}
    per_position: Dict[str, float] = {}
    for name, seconds in stopwatch.seconds.items():
        if name in ("wiener", "block"):
            per_position[name] = seconds / positions(name, probe.shape, config)
        elif name != "train":
            phase = PROGRESS_PHASE[name]
            per_voxel[phase] = per_voxel.get(phase, 0.0) + seconds / probe.size
    return Costs(per_step, per_voxel, per_position)


def estimate(shape: Tuple[int, int, int], config: NSN2NConfig) -> Estimate:
    """Expected seconds per progress phase of ``fit_predict`` on a ``(D, H, W)`` stack on
    this machine, device and precision: measured (:func:`measure_costs`), not guessed.
    Training costs the same per step whatever the volume (fixed crops); every other phase
    grows with the voxels."""
    _, height, width = shape
    costs = measure_costs(config, effective_patch(config, height, width), (height, width))
    return costs.estimate(shape, config)


# Block matching is off for CT.  Its gains take the noise as white and
# stationary, and the mix's risks take it as stationary, and CT's noise is neither
# (filtered back-projection shapes its spectrum, the attenuation along each ray its
# level): on the synthetic CT 1e4 case the mix gave block matching a weight of 0.86-0.98
# where the non-local stage alone was better (true error 152 against 122 on the
# normalised scale), and the output lost 0.55-0.9 dB against the two stages without it
# (41.84 dB; docs/nsn2n.md, "Block matching").  CT is known from the file or from
# Hounsfield units (intensity.infer_modality).


def for_modality(config: NSN2NConfig, modality: Optional[str]) -> NSN2NConfig:
    """``config`` as it runs on ``modality``: without block matching on CT (above).  The
    run and its time estimate both apply it (the pipeline passes the modality it found)."""
    if modality is not None and modality.upper() == intensity.CT:
        return dataclasses.replace(config, block_stride=0)
    return config

# Slices this much thicker than the pixels (or more) differ by anatomy that the cross-slice
# estimate counts as noise: real 6 mm ASL over 3 mm pixels read 4.8x the repeats' noise
# without its air, while 2 mm isotropic DWI read 0.91x.
THICK_SLICES = 1.5
UNCONFIRMED = ("left as it is: with no background air to check the noise level against "
               "(masked or cropped) and slices {:.1f}x thicker than the pixels, anatomy can "
               "pass for noise; give the noise level if it is known (--noise-sigma, the "
               "panel's Noise level)")


def given_noise(estimated: NoiseEstimate, sigma: float) -> NoiseEstimate:
    """The noise the user gave: at ``sigma``, with the estimate's spectrum shape (white
    where nothing could be measured)."""
    if estimated.sigma > 0:
        return estimated.at_sigma(sigma)
    spectrum = torch.full(tuple(estimated.spectrum.shape), sigma ** 2)
    return dataclasses.replace(estimated, sigma=sigma, spectrum=spectrum,
                               bands=band_stds(spectrum, BAND_SCALES))


def thickness_ratio(volume: Volume, axis: int) -> float:
    """Slice spacing over the mean in-plane spacing, for slices along array ``axis``."""
    spacing = list(reversed(volume.geometry.spacing))  # by array axis
    in_plane = [s for index, s in enumerate(spacing) if index != axis]
    return spacing[axis] / (sum(in_plane) / 2)


def unconfirmable(volume: Volume, axis: int, magnitude: bool) -> bool:
    """Whether the noise estimate of this volume must be confirmed by air to be used: a
    magnitude MR volume of thick slices.  Its cross-slice estimate cannot tell anatomy
    from noise: the real 6 mm ASL volume with its background masked read 4.7x the
    repeats' noise, the run removed anatomy (2.1 dB further from the reference than the
    input with `fast`, 3.2 dB with `balanced`), and the method-noise check, which measures
    against that estimate, passed it.  Where the noise is right, such volumes gain little
    (+0.02 dB on that volume with its air), so they are better left as they are."""
    return magnitude and thickness_ratio(volume, axis) >= THICK_SLICES


# How far the background's Rayleigh mode and the noise measured in air may disagree (the
# MNI sample with Rician noise: 1.03).
RAYLEIGH_AGREEMENT = 1.5


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
    if sigma is not None and not requested:
        # A Rayleigh-like peak of the histogram is the background only if air is found
        # away from the anatomy too, with the same noise: the rim of air that a generous
        # mask leaves around a head, or dark tissue, gave such a peak at 2-6x the noise
        # (real ASL and DWI masked by their head mask), and correcting with it darkened
        # the anatomy (-0.4 dB on the ASL volume).
        air = estimate_noise(slices, BAND_SCALES, magnitude=True).air_sigma
        if air is None or not 1 / RAYLEIGH_AGREEMENT <= sigma / air <= RAYLEIGH_AGREEMENT:
            log.info("no Rician bias correction: the histogram's background (%.3g) is not "
                     "confirmed by air (%s)", sigma, "none" if air is None else f"{air:.3g}")
            sigma = None
    if sigma is None and requested:
        sigma = estimate_noise(slices, BAND_SCALES, magnitude=True).sigma
    return sigma


class NSN2N:
    """NS-N2N as the pipeline sees it (the ``Method`` protocol of ``methods/base.py``)."""

    name = "nsn2n"
    config_class = NSN2NConfig
    report_class = NSN2NReport
    presets = PRESETS
    default_for: Tuple[str, ...] = ()  # ``auto``'s choice for every modality no other claims
    series = False

    def config(self, options: DenoiseOptions) -> NSN2NConfig:
        config = for_modality(config_for(options.preset, **training_overrides(options)),
                              options.modality)
        if options.model is not None and options.steps is None:  # a fine-tune
            config = dataclasses.replace(config, steps=max(1, round(FINE_TUNE_SHARE
                                                                   * config.steps)))
        return config

    def slice_axis(self, volume: Volume, requested: Union[str, int]) -> int:
        return resolve_slice_axis(volume.geometry, requested)

    def stack_shape(self, volume: Volume, options: DenoiseOptions) -> Tuple[int, int, int]:
        return stack_of(volume.array.shape, self._checked_axis(volume, options))

    def _checked_axis(self, volume: Volume, options: DenoiseOptions) -> int:
        """The slice axis, once the volume is known to be one NS-N2N can denoise."""
        require_volume(volume)
        axis = self.slice_axis(volume, options.slice_axis)
        if volume.array.shape[axis] < 3:
            raise InputError(f"{volume.array.shape[axis]} slices along axis {axis}; at "
                             "least 3 are needed")
        return axis

    def denoise(self, volume: Volume, config: NSN2NConfig, options: DenoiseOptions,
                modality: Optional[str], progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelEvent] = None,
                reference: Optional[np.ndarray] = None) -> Tuple[Volume, NSN2NReport]:
        """Normalise, train and denoise along the slice axis, invert the normalisation,
        correct the Rician bias (magnitude MRI), cast to the input's pixel type."""
        array = volume.array
        axis = self._checked_axis(volume, options)
        slices = np.moveaxis(array, axis, 0)
        config = for_modality(config, modality)
        sigma = rician_sigma_for(slices, modality, options.bias_correction)
        correct_bias = sigma is not None
        normalization = intensity.Normalization.fit(slices, keep_zero=correct_bias)
        if reference is not None:
            reference = normalization.apply(np.moveaxis(reference, axis, 0))
        magnitude = modality == intensity.MR and float(slices.min()) >= 0
        initial = (None if options.model is None
                   else load_network(options.model, config.width, config.depth))
        networks: List[torch.nn.Module] = []
        if options.save_model is not None and config.ensemble > 1:
            raise InputError("an ensemble of networks cannot be saved as one; use ensemble 1")
        given = (None if options.noise_sigma is None
                 else options.noise_sigma / normalization.scale)
        needs_air = given is None and unconfirmable(volume, axis, magnitude)
        denoised, report = fit_predict(normalization.apply(slices), config, progress, cancel,
                                       reference, magnitude, initial=initial,
                                       trained=networks.append, noise_sigma=given,
                                       needs_air=needs_air)
        kept = needs_air and report.air_sigma is None
        if options.save_model is not None and kept:
            raise InputError("no network was trained to save: the noise level of this "
                             "thick-slice volume without background air cannot be checked; "
                             "give it (--noise-sigma)")
        if options.save_model is not None:
            save_network(options.save_model, networks[0], config, {
                "shape": list(array.shape), "slice_axis": axis, "modality": modality,
                "normalization": dataclasses.asdict(normalization),
                "noise_sigma": report.noise_sigma * normalization.scale,
                "steps": report.steps, "seed": config.seed})
        if kept:
            result = array.copy()
            correct_bias = False
            sigma = None
            report = dataclasses.replace(report, warning=UNCONFIRMED.format(
                thickness_ratio(volume, axis)))
        else:
            log.info("NS-N2N mask: %.1f %% of pixels matched (tau %.3f on the normalised "
                     "scale); the residual guard gave back %.1f %% of the removed energy",
                     100 * report.matched_fraction, report.tau, 100 * report.guard_returned)
            result = normalization.invert(denoised)
            if correct_bias:
                result = intensity.rician_bias_correct(result, sigma)
            result = cast_like(np.moveaxis(result, 0, axis), array.dtype)
        report = dataclasses.replace(report, slice_axis=axis, modality=modality,
                                     air_sigma=(None if report.air_sigma is None
                                                else report.air_sigma * normalization.scale),
                                     bias_correction=correct_bias, rician_sigma=sigma,
                                     noise_sigma=report.noise_sigma * normalization.scale,
                                     residual_rms=report.residual_rms * normalization.scale)
        return volume.with_array(result), report

    def estimate(self, shape: Tuple[int, int, int], config: NSN2NConfig) -> Estimate:
        return estimate(shape, config)
