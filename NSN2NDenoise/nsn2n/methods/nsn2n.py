"""NS-N2N: Neighboring Slice Noise2Noise (Zhou et al., arXiv 2411.10831).

``fit_predict`` trains a 2-D U-Net on one normalised noisy stack ``(D, H, W)`` (slice axis
first) with neighbouring slices as Noise2Noise targets and returns the denoised stack.

Beyond the paper (each measured in ``nsn2n bench --ablation``):

* runs of K consecutive slices per sample instead of single pairs: every forward pass is
  used against both neighbours (K = 2 is the paper's sampling);
* a uniform average of the weights over the last quarter of the budget;
* test-time averaging over flips/rotations, which the network was trained on;
* an empirical Wiener stage (``wiener.py``): the network output is the pilot of a 3-D DCT
  shrinkage of the noisy stack, BM4D's second stage without the block matching;
* guided non-local means (``nonlocal_means.py``): the noisy voxels averaged over a 5 x 11 x
  11 neighbourhood with weights from the network output's patches; the output is the mean
  of this and the Wiener stage;
* the residual guard (``guard.py``), which gives back what the network removed where it
  stands out from the noise, so a nearly clean volume does not come out worse.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ..errors import InputError
from . import preset_config
from ..guard import FACTOR as GUARD_FACTOR
from ..guard import residual_guard
from ..inference import predict_volume
from ..losses import nsn2n_loss
from ..nets import UNet2d
from ..nonlocal_means import STRENGTH as NONLOCAL_STRENGTH
from ..nonlocal_means import guided_nonlocal_means
from ..pairs import gather_runs, pair_weights, sample_runs
from ..training import (CancelEvent, Progress, ProgressCallback, Schedule, autocast_dtype,
                        check_cancel, resolve_device, train)
from ..wiener import PATCH as WIENER_PATCH
from ..wiener import STRIDE as WIENER_STRIDE
from ..wiener import coefficient_noise_variance, empirical_wiener

TTA_ELEMENTS = {1: (0,), 2: (0, 3), 4: (0, 3, 5, 6), 8: tuple(range(8))}


@dataclasses.dataclass(frozen=True)
class NSN2NConfig:
    """Every setting of one NS-N2N run; validated on construction."""

    steps: int = 1000
    max_seconds: Optional[float] = None  # a time cap on training; ends the schedule early
    width: int = 16
    depth: int = 3
    patch: int = 64
    batch: int = 4
    run_length: int = 4
    ic_pairs: int = 1  # midpoints per run for L_IC; K-1 evaluates every pair of the run
    learning_rate: float = 2e-3
    lambda_rc: float = 0.5
    lambda_ic: float = 1.0
    use_mask: bool = True
    tau: float = 0.03
    tau_cap: Optional[float] = 2.0  # tau <= tau_cap x noise floor; None: the paper's fixed tau
    lowpass_sigma: float = 2.0
    tta: int = 8
    average_tail: float = 0.25  # fraction of the budget whose weights are averaged
    wiener_stride: int = WIENER_STRIDE  # patch spacing of the Wiener stage; 0: off
    nonlocal_strength: float = NONLOCAL_STRENGTH  # guided non-local means; 0: off
    guard_factor: float = GUARD_FACTOR  # 0 turns the residual guard off
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        checks = [
            (self.steps >= 1, "steps must be >= 1"),
            (self.max_seconds is None or self.max_seconds > 0, "max_seconds must be > 0"),
            (self.width >= 4, "width must be >= 4"),
            (1 <= self.depth <= 5, "depth must be in 1..5"),
            (self.patch >= 8 and self.patch % 2 ** self.depth == 0,
             "patch must be >= 8 and a multiple of 2**depth"),
            (self.batch >= 1, "batch must be >= 1"),
            (self.run_length >= 2, "run_length must be >= 2"),
            (1 <= self.ic_pairs < self.run_length, "ic_pairs must be in 1..run_length-1"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (self.lambda_rc >= 0 and self.lambda_ic >= 0, "loss weights must be >= 0"),
            (0 < self.tau < 1, "tau is on the normalised scale and must be in (0, 1)"),
            (self.tau_cap is None or self.tau_cap >= 1, "tau_cap must be >= 1 or None"),
            (self.lowpass_sigma >= 0, "lowpass_sigma must be >= 0"),
            (self.tta in TTA_ELEMENTS, f"tta must be one of {sorted(TTA_ELEMENTS)}"),
            (0 <= self.average_tail < 1, "average_tail must be in [0, 1)"),
            (0 <= self.wiener_stride <= 8, "wiener_stride must be in 0..8"),
            (self.nonlocal_strength >= 0, "nonlocal_strength must be >= 0"),
            (self.guard_factor >= 0, "guard_factor must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# Step counts, not seconds, define the presets: the same seed then gives the same output
# on the same CPU with the same torch thread count (the reduction order in the kernels
# changes with the thread count).  Training cost per step does not depend on the volume
# size (fixed crops).
# On 2-core AVX512-BF16 CPUs one step takes 0.05-0.1 s: fast 25-50 s, balanced 50-100 s,
# best 4-8 min of training.
# balanced was 1500 steps until the two refinement stages made the network's last steps
# worth little: 1000 instead of 1500 steps changed PSNR inside the head/body by -0.35 to
# +0.10 dB (mean -0.07) on the four benchmark cases and the two nearly clean ones, 750
# steps by -0.22 to +0.09 (seed 0, 2026-12-02, README "Benchmarks"), while training
# is two thirds of the wall time.  1000, not 750: volumes larger than the benchmark's
# 2 M voxels get fewer crops per voxel.
PRESETS: Dict[str, Dict] = {
    "fast": dict(steps=500, tta=4),
    "balanced": dict(steps=1000, tta=8),
    "best": dict(steps=5000, tta=8),
}


def config_for(preset: str = "balanced", **overrides) -> NSN2NConfig:
    return preset_config(NSN2NConfig, PRESETS, preset, overrides)


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
                reference: Optional[np.ndarray] = None) -> Tuple[np.ndarray, Dict]:
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
        # better of them by 0.5 dB (nonlocal_means.py), so they are averaged.
        denoised += guided
        denoised *= 0.5
    elif guided is not None:
        denoised = guided
    returned = 0.0
    if config.guard_factor > 0:
        denoised, returned = residual_guard(slices, denoised, config.guard_factor,
                                            inplace=True, cancel=cancel)
    report = dict(method="nsn2n", device=str(device), steps=result.steps,
                  train_seconds=round(result.seconds, 2),
                  total_seconds=round(time.perf_counter() - started, 2),
                  matched_fraction=round(matched, 4), tau=round(tau, 4),
                  recoveries=result.recoveries, final_loss=result.last_loss,
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
