"""NS-N2N's settings: one frozen, validated config and the presets."""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional

from ...refine.guard import FACTOR as GUARD_FACTOR
from ...refine.nonlocal_means import STRENGTH as NONLOCAL_STRENGTH
from ...refine.wiener import STRIDE as WIENER_STRIDE
from ...symmetry import TTA_ELEMENTS
from ..base import preset_config


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
    tta: int = 8  # flips/rotations averaged at inference: a key of symmetry.TTA_ELEMENTS
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
# steps by -0.22 to +0.09 (seed 0, 2026-12-02, docs/benchmarks.md "Why 1000 steps"), while training
# is two thirds of the wall time.  1000, not 750: volumes larger than the benchmark's
# 2 M voxels get fewer crops per voxel.
PRESETS: Dict[str, Dict] = {
    "fast": dict(steps=500, tta=4),
    "balanced": dict(steps=1000, tta=8),
    "best": dict(steps=5000, tta=8),
}


def config_for(preset: str = "balanced", **overrides) -> NSN2NConfig:
    return preset_config(NSN2NConfig, PRESETS, preset, overrides)
