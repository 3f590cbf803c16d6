"""NS-N2N's settings: one frozen, validated config and the presets."""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Tuple

from ...refine.block_matching import STRIDE as BLOCK_STRIDE
from ...refine.guard import FACTOR as GUARD_FACTOR
from ...refine.nonlocal_means import STRENGTH as NONLOCAL_STRENGTH
from ...refine.wiener import STRIDE as WIENER_STRIDE
from ...symmetry import TTA_ELEMENTS
from ...options import PRECISIONS
from ..base import preset_config


@dataclasses.dataclass(frozen=True)
class NSN2NConfig:
    """Every setting of one NS-N2N run; validated on construction."""

    steps: int = 1000
    # Volumes smaller than this many voxels train proportionally fewer steps, at least
    # steps * MIN_STEP_SHARE (steps_for; the presets set it); 0: always ``steps``.
    full_budget_voxels: int = 0
    max_seconds: Optional[float] = None  # a time cap on training; ends the schedule early
    width: int = 12
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
    tta: int = 8  # flips/rotations averaged at inference: a key of symmetry.TTA_ELEMENTS
    ensemble: int = 1  # networks trained with different seeds, their outputs averaged
    average_tail: float = 0.25  # fraction of the budget whose weights are averaged
    wiener_stride: int = WIENER_STRIDE  # patch spacing of the Wiener stage; 0: off
    nonlocal_strength: float = NONLOCAL_STRENGTH  # guided non-local means; 0: off
    block_stride: int = BLOCK_STRIDE  # reference spacing of block matching; 0: off
    guard_factor: float = GUARD_FACTOR  # 0 turns the residual guard off
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # options.PRECISIONS

    def __post_init__(self):
        checks = [
            (self.precision in PRECISIONS,
             "precision must be one of " + ", ".join(PRECISIONS)),
            (self.steps >= 1, "steps must be >= 1"),
            (self.full_budget_voxels >= 0, "full_budget_voxels must be >= 0"),
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
            (1 <= self.ensemble <= 8, "ensemble must be in 1..8"),
            (0 <= self.average_tail < 1, "average_tail must be in [0, 1)"),
            (0 <= self.wiener_stride <= 8, "wiener_stride must be in 0..8"),
            (self.nonlocal_strength >= 0, "nonlocal_strength must be >= 0"),
            (0 <= self.block_stride <= 4, "block_stride must be in 0..4"),
            (self.guard_factor >= 0, "guard_factor must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# Step counts, not seconds, define the presets: the same seed then gives the same output
# on the same CPU with the same torch thread count (the reduction order in the kernels
# changes with the thread count).  Training cost per step does not depend on the volume
# size (fixed crops); volumes under FULL_BUDGET_VOXELS train fewer steps (steps_for).
# Sized for CPUs without native bf16 (issue 23, docs/benchmarks.md "Speed"): the network
# is 12 channels wide, not 16 (a training step 0.09 instead of 0.145 s in fp32 on 2
# cores), and balanced trains 700 steps, not 1000: in bf16 on the synthetic benchmark,
# width 12 with 600 steps scored +0.17 dB on MRI 5 % and -0.22 dB on CT 1e4 against
# width 16 with 1000 steps (35.41 / 41.02 against 35.24 / 41.23 dB), and on the two real
# acquisitions within 0.001 dB.  Test-time augmentation costs little (under a second per
# transform for 2 M voxels), so every preset averages all eight.  best takes the Wiener
# stage's patches at every pixel (stride 1) instead of every second: in fp32, +0.04 dB on
# MRI 5 % (35.47 against 35.43) and +0.10 dB on CT 1e4 (41.28 against 41.18), within
# 0.001 dB on the two real acquisitions.  Since the two refinement stages are mixed by
# their risk, CT gives the Wiener stage a weight near 0.2, and the denser stage alone left
# best level with balanced there (41.92 / 41.92 dB fp32), so best also trains 1000 steps:
# in bf16, CT 1e4 41.84 (balanced) / 41.83 (best at 700) / 41.97 dB (best at 1000), MRI
# 5 % 35.45 / 35.51 / 35.59 dB, real ASL and DWI 44.209 / 44.212 / 44.212 and 31.303 /
# 31.305 / 31.305 dB; in fp32 MRI 35.45 / 35.50 / 35.59 dB but CT 41.92 / 41.92 / 41.91,
# still level (docs/benchmarks.md, Speed, 2026-12-05).  What did not buy
# quality before the mix: more steps at width 16 on MRI (500 steps 35.37, 1000 steps
# 35.24 dB) and two networks averaged (``ensemble=2``: MRI 35.42 fp32, CT 41.18, at 1.8x
# the time of balanced).
FULL_BUDGET_VOXELS = 2 ** 20
PRESETS: Dict[str, Dict] = {
    "fast": dict(steps=450, tta=8, full_budget_voxels=FULL_BUDGET_VOXELS),
    "balanced": dict(steps=700, tta=8, full_budget_voxels=FULL_BUDGET_VOXELS),
    "best": dict(steps=1000, tta=8, wiener_stride=1, full_budget_voxels=FULL_BUDGET_VOXELS),
}


# The smallest share of the preset's steps a small volume trains for.
MIN_STEP_SHARE = 0.25


def steps_for(config: NSN2NConfig, shape: Tuple[int, ...]) -> int:
    """The training steps for a stack of ``shape``: the config's, scaled down for volumes
    smaller than ``config.full_budget_voxels`` (never below :data:`MIN_STEP_SHARE` of it).

    A step draws fixed-size crops, so a fixed count would train a 20x72x72 volume for 30
    times more passes over its voxels than a 48x224x192 one: no better (real 6 mm ASL,
    20x72x72: 1000 and 500 steps within 0.001 dB; docs/benchmarks.md, "Speed") and as long.
    """
    if config.full_budget_voxels == 0:
        return config.steps
    share = min(1.0, max(MIN_STEP_SHARE, math.prod(shape) / config.full_budget_voxels))
    return max(1, round(config.steps * share))


def explicit_steps(overrides: Dict) -> Dict:
    """``overrides`` where a step count the caller gave is trained as it is, whatever the
    volume's size."""
    if overrides.get("steps") is not None and "full_budget_voxels" not in overrides:
        return dict(overrides, full_budget_voxels=0)
    return overrides


def config_for(preset: str = "balanced", **overrides) -> NSN2NConfig:
    return preset_config(NSN2NConfig, PRESETS, preset, explicit_steps(overrides))
